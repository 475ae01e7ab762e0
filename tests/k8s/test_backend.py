"""The backend's verbs against the real API server with a node that runs real workspaces:
launch → Launching (with progress) → Running and routed → terminate → Not Found, PVC kept;
Hatchery's answers to a second launch; one pod for two racing replicas; failures fast.
(An unreachable API server and its transient 5xx are in test_api_outage.py, on the emulator.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from launcher.backend import LAUNCHING, NOT_FOUND, RUNNING, TERMINATING
from launcher.errors import BackendError, NameTaken, WorkspaceExists
from launcher.kubernetes import KubernetesBackend
from launcher.options import HatcheryConfig
from launcher.routes import RouteTable

from .cluster import Cluster
from .conftest import BackendFactory, eventually
from .kubelet import Kubelet

USER = "alice@example.org"
POD, SVC, CLAIM = ("hatchery-alice-40example-2eorg", "h-alice-40example-2eorg-s",
                   "claim-alice-40example-2eorg")


async def collect(stream: Any) -> list[dict[str, Any]]:
    return [msg async for msg in stream]


async def running(backend: KubernetesBackend, user: str = USER) -> bool:
    return (await backend.status(user)).status == RUNNING


async def test_launch_creates_hatcherys_claim_pod_and_service(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(USER, hatchery.options[0], None)
    assert [await cluster.names(p) for p in ("persistentvolumeclaims", "pods", "services")
            ] == [[CLAIM], [POD], [SVC]]
    assert (await backend.status(USER)).status == LAUNCHING  # no node has taken it yet


async def test_workspace_runs_is_routed_and_answers(
        cluster: Cluster, kubelet: Kubelet, make_backend: BackendFactory,
        hatchery: HatcheryConfig) -> None:
    routes = RouteTable()
    backend = await make_backend(routes, route_to="endpoints")
    await backend.launch(USER, hatchery.options[0], None)
    await eventually(lambda: running(backend))
    route = await eventually(lambda: (r := routes.get(USER)) and r.ready and r)
    assert (route.host, route.port, route.rewrite) == (
        kubelet.address, kubelet.port_of(POD), "/lw-workspace/proxy/")
    async with aiohttp.ClientSession() as http, http.get(
            f"http://{route.host}:{route.port}{route.rewrite}api/status") as resp:
        assert resp.status == 200


async def test_progress_reports_each_stage_then_ready(
        cluster: Cluster, kubelet: Kubelet, make_backend: BackendFactory,
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
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(USER, hatchery.options[0], None)
    with pytest.raises(WorkspaceExists):
        await backend.launch(USER, hatchery.options[0], None)


async def test_two_replicas_launching_at_once_make_one_pod(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    first, second = await make_backend(), await make_backend()
    results = await asyncio.gather(first.launch(USER, hatchery.options[0], None),
                                   second.launch(USER, hatchery.options[0], None),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "WorkspaceExists"]
    assert await cluster.names("pods") == [POD] and await cluster.names("services") == [SVC]


async def test_terminate_removes_pod_and_service_and_keeps_the_claim(
        cluster: Cluster, kubelet: Kubelet, make_backend: BackendFactory,
        hatchery: HatcheryConfig) -> None:
    routes = RouteTable()
    backend = await make_backend(routes)
    await backend.launch(USER, hatchery.options[0], None)
    await eventually(lambda: running(backend))
    assert await backend.terminate(USER) is True
    assert (await backend.status(USER)).status == TERMINATING  # the 20 s grace has begun
    (pod,) = await cluster.items("pods")
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 20
    await eventually(lambda: cluster.none("pods"))  # the node stopped it and removed it
    assert (await backend.status(USER)).status == NOT_FOUND
    assert await cluster.names("services") == []
    assert await cluster.names("persistentvolumeclaims") == [CLAIM]
    await eventually(lambda: routes.get(USER) is None)
    assert await backend.terminate(USER) is False


async def test_relaunch_after_terminate_reuses_the_claim(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend(grace_seconds=0)
    await backend.launch(USER, hatchery.options[0], None)
    (claim,) = await cluster.items("persistentvolumeclaims")
    await backend.terminate(USER)
    await backend.launch(USER, hatchery.options[0], None)
    (kept,) = await cluster.items("persistentvolumeclaims")
    assert kept["metadata"]["uid"] == claim["metadata"]["uid"]
    (pod,) = await cluster.live_pods()
    (volume,) = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"]["claimName"] == CLAIM


async def test_unpullable_image_fails_within_seconds_with_the_reason(
        cluster: Cluster, kubelet: Kubelet, make_backend: BackendFactory,
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
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    async with cluster.kubelet(node_labels={"role": "default"}):
        backend = await make_backend()
        await backend.launch(USER, hatchery.options[0], None)
        msgs = await asyncio.wait_for(collect(backend.progress(USER)), 10)
        assert msgs[-1]["failed"] and "node affinity/selector" in msgs[-1]["message"]


async def test_progress_for_nobody_says_so(cluster: Cluster, make_backend: BackendFactory) -> None:
    backend = await make_backend()
    (msg,) = await collect(backend.progress("nobody"))
    assert msg["failed"] is True


async def test_service_carries_the_configured_mapping_flavor(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend(mapping_flavor="v3alpha1")
    await backend.launch(USER, hatchery.options[0], None)
    (svc,) = await cluster.items("services")
    mapping = svc["metadata"]["annotations"]["getambassador.io/config"]
    assert "apiVersion: getambassador.io/v3alpha1" in mapping and f"remote_user: {USER}" in mapping


async def test_a_launch_whose_service_fails_leaves_no_pod_behind(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    """The namespace's ResourceQuota allows no Service: the API server's quota admission
    refuses it (the quota controller's work, the status it would write, done by hand)."""
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-services"},
             "spec": {"hard": {"services": "0"}}}
    await cluster.write("POST", "resourcequotas", quota)
    await cluster.write("PUT", "resourcequotas", {**quota, "status": {
        "hard": {"services": "0"}, "used": {"services": "0"}}}, "no-services", "status")
    backend = await make_backend()
    with pytest.raises(BackendError, match="exceeded quota: no-services"):
        await backend.launch(USER, hatchery.options[0], None)
    assert await cluster.names("pods") == []


