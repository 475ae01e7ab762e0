"""Two gateway replicas on the real API server (with the test kubelet), wired as
proxy/serve/app.py wires them: each its own route table, activity record and culler, sharing
activity through the Service annotation and electing the one culler through a Lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from launcher.culling import IdleCuller
from launcher.errors import WorkspaceExists
from launcher.kubernetes import KubernetesBackend
from launcher.options import HatcheryConfig
from launcher.routes import RouteTable
from proxy.settings import Settings
from proxy.settings import kube_settings as kube_config

from .cluster import Cluster
from .conftest import eventually
from .kubelet import Kubelet

USER = "alice@example.org"
FAST = {"lease_seconds": 1.0, "lease_renew_seconds": 0.2, "activity_seconds": 0.2,
        "route_to": "endpoints"}


class Replica:
    """One replica's control path: backend, its own activity record, its culler."""

    def __init__(self, settings: Settings, hatchery: HatcheryConfig, limit_ms: int) -> None:
        self.routes = RouteTable()
        self.local: dict[str, int] = {}
        self.workspace: dict[str, int] = {}  # what each workspace's Jupyter would say
        self.backend = KubernetesBackend(self.routes, kube_config(settings), hatchery)
        self.backend.attach_activity(lambda user: self.local.get(user, 0))
        backend = self.backend

        async def workspace_ms(user: str) -> int:
            return self.workspace.get(user, 0)

        self.culler = IdleCuller(backend, self.routes, backend.last_activity_ms,
                                 is_leader=lambda: backend.is_leader, default_limit_ms=limit_ms,
                                 workspace_last_ms=workspace_ms)

    def touch(self, user: str) -> None:  # a request relayed through this replica
        self.local[user] = int(time.time() * 1000)


Start = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def start_replica(kube_settings: Callable[..., Settings], hatchery: HatcheryConfig
                        ) -> AsyncIterator[Start]:
    started: list[Replica] = []

    async def start(name: str, limit_ms: int = 1500, **extra: Any) -> Replica:
        r = Replica(kube_settings(identity=name, default_idle_seconds=0, **FAST, **extra),
                    hatchery, limit_ms)
        await r.backend.start()
        started.append(r)
        return r

    yield start
    for r in started:
        await r.backend.close()


async def test_one_replica_leads_and_the_other_takes_over_within_the_lease_time(
        cluster: Cluster, start_replica: Start) -> None:
    a = await start_replica("a")
    await eventually(lambda: a.backend.is_leader)
    b = await start_replica("b")
    await asyncio.sleep(0.6)
    assert a.backend.is_leader and not b.backend.is_leader
    assert a.backend.elector is not None
    await a.backend.elector._loop.stop()  # A dies: no renewal, no release
    began = time.monotonic()
    await eventually(lambda: b.backend.is_leader, within=3)
    assert time.monotonic() - began < 1.0 + 0.2 * 3 + 0.5  # lease + a few renew rounds


async def test_a_stopped_leader_releases_and_hands_over_at_once(
        cluster: Cluster, start_replica: Start) -> None:
    a = await start_replica("a")
    await eventually(lambda: a.backend.is_leader)
    b = await start_replica("b")
    await a.backend.close()
    await eventually(lambda: b.backend.is_leader, within=0.8)  # sooner than the lease time


async def test_traffic_only_through_b_keeps_the_workspace_while_a_culls(
        cluster: Cluster, kubelet: Kubelet, start_replica: Start,
        hatchery: HatcheryConfig) -> None:
    a = await start_replica("a")
    await eventually(lambda: a.backend.is_leader)
    b = await start_replica("b")
    await b.backend.launch(USER, hatchery.options[0], None)
    b.touch(USER)
    await eventually(lambda: a.routes.get(USER) and a.routes.get(USER).ready)  # type: ignore[union-attr]
    for _ in range(8):  # 2.4 s of activity through B alone, past A's 1.5 s limit
        b.touch(USER)
        await asyncio.sleep(0.3)
        assert await a.culler.sweep() == []
    assert await cluster.live_pods()
    await asyncio.sleep(1.8)  # idle past the limit
    assert await b.culler.sweep() == []  # B does not lead: it never culls
    assert await a.culler.sweep() == [USER]
    assert await cluster.items("persistentvolumeclaims")  # the volume stays


async def test_a_workspace_idle_to_every_replica_but_busy_by_its_own_account_is_kept(
        cluster: Cluster, kubelet: Kubelet, start_replica: Start,
        hatchery: HatcheryConfig) -> None:
    a = await start_replica("a")
    await eventually(lambda: a.backend.is_leader)
    await a.backend.launch(USER, hatchery.options[0], None)
    a.touch(USER)
    await eventually(lambda: a.routes.get(USER) and a.routes.get(USER).ready)  # type: ignore[union-attr]
    await asyncio.sleep(1.8)  # past the 1.5 s limit by the gateway's record
    a.workspace[USER] = int(time.time() * 1000)  # a kernel ran a cell: Jupyter saw it
    assert await a.culler.sweep() == []
    await asyncio.sleep(1.8)  # and now idle by both accounts
    assert await a.culler.sweep() == [USER]


async def test_both_replicas_answer_the_same_last_activity_and_a_restart_keeps_it(
        cluster: Cluster, kubelet: Kubelet, start_replica: Start,
        hatchery: HatcheryConfig) -> None:
    a = await start_replica("a")
    b = await start_replica("b")
    await a.backend.launch(USER, hatchery.options[0], None)
    await eventually(lambda: b.backend.services and b.backend.services.cache)
    b.touch(USER)
    stamp = b.local[USER]
    await eventually(lambda: a.backend.last_activity_ms(USER) == stamp, within=3)
    assert b.backend.last_activity_ms(USER) == stamp
    await a.backend.close()
    restarted = await start_replica("a2")
    assert restarted.backend.last_activity_ms(USER) == stamp


async def test_launch_sent_to_both_replicas_at_once_creates_one_workspace(
        cluster: Cluster, start_replica: Start, hatchery: HatcheryConfig) -> None:
    a = await start_replica("a")
    b = await start_replica("b")
    results = await asyncio.gather(a.backend.launch(USER, hatchery.options[0], None),
                                   b.backend.launch(USER, hatchery.options[0], None),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "WorkspaceExists"]
    assert any(isinstance(r, WorkspaceExists) for r in results)
    assert len(await cluster.live_pods()) == 1
