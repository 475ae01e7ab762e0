"""The chart on a real kube-apiserver (tests/cluster/): ``helm install`` has every object
accepted, the Prometheus Operator's kinds included once its CRDs (from its Go module, fetched by
``make cluster``) are applied; hatchway, as the chart's ServiceAccount under the chart's Role,
launches, reports and terminates a workspace; ``helm upgrade`` and ``helm uninstall`` leave the
user namespace and every volume in it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.backend import NOT_FOUND, RUNNING
from launcher.kubernetes import KubernetesBackend
from launcher.options import parse_hatchery_config
from launcher.routes import RouteTable

from ..cluster.controlplane import ControlPlane
from ..k8s.cluster import Cluster
from ..k8s.conftest import eventually, hatchery_doc
from .chart import CHART
from .release import (
    CRDS,
    apply_crds,
    claim,
    claims,
    ensure_namespace,
    live,
    manifest,
    operator_env,
    sh,
)
from .workspaces import service_account_kubeconfig, start_backend

USER = "alice@example.org"
POD, SVC, CLAIM = ("hatchery-alice-40example-2eorg", "h-alice-40example-2eorg-s",
                   "claim-alice-40example-2eorg")
_releases = itertools.count(1)


@dataclass
class Installed:
    release: str
    namespace: str  # the release's (the commons')
    users: str  # the user namespace the chart names
    env: dict[str, str]
    cwd: Path

    def helm(self, args: str) -> str:
        return sh(f"helm -n {self.namespace} {args}", self.env, self.cwd)


def install(plane: ControlPlane, workdir: Path, flags: str = "") -> Installed:
    """``helm install`` of the chart alone into a fresh commons namespace."""
    namespace = f"commons-{next(_releases)}"
    ensure_namespace(plane, namespace)
    done = Installed("hatchway", namespace, f"jupyter-pods-{namespace}",
                     operator_env(plane, workdir), workdir)
    done.helm(f"install hatchway {CHART} --set global.hostname=commons.example.org {flags}")
    return done


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Installed]:
    """The chart installed with monitoring and gen3's NetworkPolicies on."""
    apply_crds(control_plane, [CRDS / "monitoring.coreos.com_servicemonitors.yaml",
                               CRDS / "monitoring.coreos.com_prometheusrules.yaml"])
    yield install(control_plane, tmp_path_factory.mktemp("install"),
                  "--set metrics.serviceMonitor.enabled=true "
                  "--set metrics.prometheusRule.enabled=true --set global.netPolicy.enabled=true")


def test_install_has_every_rendered_object_accepted_by_the_api_server(
        control_plane: ControlPlane, installed: Installed) -> None:
    docs = manifest(installed.release, installed.namespace, installed.env, installed.cwd)
    missing = [f"{d['kind']}/{d['metadata']['name']}" for d in docs
               if live(control_plane, d, installed.namespace) is None]
    assert len(docs) > 15 and not missing
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Role", "RoleBinding", "NetworkPolicy", "PodDisruptionBudget",
            "ServiceMonitor", "PrometheusRule", "Namespace"} <= kinds


def test_install_stores_the_objects_as_rendered(control_plane: ControlPlane,
                                                installed: Installed) -> None:
    """What the server holds is what the chart rendered (no field dropped or defaulted away)."""
    docs = manifest(installed.release, installed.namespace, installed.env, installed.cwd)
    for doc in docs:
        held = live(control_plane, doc, installed.namespace)
        assert held is not None
        if doc["kind"] == "Role":
            assert held["rules"] == doc["rules"]
        if doc["kind"] in ("ServiceMonitor", "PrometheusRule", "NetworkPolicy"):
            assert _pruned(held["spec"]) == _pruned(doc["spec"]), doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap":
            assert held["data"] == doc["data"]
        labels = doc["metadata"].get("labels") or {}
        assert labels.items() <= (held["metadata"].get("labels") or {}).items()


async def test_hatchway_as_the_charts_service_account_launches_reports_and_terminates(
        control_plane: ControlPlane, installed: Installed, tmp_path: Path) -> None:
    ensure_namespace(control_plane, installed.users)  # + its default ServiceAccount
    kubeconfig = service_account_kubeconfig(control_plane, installed.namespace)
    hatchery = parse_hatchery_config(hatchery_doc(installed.users), "test hatchery.json")
    routes = RouteTable()
    async with Cluster(control_plane.url, installed.users, str(kubeconfig),
                       control_plane.ssl_context()) as cluster, cluster.kubelet() as node:
        backend = await start_backend(kubeconfig, installed.users, hatchery, tmp_path, routes)
        try:
            await backend.launch(USER, hatchery.options[0], None)
            await eventually(lambda: _status_is(backend, RUNNING), within=30)
            route = await eventually(lambda: (r := routes.get(USER)) and r.ready and r)
            assert (route.host, route.port) == (node.address, node.port_of(POD))
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://{route.host}:{route.port}{route.rewrite}api/status") as resp:
                assert resp.status == 200
            await backend.terminate(USER)
            await eventually(lambda: _status_is(backend, NOT_FOUND), within=30)
        finally:
            await backend.close()
        assert await cluster.names("persistentvolumeclaims") == [CLAIM]
        assert await cluster.names("services") == []


def _pruned(value: Any) -> Any:
    """``value`` without empty lists and maps, which the API server stores as absent."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


async def _status_is(backend: KubernetesBackend, status: str) -> bool:
    return (await backend.status(USER)).status == status


def test_upgrade_with_changed_values_keeps_the_user_namespace_and_every_volume(
        control_plane: ControlPlane, tmp_path: Path) -> None:
    release = install(control_plane, tmp_path)
    ensure_namespace(control_plane, release.users)
    for name in ("claim-alice-40example-2eorg", "claim-bob-40example-2eorg"):
        control_plane.call("POST", f"/api/v1/namespaces/{release.users}/persistentvolumeclaims",
                           claim(name))
    before = claims(control_plane, release.users)
    release.helm(f"upgrade hatchway {CHART} --reuse-values --set replicaCount=3 "
                 "--set hatchery.reaper.idleTimeoutSeconds=1800")
    deployment = control_plane.call(
        "GET", f"/apis/apps/v1/namespaces/{release.namespace}/deployments/hatchway")
    assert deployment["spec"]["replicas"] == 3  # the upgrade did reach the server
    assert claims(control_plane, release.users) == before
    assert control_plane.request("GET", f"/api/v1/namespaces/{release.users}")[0] == 200


def test_uninstall_keeps_the_user_namespace_and_every_volume(
        control_plane: ControlPlane, tmp_path: Path) -> None:
    release = install(control_plane, tmp_path)
    ensure_namespace(control_plane, release.users)
    control_plane.call("POST", f"/api/v1/namespaces/{release.users}/persistentvolumeclaims",
                       claim(CLAIM))
    before = claims(control_plane, release.users)
    out = release.helm("uninstall hatchway")
    assert control_plane.request(
        "GET", f"/apis/apps/v1/namespaces/{release.namespace}/deployments/hatchway")[0] == 404
    namespace = control_plane.call("GET", f"/api/v1/namespaces/{release.users}")
    assert not namespace["metadata"].get("deletionTimestamp"), out
    assert claims(control_plane, release.users) == before
