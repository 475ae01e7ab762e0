"""The emulator's additions to kmock behave as a Kubernetes API server does, seen through the
real kubernetes_asyncio client (hatchway's KubeClient): if these fail, every watch test
below would prove nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from launcher.kubernetes.client import Gone, KubeClient
from launcher.kubernetes.config import parse_kube_settings

from .conftest import NAMESPACE, ApiServer, eventually

pytestmark = pytest.mark.emulated


@pytest.fixture
async def client(kubeconfig: str) -> Any:
    cfg = parse_kube_settings({"kubeconfig": kubeconfig, "request_timeout": 2})
    kube = await KubeClient.connect(cfg, NAMESPACE)
    yield kube
    await kube.close()


def svc(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {"ports": [{"port": 80}]}}


async def collect(stream: Any, n: int) -> list[dict[str, Any]]:
    out = []
    async for event in stream:
        out.append(event)
        if len(out) == n:
            break
    return out


async def test_writes_stamp_increasing_resource_versions(client: KubeClient) -> None:
    a = await client.create("services", svc("a"))
    b = await client.create("services", svc("b"))
    listed = await client.list("services")
    assert int(a["metadata"]["resourceVersion"]) < int(b["metadata"]["resourceVersion"])
    assert listed["metadata"]["resourceVersion"] == b["metadata"]["resourceVersion"]
    assert a["metadata"]["namespace"] == NAMESPACE and a["metadata"]["uid"]


async def test_label_selector_filters_lists(client: KubeClient) -> None:
    await client.create("services", svc("mine", team="a"))
    await client.create("services", svc("theirs", team="b"))
    listed = await client.list("services", label_selector="team=a")
    assert [s["metadata"]["name"] for s in listed["items"]] == ["mine"]


async def test_watch_true_from_the_python_client_streams_later_events_only(
        client: KubeClient, api: ApiServer) -> None:
    await client.create("services", svc("before"))
    version = (await client.list("services"))["metadata"]["resourceVersion"]
    stream = client.watch("services", version, label_selector="team=a", timeout_seconds=5)
    task = asyncio.ensure_future(collect(stream, 1))
    await eventually(lambda: api.emulator.open_watches == 1)  # the server holds the watch
    await client.create("services", svc("other", team="b"))
    await client.create("services", svc("after", team="a"))
    events = await asyncio.wait_for(task, 5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "after")]


async def test_watch_from_a_compacted_version_answers_410(client: KubeClient,
                                                          api: ApiServer) -> None:
    first = await client.create("services", svc("a"))
    await client.create("services", svc("b"))
    api.emulator.compact()
    with pytest.raises(Gone):
        await collect(client.watch("services", first["metadata"]["resourceVersion"],
                                   timeout_seconds=5), 1)


async def test_dropped_watch_ends_the_stream(client: KubeClient, api: ApiServer) -> None:
    version = (await client.list("services"))["metadata"]["resourceVersion"]
    task = asyncio.ensure_future(collect(client.watch("services", version,
                                                      timeout_seconds=30), 1))
    await eventually(lambda: api.emulator.open_watches)
    api.emulator.drop_watches()
    assert await asyncio.wait_for(task, 5) == []


async def test_pod_deleted_with_grace_is_marked_not_removed(client: KubeClient) -> None:
    await client.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                 "metadata": {"name": "p"}, "spec": {"containers": []}})
    assert await client.delete("pods", "p", grace_seconds=20)
    pod = await client.get("pods", "p")
    assert pod is not None and pod["metadata"]["deletionTimestamp"]
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 20
