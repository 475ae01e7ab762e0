"""Watch discipline: routes survive ended watches, 410 Gone, API server outages and restarts
of hatchway, and every replica routes alike. Against the real API server, except the tests
marked ``emulated`` (tests/k8s/emulator.py), which need what a real one cannot be made to do
on cue: drop every watch, hold watches back while a change goes by, refuse connections, or
accept a watch and never answer it."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.routes import RouteTable

from ..cluster.controlplane import ControlPlane
from ..helpers import hatchery_service
from .cluster import Cluster
from .conftest import ApiServer, BackendFactory, api_write, eventually

MANAGED = {"app.kubernetes.io/managed-by": "hatchway", "hatchway.gen3.org/user": "u"}


def own_service(user: str, name: str) -> dict[str, object]:
    """A Service as hatchway writes it (specs.service_spec), for a user with a given name."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": MANAGED,
                         "annotations": {"hatchway.gen3.org/user": user,
                                         "hatchway.gen3.org/rewrite": "/lw-workspace/proxy/"}},
            "spec": {"selector": {"app": name}, "ports": [{"name": "p", "port": 80,
                                                           "targetPort": 8888}]}}


@pytest.fixture(scope="session")
def uncached_kubeconfig(control_plane: ControlPlane, hatchway_kubeconfig: Path) -> Path:
    """hatchway's kubeconfig pointing at a second API server of the same cluster (an HA
    replica) that serves watches from etcd itself (``--watch-cache=false``): a watch from a
    version etcd has compacted away is answered 410 Gone, as on any API server whose watch
    cache no longer holds that version."""
    replica = control_plane.start_apiserver("kube-apiserver-uncached", ["--watch-cache=false"])
    return control_plane.kubeconfig_at(hatchway_kubeconfig, replica.url)


async def test_routes_come_from_the_list_at_start(cluster: Cluster,
                                                  make_backend: BackendFactory) -> None:
    await api_write(cluster, "POST", "services", own_service("alice", "h-alice-s"))
    routes = RouteTable()
    await make_backend(routes)
    route = routes.get("alice")  # start() waited for the first list
    assert route is not None
    assert (route.host, route.port, route.rewrite, route.ready) == (
        f"h-alice-s.{cluster.namespace}.svc.cluster.local", 80, "/lw-workspace/proxy/", False)


async def test_services_of_others_are_not_listed(cluster: Cluster,
                                                 make_backend: BackendFactory) -> None:
    await api_write(cluster, "POST", "services", hatchery_service())
    backend = await make_backend()
    assert backend.services is not None and backend.services.cache == {}


async def test_a_watch_the_server_ends_resumes_from_its_version_without_a_relist(
        cluster: Cluster, make_backend: BackendFactory) -> None:
    routes = RouteTable()
    backend = await make_backend(routes, watch_seconds=1)  # the server ends each after 1 s
    services = backend.services
    assert services is not None
    await eventually(lambda: services.watches >= 3)  # the server ended two
    await api_write(cluster, "POST", "services", own_service("bob", "h-bob-s"))
    await eventually(lambda: routes.get("bob"))
    assert backend.services is not None and backend.services.lists == 1  # resumed, no re-list
    assert backend.health()["watches"]["services"]["errors"] == 0


@pytest.mark.emulated
async def test_dropped_watch_resumes_and_sees_later_changes(
        api: ApiServer, cluster: Cluster, make_backend: BackendFactory) -> None:
    routes = RouteTable()
    backend = await make_backend(routes)
    await eventually(lambda: api.emulator.open_watches >= 2)
    api.emulator.drop_watches()
    await api_write(cluster, "POST", "services", own_service("bob", "h-bob-s"))
    await eventually(lambda: routes.get("bob"))
    assert backend.services is not None and backend.services.lists == 1  # resumed, no re-list


