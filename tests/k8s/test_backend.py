"""The backend's verbs against the emulated cluster with a node that runs real workspaces:
launch → Launching (with progress) → Running and routed → terminate → Not Found, PVC kept;
Hatchery's answers to a second launch; one pod for two racing replicas; failures fast."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import kmock
import pytest

from launcher.backend import LAUNCHING, NOT_FOUND, RUNNING, TERMINATING
from launcher.errors import BackendError, BackendUnavailable, NameTaken, WorkspaceExists
from launcher.kubernetes import KubernetesBackend
from launcher.options import HatcheryConfig
from launcher.routes import RouteTable

from .conftest import NAMESPACE, ApiServer, BackendFactory, eventually
from .kubelet import Kubelet

USER = "alice@example.org"
POD, SVC, CLAIM = ("hatchery-alice-40example-2eorg", "h-alice-40example-2eorg-s",
                   "claim-alice-40example-2eorg")


def names(api: ApiServer, plural: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in api.emulator.items(plural, NAMESPACE))


async def collect(stream: Any) -> list[dict[str, Any]]:
    return [msg async for msg in stream]


async def running(backend: KubernetesBackend, user: str = USER) -> bool:
    return (await backend.status(user)).status == RUNNING


async def test_launch_creates_hatcherys_claim_pod_and_service(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(USER, hatchery.options[0], None)
    assert (names(api, "persistentvolumeclaims"), names(api, "pods"), names(api, "services")
            ) == ([CLAIM], [POD], [SVC])
    assert (await backend.status(USER)).status == LAUNCHING  # no node has taken it yet


async def test_workspace_runs_is_routed_and_answers(
        api: ApiServer, kubelet: Kubelet, make_backend: BackendFactory,
        hatchery: HatcheryConfig) -> None:
    routes = RouteTable()
    backend = await make_backend(routes, route_to="endpoints")
    await backend.launch(USER, hatchery.options[0], None)
    await eventually(lambda: running(backend))
    route = await eventually(lambda: (r := routes.get(USER)) and r.ready and r)
    assert (route.host, route.port, route.rewrite) == (
        "127.0.0.1", kubelet.port_of(POD), "/lw-workspace/proxy/")
    async with aiohttp.ClientSession() as http, http.get(
            f"http://{route.host}:{route.port}{route.rewrite}api/status") as resp:
        assert resp.status == 200


async def test_progress_reports_each_stage_then_ready(
        api: ApiServer, kubelet: Kubelet, make_backend: BackendFactory,
        hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(USER, hatchery.options[0], None)
    msgs = await asyncio.wait_for(collect(backend.progress(USER)), 15)
    text = " | ".join(m["message"] for m in msgs)
    for stage in ("Successfully assigned", "Pulling image", "Successfully pulled",
                  "Started container"):
        assert stage in text
    assert [m["progress"] for m in msgs] == sorted(m["progress"] for m in msgs)
    assert msgs[-1] == {"progress": 100, "message": "workspace is ready", "ready": True,
                        "failed": False}


async def test_second_launch_answers_workspace_exists(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(USER, hatchery.options[0], None)
    with pytest.raises(WorkspaceExists):
        await backend.launch(USER, hatchery.options[0], None)


async def test_two_replicas_launching_at_once_make_one_pod(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    first, second = await make_backend(), await make_backend()
    results = await asyncio.gather(first.launch(USER, hatchery.options[0], None),
                                   second.launch(USER, hatchery.options[0], None),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "WorkspaceExists"]
    assert names(api, "pods") == [POD] and names(api, "services") == [SVC]


async def test_terminate_removes_pod_and_service_and_keeps_the_claim(
        api: ApiServer, kubelet: Kubelet, make_backend: BackendFactory,
        hatchery: HatcheryConfig) -> None:
    routes = RouteTable()
    backend = await make_backend(routes)
    await backend.launch(USER, hatchery.options[0], None)
    await eventually(lambda: running(backend))
    assert await backend.terminate(USER) is True
    assert (await backend.status(USER)).status == TERMINATING  # the 20 s grace has begun
    pod = api.emulator.items("pods", NAMESPACE)[0]
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 20
    await eventually(lambda: names(api, "pods") == [])
    assert (await backend.status(USER)).status == NOT_FOUND
    assert names(api, "services") == [] and names(api, "persistentvolumeclaims") == [CLAIM]
    await eventually(lambda: routes.get(USER) is None)
    assert await backend.terminate(USER) is False


async def test_relaunch_after_terminate_reuses_the_claim(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend(grace_seconds=0)
    await backend.launch(USER, hatchery.options[0], None)
    claim = api.emulator.items("persistentvolumeclaims", NAMESPACE)[0]
    await backend.terminate(USER)
    await backend.launch(USER, hatchery.options[0], None)
    assert api.emulator.items("persistentvolumeclaims", NAMESPACE) == [claim]


async def test_unpullable_image_fails_within_seconds_with_the_reason(
        api: ApiServer, kubelet: Kubelet, make_backend: BackendFactory,
        hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    began = time.monotonic()
    await backend.launch(USER, hatchery.options[1], None)
    msgs = await asyncio.wait_for(collect(backend.progress(USER)), 10)
    assert time.monotonic() - began < 5
    assert msgs[-1]["failed"] is True and "ErrImagePull" in msgs[-1]["message"]
    assert "registry.invalid/no-such-image:1" in msgs[-1]["message"]
    status = await backend.status(USER)
    assert status.status == LAUNCHING and "Image" in status.detail


async def test_unschedulable_pod_fails_with_the_schedulers_words(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    async with Kubelet(api.url, NAMESPACE, node_labels={"role": "default"}):
        backend = await make_backend()
        await backend.launch(USER, hatchery.options[0], None)
        msgs = await asyncio.wait_for(collect(backend.progress(USER)), 10)
        assert msgs[-1]["failed"] and "node affinity/selector" in msgs[-1]["message"]


async def test_progress_for_nobody_says_so(api: ApiServer, make_backend: BackendFactory) -> None:
    backend = await make_backend()
    (msg,) = await collect(backend.progress("nobody"))
    assert msg["failed"] is True


async def test_api_server_gone_launch_and_status_are_unavailable_routes_keep_serving(
        api: ApiServer, kubelet: Kubelet, make_backend: BackendFactory,
        hatchery: HatcheryConfig) -> None:
    routes = RouteTable()
    backend = await make_backend(routes, route_to="endpoints")
    await backend.launch(USER, hatchery.options[0], None)
    route = await eventually(lambda: (r := routes.get(USER)) and r.ready and r)
    await api.stop()
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        await backend.launch("bob", hatchery.options[0], None)
    with pytest.raises(BackendUnavailable):
        await backend.status(USER)
    assert time.monotonic() - began < 3
    await eventually(lambda: backend.health()["watch"] == "down")
    assert routes.get(USER) == route
    async with aiohttp.ClientSession() as http, http.get(
            f"http://{route.host}:{route.port}{route.rewrite}api/status") as resp:
        assert resp.status == 200  # the workspace itself never depended on the API server


async def test_a_transient_api_error_is_retried(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(USER, hatchery.options[0], None)
    calls: list[Any] = []

    def flaky(request: Any) -> Any:
        calls.append(request)
        if len(calls) == 1:
            return kmock.Response(status=503, payload={"kind": "Status", "code": 503,
                                                       "message": "etcd leader changed"})
        raise NotImplementedError  # from now on, the emulator answers
    api.emulator[f"get /api/v1/namespaces/{NAMESPACE}/pods/{POD}"] << flaky
    assert (await backend.status(USER)).status == LAUNCHING
    assert len(calls) == 2


async def test_service_carries_the_configured_mapping_flavor(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend(mapping_flavor="v3alpha1")
    await backend.launch(USER, hatchery.options[0], None)
    (svc,) = api.emulator.items("services", NAMESPACE)
    mapping = svc["metadata"]["annotations"]["getambassador.io/config"]
    assert "apiVersion: getambassador.io/v3alpha1" in mapping and f"remote_user: {USER}" in mapping


async def test_a_launch_whose_service_fails_leaves_no_pod_behind(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    api.emulator[f"post /api/v1/namespaces/{NAMESPACE}/services"] << kmock.Response(
        status=422, payload={"kind": "Status", "code": 422, "message": "quota exceeded"})
    with pytest.raises(BackendError, match="quota exceeded"):
        await backend.launch(USER, hatchery.options[0], None)
    assert names(api, "pods") == []


# -- one name, one user: Hatchery's escaping maps these two to the same objects ----------------

VICTIM, ATTACKER = "a.b@example.org", "a\u02eb\u040example.org"


async def test_a_colliding_user_gets_name_taken_and_never_the_others_workspace(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(VICTIM, hatchery.options[0], None)
    pods = api.emulator.items("pods", NAMESPACE)
    with pytest.raises(NameTaken):
        await backend.launch(ATTACKER, hatchery.options[0], None)
    assert (await backend.status(ATTACKER)).status == NOT_FOUND
    assert await backend.terminate(ATTACKER) is False
    assert api.emulator.items("pods", NAMESPACE) == pods  # the victim's pod, untouched
    assert (await backend.status(VICTIM)).status != NOT_FOUND


async def test_a_colliding_user_never_mounts_the_others_kept_volume(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend(grace_seconds=0)
    await backend.launch(VICTIM, hatchery.options[0], None)
    await backend.terminate(VICTIM)
    await eventually(lambda: names(api, "pods") == [])
    with pytest.raises(NameTaken):
        await backend.launch(ATTACKER, hatchery.options[0], None)
    assert names(api, "pods") == []


async def test_every_object_records_the_real_user(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(VICTIM, hatchery.options[0], None)
    for plural in ("pods", "services", "persistentvolumeclaims"):
        [obj] = api.emulator.items(plural, NAMESPACE)
        assert obj["metadata"]["annotations"]["gen3username"] == VICTIM, plural
        assert obj["metadata"]["annotations"]["hatchway.gen3.org/user"] == VICTIM, plural
    [svc] = api.emulator.items("services", NAMESPACE)
    assert "hatchway.gen3.org/user-id" in svc["spec"]["selector"]  # selects only VICTIM's pod
