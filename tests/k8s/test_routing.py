"""Services → routes: hatchway's own Services, and (drop-in) Services annotated exactly as a Go
Hatchery annotates them, with no hatchway label at all; on the real API server."""

from __future__ import annotations

from launcher.ambassador import mapping_annotation
from launcher.kubernetes.routing import parse_mapping
from launcher.options import parse_hatchery_config
from launcher.routes import Route, RouteTable

from ..helpers import (
    ESC,
    HATCHERY_ANNOTATION,
    SERVICE,
    USER,
    hatchery_annotation,
    hatchery_service,
)
from .cluster import Cluster, endpoint_slice
from .conftest import NAMESPACE, BackendFactory, api_write, eventually


def test_hatchery_annotation_gives_user_upstream_rewrite_and_tls() -> None:
    assert parse_mapping(HATCHERY_ANNOTATION) == {
        "user": USER, "service": f"{SERVICE}.{NAMESPACE}.svc.cluster.local:80",
        "rewrite": "/lw-workspace/proxy/", "tls": False}


def test_emissary_v3alpha1_annotation_reads_the_same() -> None:
    option = parse_hatchery_config({"containers": [{
        "name": "j", "image": "i", "path-rewrite": "/lw-workspace/proxy/", "use-tls": "true"}]},
        "h").options[0]
    facts = parse_mapping(mapping_annotation(USER, option, NAMESPACE, "v3alpha1"))
    assert facts is not None
    assert (facts["user"], facts["rewrite"], facts["tls"]) == (USER, "/lw-workspace/proxy/", True)


def test_annotation_without_a_user_match_is_no_route() -> None:
    assert parse_mapping("---\nkind: Mapping\nprefix: /x/\nservice: a:80\n") is None
    assert parse_mapping(": not yaml [") is None


async def test_dropin_routes_a_hatchery_service_to_its_ready_endpoint(
        cluster: Cluster, make_backend: BackendFactory) -> None:
    await api_write(cluster, "POST", "services", hatchery_service(cluster.namespace))
    await api_write(cluster, "POST", "endpointslices",
                    endpoint_slice(SERVICE, 43210, port_name=f"hatchery-{ESC}",
                                   address=cluster.pod_address))
    routes = RouteTable()
    await make_backend(routes, dropin_ambassador=True, route_to="endpoints")
    assert await eventually(lambda: routes.get(USER)) == Route(
        cluster.pod_address, 43210, "/lw-workspace/proxy/", True, False,
        f"k8s:ambassador/{cluster.namespace}/{SERVICE}")


async def test_dropin_in_service_mode_routes_to_the_mappings_service(
        cluster: Cluster, make_backend: BackendFactory) -> None:
    await api_write(cluster, "POST", "services", hatchery_service(cluster.namespace))
    await api_write(cluster, "POST", "endpointslices", endpoint_slice(SERVICE, 8888,
                                                                    address=cluster.pod_address))
    routes = RouteTable()
    await make_backend(routes, dropin_ambassador=True)
    route = await eventually(lambda: routes.get(USER))
    assert (route.host, route.port, route.ready) == (
        f"{SERVICE}.{cluster.namespace}.svc.cluster.local", 80, True)


async def test_hatchery_services_are_ignored_unless_dropin(
        cluster: Cluster, make_backend: BackendFactory) -> None:
    await api_write(cluster, "POST", "services", hatchery_service(cluster.namespace))
    routes = RouteTable()
    backend = await make_backend(routes)
    assert backend.services is not None and backend.services.synced.is_set()
    assert routes.get(USER) is None


async def test_route_is_not_ready_until_an_endpoint_is(
        cluster: Cluster, make_backend: BackendFactory) -> None:
    await api_write(cluster, "POST", "services", hatchery_service(cluster.namespace))
    routes = RouteTable()
    await make_backend(routes, dropin_ambassador=True, route_to="endpoints")
    route = await eventually(lambda: routes.get(USER))
    assert route.ready is False
    await api_write(cluster, "POST", "endpointslices", endpoint_slice(SERVICE, 4321, ready=False,
                                                                    address=cluster.pod_address))
    await api_write(cluster, "PATCH", "endpointslices",
                    endpoint_slice(SERVICE, 4321, address=cluster.pod_address),
                    name=f"{SERVICE}-abcde")
    assert (await eventually(lambda: (r := routes.get(USER)) and r.ready and r)).port == 4321


async def test_deleting_the_service_removes_the_route_and_only_it(
        cluster: Cluster, make_backend: BackendFactory) -> None:
    routes = RouteTable()
    routes.set("static-user", Route("10.0.0.1", 80, source="static"))
    await api_write(cluster, "POST", "services", hatchery_service(cluster.namespace))
    await make_backend(routes, dropin_ambassador=True)
    await eventually(lambda: routes.get(USER))
    await api_write(cluster, "DELETE", "services", name=SERVICE)
    await eventually(lambda: routes.get(USER) is None)
    assert routes.get("static-user") is not None


async def test_a_service_recording_another_user_does_not_route(
        cluster: Cluster, make_backend: BackendFactory) -> None:
    """A Mapping for alice on a Service whose gen3username says mallory routes nobody."""
    svc = hatchery_service(cluster.namespace)
    svc["metadata"]["annotations"]["gen3username"] = "mallory"  # type: ignore[index]
    await api_write(cluster, "POST", "services", svc)
    other = hatchery_service(cluster.namespace)
    other["metadata"]["name"] = "h-bob-s"  # type: ignore[index]
    other["metadata"]["annotations"] = {  # type: ignore[index]
        "getambassador.io/config": hatchery_annotation(cluster.namespace).replace(USER, "bob")}
    await api_write(cluster, "POST", "services", other)
    routes = RouteTable()
    await make_backend(routes, dropin_ambassador=True)
    await eventually(lambda: routes.get("bob"))
    assert routes.get(USER) is None and routes.get("mallory") is None


async def test_a_hatchway_service_not_named_for_its_user_does_not_route(
        cluster: Cluster, make_backend: BackendFactory) -> None:
    """hatchway names a user's Service after them: one claiming someone else is refused."""
    svc = hatchery_service(cluster.namespace)
    svc["metadata"] = {"name": "h-mallory-s", "labels": {  # type: ignore[index]
        "app.kubernetes.io/managed-by": "hatchway"},
        "annotations": {"hatchway.gen3.org/user": USER}}
    await api_write(cluster, "POST", "services", svc)
    good = hatchery_service()
    good["metadata"] = {"name": SERVICE, "labels": {  # type: ignore[index]
        "app.kubernetes.io/managed-by": "hatchway"},
        "annotations": {"hatchway.gen3.org/user": "bob"}}
    await api_write(cluster, "POST", "services", good)
    carol = hatchery_service()
    carol["metadata"] = {"name": "h-carol-s", "labels": {  # type: ignore[index]
        "app.kubernetes.io/managed-by": "hatchway"},
        "annotations": {"hatchway.gen3.org/user": "carol"}}
    await api_write(cluster, "POST", "services", carol)
    routes = RouteTable()
    await make_backend(routes)
    await eventually(lambda: routes.get("carol"))
    assert routes.get(USER) is None and routes.get("bob") is None