async def test_a_watch_from_a_compacted_version_gets_410_and_relists(
        cluster: Cluster, control_plane: ControlPlane, uncached_kubeconfig: Path,
        make_backend: BackendFactory) -> None:
    await api_write(cluster, "POST", "services", own_service("alice", "h-alice-s"))
    routes = RouteTable()
    backend = await make_backend(routes, kubeconfig=str(uncached_kubeconfig), watch_seconds=1)
    assert backend.services is not None and routes.get("alice") is not None
    before = routes.get("alice")
    # The cluster moves on where hatchway's watch does not look (two writes: etcd keeps the
    # revision it compacts to), then etcd compacts its history: the version hatchway
    # resumes from is gone.
    for name in ("elsewhere-1", "elsewhere-2"):
        await cluster.write("POST", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": name}})
    control_plane.compact_etcd()
    await eventually(lambda: backend.services.lists >= 2, within=5)  # type: ignore[union-attr]
    assert backend.services.gone >= 1 and routes.get("alice") == before
    await api_write(cluster, "POST", "services", own_service("bob", "h-bob-s"))
    await eventually(lambda: routes.get("bob"))
    assert backend.health()["watches"]["services"]["errors"] == 0


@pytest.mark.emulated
async def test_410_gone_relists_and_heals_a_missed_delete(
        api: ApiServer, cluster: Cluster, make_backend: BackendFactory) -> None:
    await api_write(cluster, "POST", "services", own_service("alice", "h-alice-s"))
    routes = RouteTable()
    backend = await make_backend(routes)
    assert backend.services is not None
    await eventually(lambda: api.emulator.open_watches >= 2)
    api.emulator.hold_watches()
    api.emulator.drop_watches()  # the watches reconnect, and wait...
    await api_write(cluster, "DELETE", "services", name="h-alice-s")  # ...missing this delete
    api.emulator.compact(advance=1)  # and the versions they hold are compacted away
    api.emulator.release_watches()
    await eventually(lambda: routes.get("alice") is None)
    assert backend.services.gone >= 1 and backend.health()["relists"] >= 1


async def test_periodic_relist_happens_without_errors(cluster: Cluster,
                                                      make_backend: BackendFactory) -> None:
    backend = await make_backend(relist_seconds=0.3)
    await eventually(lambda: backend.health()["relists"] >= 2, within=5)
    assert backend.health()["watches"]["services"]["errors"] == 0


async def test_two_replicas_route_a_user_to_the_same_place(
        cluster: Cluster, make_backend: BackendFactory) -> None:
    first, second = RouteTable(), RouteTable()
    await make_backend(first)
    await make_backend(second)
    await api_write(cluster, "POST", "services", own_service("alice", "h-alice-s"))
    await eventually(lambda: first.get("alice") and second.get("alice"))
    assert first.get("alice") == second.get("alice")


async def test_restarted_replica_rebuilds_every_route(cluster: Cluster,
                                                      make_backend: BackendFactory) -> None:
    old = await make_backend()
    for user in ("alice", "bob", "carol"):
        await api_write(cluster, "POST", "services", own_service(user, f"h-{user}-s"))
    await eventually(lambda: len(old.routes) == 3)
    await old.close()
    fresh = RouteTable()
    await make_backend(fresh)
    assert dict(fresh.items()) == dict(old.routes.items())


@pytest.mark.emulated
async def test_api_outage_keeps_routes_and_reports_down_then_recovers(
        api: ApiServer, cluster: Cluster, make_backend: BackendFactory) -> None:
    await api_write(cluster, "POST", "services", own_service("alice", "h-alice-s"))
    routes = RouteTable()
    backend = await make_backend(routes)
    before = routes.get("alice")
    await api.stop()
    await eventually(lambda: backend.health()["watch"] == "down")
    assert routes.get("alice") == before
    assert backend.health()["healthy"] is True  # restarting hatchway would not help
    services = backend.services
    assert services is not None
    failed = services.errors
    await eventually(lambda: services.errors >= failed + 3)  # several failed re-lists later
    assert routes.get("alice") == before
    await api.start()
    await api_write(cluster, "POST", "services", own_service("bob", "h-bob-s"))
    await eventually(lambda: routes.get("bob"))
    await eventually(lambda: backend.health()["watch"] == "ok")
    assert routes.get("alice") == before


@pytest.mark.emulated
async def test_start_with_the_api_down_routes_once_it_answers(
        api: ApiServer, cluster: Cluster, make_backend: BackendFactory) -> None:
    await api_write(cluster, "POST", "services", own_service("alice", "h-alice-s"))
    await api.stop()
    routes = RouteTable()
    backend = await make_backend(routes, request_timeout=0.5)  # the watches keep trying
    assert backend.health()["watch"] == "down" and routes.get("alice") is None
    await api.start()
    await eventually(lambda: routes.get("alice"))


@pytest.mark.emulated
async def test_stalled_watch_is_cut_and_relisted(api: ApiServer, cluster: Cluster,
                                                 make_backend: BackendFactory) -> None:
    routes = RouteTable()
    backend = await make_backend(routes, watch_seconds=1, watch_stall_seconds=0.3)
    await eventually(lambda: api.emulator.open_watches >= 2)
    api.emulator.hold_watches()  # the next watch requests get no answer at all
    await eventually(lambda: backend.health()["watches"]["services"]["errors"] >= 1, within=5)
    assert "Timeout" in backend.health()["watches"]["services"]["last_error"]
    api.emulator.release_watches()
    await api_write(cluster, "POST", "services", own_service("bob", "h-bob-s"))
    await eventually(lambda: routes.get("bob"))
