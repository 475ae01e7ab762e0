"""Over-limit culling across replicas on the real API server: only the Lease holder stops a
workspace whose current pay model is ``above limit`` (pay models in moto's DynamoDB). The
replicas share one ManualClock, so the follower never outlives the leader's Lease; no kubelet
runs, so the workspace stays Launching, which the reaper checks as it checks Running
(gen3-helm hatchery-reaper-cronjob.yaml at 42cc46b, line 102)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from launcher.backend import LAUNCHING
from launcher.clock import ManualClock
from launcher.culling import IdleCuller
from launcher.kubernetes import KubernetesBackend
from launcher.options import HatcheryConfig, parse_hatchery_config
from launcher.paymodels import PayModels
from launcher.routes import RouteTable
from proxy.settings import Settings
from proxy.settings import kube_settings as kube_config

from ...test_paymodels import row
from ..cluster import Cluster
from ..conftest import eventually, hatchery_doc
from .conftest import Table, pods_left

USER = "alice@example.org"


class Replica:
    """A replica's backend and its culler, wired as proxy/serve/app.py wires them."""

    def __init__(self, backend: KubernetesBackend, culler: IdleCuller) -> None:
        self.backend, self.culler = backend, culler


Start = Callable[[str], Awaitable[Replica]]


@pytest.fixture
async def start_replica(kube_settings: Callable[..., Settings], namespace: str, table: Table,
                        moto_url: str) -> AsyncIterator[Start]:
    clock = ManualClock()
    config: HatcheryConfig = parse_hatchery_config(
        {**hatchery_doc(namespace), "pay-models-dynamodb-table": table.name},
        "test hatchery.json")
    pay = PayModels.from_hatchery(config, endpoint_url=moto_url)
    started: list[KubernetesBackend] = []

    async def start(name: str) -> Replica:
        settings = kube_settings(identity=name, lease_seconds=30.0, lease_renew_seconds=0.2)
        routes = RouteTable()
        backend = KubernetesBackend(routes, kube_config(settings), config, clock=clock)
        await backend.start()
        started.append(backend)
        culler = IdleCuller(backend, routes, backend.last_activity_ms,
                            is_leader=lambda: backend.is_leader, clock=clock, paymodels=pay)
        return Replica(backend, culler)

    yield start
    for backend in started:
        await backend.close()
    await pay.close()


async def test_only_the_lease_holder_stops_a_workspace_over_its_limit(
        cluster: Cluster, table: Table, start_replica: Start) -> None:
    table.put(row(USER, "w1", current=True, status="above limit", usage="120"))
    a = await start_replica("a")
    await eventually(lambda: a.backend.is_leader)
    b = await start_replica("b")
    await b.backend.launch(USER, b.backend.hatchery.options[0], None)
    await eventually(lambda: b.backend.routes.get(USER) and a.backend.routes.get(USER))
    assert (await b.backend.status(USER)).status == LAUNCHING
    assert not b.backend.is_leader
    assert await b.culler.sweep() == []  # B does not lead: it never stops anyone
    assert await pods_left(cluster)
    assert await a.culler.sweep() == [USER]
    await eventually(lambda: gone(cluster))
    assert await cluster.items("persistentvolumeclaims")  # the volume stays


async def gone(cluster: Cluster) -> bool:
    return not await pods_left(cluster)
