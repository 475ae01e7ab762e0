"""deploy/ (kustomize, for those who don't use Helm): its manifests are the Helm chart rendered
(deploy/render.sh), so every check tests/helm makes of the chart holds for them; here: they are
current, valid Kubernetes, ready for a commons (its services by their full names,
GEN3_ENDPOINT set, gen3-helm's user namespace), and their config loads with hatchway's
parsers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from launcher.kubernetes.client import PERMISSIONS
from proxy.settings import load_settings

from ..helm.chart import helm_binary
from ..helpers import DEPLOY, manifests, of_kind

K8S_VERSION = "1.33"
BASE = DEPLOY / "install.yaml"
KIND = DEPLOY / "kind" / "install.yaml"


def test_the_rendered_manifests_are_what_the_chart_renders_now() -> None:
    """A chart change without `deploy/render.sh` fails here, with the diff."""
    done = subprocess.run([str(DEPLOY / "render.sh"), "--check"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "HELM": helm_binary()})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("name", "doc"), manifests(), ids=[n for n, _ in manifests()])
def test_manifest_validates_against_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("where", [DEPLOY, DEPLOY / "kind", DEPLOY / "monitoring"],
                         ids=["base", "kind", "monitoring"])
def test_each_kustomization_lists_files_that_exist(where: Path) -> None:
    kustomization = yaml.safe_load((where / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (where / name).is_file(), name
    for generator in kustomization.get("configMapGenerator", []):
        assert all((where / f).is_file() for f in generator["files"])


def test_the_role_grants_exactly_what_the_backend_uses() -> None:
    (role,) = of_kind("Role")
    granted = {(g, r): tuple(rule["verbs"]) for rule in role["rules"]
               for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == PERMISSIONS
    assert role["metadata"]["namespace"] == "jupyter-pods-default"  # gen3-helm's name
    assert not of_kind("ClusterRole") and not of_kind("ClusterRoleBinding")


def _settings(where: Path, tmp_path: Path) -> Any:
    """The settings as the rendered pod loads them: its hatchway.yaml and hatchery.json."""
    maps = {c["metadata"]["name"]: c["data"] for c in of_kind("ConfigMap", where)}
    (tmp_path / "hatchway.yaml").write_text(maps["hatchway-config"]["hatchway.yaml"])
    (tmp_path / "hatchery.json").write_text(maps["manifest-hatchery"]["json"])
    return load_settings([str(tmp_path / "hatchway.yaml"), str(tmp_path / "hatchery.json")],
                         environ={})


def test_the_base_is_ready_for_a_commons(tmp_path: Path) -> None:
    """What issue 17 found missing: the commons' services by full name, GEN3_ENDPOINT, the user
    namespace gen3-helm uses, revproxy trusted without hand edits, a place for IRSA."""
    settings = _settings(BASE, tmp_path)
    assert settings.sessions.jwks_url == \
        "http://fence-service.default.svc.cluster.local/.well-known/jwks"
    assert settings.authz.arborist_url == "http://arborist-service.default.svc.cluster.local"
    assert settings.kubernetes.namespace == "jupyter-pods-default"
    assert settings.hatchery is not None
    assert settings.hatchery.user_namespace == "jupyter-pods-default"
    assert settings.trusted_proxies and settings.ambassador_port
    (deployment,) = of_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "GEN3_ENDPOINT", "value": "commons.example.org"} in container["env"]
    assert {p["name"] for p in container["ports"]} == {"http", "ambassador", "metrics"}
    assert {s["metadata"]["name"] for s in of_kind("Service")} >= {"hatchery-service",
                                                                   "ambassador-service"}


def test_the_kind_install_uses_dev_sessions_and_its_own_image(tmp_path: Path) -> None:
    settings = _settings(KIND, tmp_path)
    assert settings.sessions.mode == "dev" and settings.sessions.allow_insecure_dev_on_network
    assert settings.trusted_proxies == []
    (deployment,) = of_kind("Deployment", KIND)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "hatchway:kind" and container["imagePullPolicy"] == "Never"


def test_kind_cluster_has_a_node_for_workspaces() -> None:
    cluster = yaml.safe_load((DEPLOY / "kind" / "cluster.yaml").read_text())
    assert any(node.get("labels", {}).get("role") == "jupyter" for node in cluster["nodes"])


def test_kind_e2e_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(DEPLOY / "kind" / "e2e.sh")], check=True)