# -- one name, one user: Hatchery's escaping maps these two to the same objects ----------------

VICTIM, ATTACKER = "a.b@example.org", "a\u02eb\u040example.org"


async def test_a_colliding_user_gets_name_taken_and_never_the_others_workspace(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(VICTIM, hatchery.options[0], None)
    pods = await cluster.items("pods")
    with pytest.raises(NameTaken):
        await backend.launch(ATTACKER, hatchery.options[0], None)
    assert (await backend.status(ATTACKER)).status == NOT_FOUND
    assert await backend.terminate(ATTACKER) is False
    assert await cluster.items("pods") == pods  # the victim's pod, untouched
    assert (await backend.status(VICTIM)).status != NOT_FOUND


async def test_a_colliding_user_never_mounts_the_others_kept_volume(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend(grace_seconds=0)
    await backend.launch(VICTIM, hatchery.options[0], None)
    await backend.terminate(VICTIM)
    await eventually(lambda: cluster.none("pods"))
    with pytest.raises(NameTaken):
        await backend.launch(ATTACKER, hatchery.options[0], None)
    assert await cluster.names("pods") == []


async def test_every_object_records_the_real_user(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(VICTIM, hatchery.options[0], None)
    for plural in ("pods", "services", "persistentvolumeclaims"):
        [obj] = await cluster.items(plural)
        assert obj["metadata"]["annotations"]["gen3username"] == VICTIM, plural
        assert obj["metadata"]["annotations"]["hatchway.gen3.org/user"] == VICTIM, plural
    [svc] = await cluster.items("services")
    assert "hatchway.gen3.org/user-id" in svc["spec"]["selector"]  # selects only VICTIM's pod
