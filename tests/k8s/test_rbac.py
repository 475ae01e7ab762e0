"""hatchway runs as its ServiceAccount under the Role it ships (tests/cluster/rbac.py reads it
from deploy/): every other real-cluster test proves the Role grants what the backend does by
passing. Here the Role loses one verb, and the API server's own 403 — naming the
ServiceAccount, the verb and the resource — reaches whoever must fix it: the launch's error,
the watch's health."""

from __future__ import annotations

import pytest

from launcher.errors import BackendError
from launcher.options import HatcheryConfig
from launcher.routes import RouteTable

from ..cluster import rbac
from .cluster import Cluster
from .conftest import BackendFactory, eventually

USER = "alice@example.org"
SERVICE_ACCOUNT = "system:serviceaccount:{}:{}".format(*rbac.service_account())


async def take_away(cluster: Cluster, grant: rbac.Grant) -> None:
    """Replace hatchway's Role with one lacking ``grant``; return once RBAC enforces it."""
    (role,) = [d for d in rbac.hatchway_rbac(cluster.namespace, without=[grant])
               if d["kind"] == "Role"]
    await cluster.write("PUT", "roles", role, name=role["metadata"]["name"])
    group, resource, verb = grant
    await eventually(lambda: denied(cluster, group, resource, verb), within=5)


async def denied(cluster: Cluster, group: str, resource: str, verb: str) -> bool:
    """The API server's authorizer, asked as the admin whether hatchway may."""
    status, review = await cluster.request(
        "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
         "spec": {"user": SERVICE_ACCOUNT,
                  "groups": ["system:serviceaccounts", "system:authenticated"],
                  "resourceAttributes": {"namespace": cluster.namespace, "group": group,
                                         "resource": resource, "verb": verb}}})
    assert status == 201, review
    return not review["status"]["allowed"]


async def test_the_shipped_role_lets_hatchway_launch(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(USER, hatchery.options[0], None)
    assert await cluster.names("pods") == ["hatchery-alice-40example-2eorg"]


async def test_a_role_without_create_pods_fails_the_launch_with_the_servers_403(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    await take_away(cluster, ("", "pods", "create"))
    backend = await make_backend()
    with pytest.raises(BackendError) as failed:
        await backend.launch(USER, hatchery.options[0], None)
    message = str(failed.value)
    assert "Kubernetes API 403" in message
    assert f'User "{SERVICE_ACCOUNT}" cannot create resource "pods"' in message
    assert await cluster.names("pods") == []


async def test_a_role_without_watch_services_reports_the_servers_403_in_health(
        cluster: Cluster, make_backend: BackendFactory) -> None:
    await take_away(cluster, ("", "services", "watch"))
    routes = RouteTable()
    backend = await make_backend(routes)
    watch = await eventually(lambda: backend.health()["watches"]["services"].get("last_error"))
    assert "Kubernetes API 403" in watch
    assert f'User "{SERVICE_ACCOUNT}" cannot watch resource "services"' in watch
