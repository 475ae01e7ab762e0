"""Two gateway replicas on the real API server (with the test kubelet), wired as
proxy/serve/app.py wires them: each its own route table, activity record and culler, sharing
activity through the Service annotation and electing the one culler through a Lease. The
replicas share one ManualClock: expiry and idleness are judged by it, so a test moves time
instead of waiting for it; only the rounds that talk to the API server run in real time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from launcher.clock import ManualClock
from launcher.culling import IdleCuller
from launcher.errors import WorkspaceExists
from launcher.kubernetes import KubernetesBackend
from launcher.kubernetes.leader import LeaderElector
from launcher.options import HatcheryConfig
from launcher.routes import RouteTable
from proxy.settings import Settings
from proxy.settings import kube_settings as kube_config

from .cluster import Cluster
from .conftest import eventually
from .kubelet import Kubelet

USER = "alice@example.org"
LEASE_S = 30.0  # of the shared clock: longer than any test moves it, unless it means to
FAST = {"lease_seconds": LEASE_S, "lease_renew_seconds": 0.2, "activity_seconds": 0.2,
        "route_to": "endpoints"}


class Replica:
    """One replica's control path: backend, its own activity record, its culler."""

    def __init__(self, settings: Settings, hatchery: HatcheryConfig, limit_ms: int,
                 clock: ManualClock) -> None:
        self.clock = clock
        self.routes = RouteTable()
        self.local: dict[str, int] = {}
        self.workspace: dict[str, int] = {}  # what each workspace's Jupyter would say
        self.backend = KubernetesBackend(self.routes, kube_config(settings), hatchery,
                                         clock=clock)
        self.backend.attach_activity(lambda user: self.local.get(user, 0))
        backend = self.backend

        async def workspace_ms(user: str) -> int:
            return self.workspace.get(user, 0)

        self.culler = IdleCuller(backend, self.routes, backend.last_activity_ms,
                                 is_leader=lambda: backend.is_leader, default_limit_ms=limit_ms,
                                 workspace_last_ms=workspace_ms, clock=clock)

    def touch(self, user: str) -> None:  # a request relayed through this replica
        self.local[user] = self.now_ms()

    def now_ms(self) -> int:
        return int(self.clock.time() * 1000)

    @property
    def elector(self) -> LeaderElector:
        assert self.backend.elector is not None
        return self.backend.elector


Start = Callable[..., Awaitable[Replica]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def start_replica(kube_settings: Callable[..., Settings], hatchery: HatcheryConfig,
                        clock: ManualClock) -> AsyncIterator[Start]:
    started: list[Replica] = []

    async def start(name: str, limit_ms: int = 1500, **extra: Any) -> Replica:
        r = Replica(kube_settings(identity=name, default_idle_seconds=0, **FAST, **extra),
                    hatchery, limit_ms, clock)
        await r.backend.start()
        started.append(r)
        return r

    yield start
    for r in started:
        await r.backend.close()


async def test_one_replica_leads_and_the_other_takes_over_within_the_lease_time(
        cluster: Cluster, start_replica: Start, clock: ManualClock) -> None:
    a = await start_replica("a")
    await eventually(lambda: a.backend.is_leader)
    b = await start_replica("b")
    await eventually(lambda: b.elector.holder == "a")  # B has read A's Lease
    assert a.backend.is_leader and not b.backend.is_leader
    await a.elector._loop.stop()  # A dies: no renewal, no release
    assert not await b.elector.try_acquire_or_renew()  # B reads A's last renewal
    clock.advance(LEASE_S - 0.01)
    assert not await b.elector.try_acquire_or_renew()  # not a moment before the lease time
    clock.advance(0.01)
    await eventually(lambda: b.backend.is_leader, within=3)  # B's next round takes it over


async def test_a_stopped_leader_releases_and_hands_over_at_once(
        cluster: Cluster, start_replica: Start) -> None:
    a = await start_replica("a")
    await eventually(lambda: a.backend.is_leader)
    b = await start_replica("b")
    await a.backend.close()
    await eventually(lambda: b.backend.is_leader, within=0.8)  # no time passes: released


async def published(by: Replica, to: Replica) -> None:
    """``by``'s activity has reached ``to`` through the Service annotation."""
    await eventually(lambda: to.backend.last_activity_ms(USER) == by.local[USER])


async def test_traffic_only_through_b_keeps_the_workspace_while_a_culls(
        cluster: Cluster, kubelet: Kubelet, start_replica: Start,
        hatchery: HatcheryConfig, clock: ManualClock) -> None:
    a = await start_replica("a")
    await eventually(lambda: a.backend.is_leader)
    b = await start_replica("b")
    await b.backend.launch(USER, hatchery.options[0], None)
    b.touch(USER)
    await eventually(lambda: a.routes.get(USER) and a.routes.get(USER).ready)  # type: ignore[union-attr]
    for _ in range(8):  # 2.4 s of activity through B alone, past A's 1.5 s limit
        b.touch(USER)
        await published(b, a)
        clock.advance(0.3)
        assert a.backend.is_leader
        assert await a.culler.sweep() == []
    assert await cluster.live_pods()
    clock.advance(1.8)  # idle past the limit
    assert await b.culler.sweep() == []  # B does not lead: it never culls
    assert a.backend.is_leader
    assert await a.culler.sweep() == [USER]
    assert await cluster.items("persistentvolumeclaims")  # the volume stays


async def test_a_workspace_idle_to_every_replica_but_busy_by_its_own_account_is_kept(
        cluster: Cluster, kubelet: Kubelet, start_replica: Start,
        hatchery: HatcheryConfig, clock: ManualClock) -> None:
    a = await start_replica("a")
    await eventually(lambda: a.backend.is_leader)
    await a.backend.launch(USER, hatchery.options[0], None)
    a.touch(USER)
    await eventually(lambda: a.routes.get(USER) and a.routes.get(USER).ready)  # type: ignore[union-attr]
    clock.advance(1.8)  # past the 1.5 s limit by the gateway's record
    a.workspace[USER] = a.now_ms()  # a kernel ran a cell: Jupyter saw it
    assert a.backend.is_leader
    assert await a.culler.sweep() == []
    clock.advance(1.8)  # and now idle by both accounts
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
