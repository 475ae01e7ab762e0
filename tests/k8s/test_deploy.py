"""deploy/: every Kubernetes manifest validates against the Kubernetes schemas, the Role grants
exactly what the backend uses, the Deployment is what the issue asks for, and the config
files in the ConfigMaps load with hatchway's own parsers."""

from __future__ import annotations

import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from launcher.kubernetes.client import PERMISSIONS
from proxy.settings import load_settings

from ..helpers import DEPLOY, manifests, of_kind

K8S_VERSION = "1.33"


@pytest.mark.parametrize(("name", "doc"), manifests(), ids=[n for n, _ in manifests()])
def test_manifest_validates_against_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_kustomization_lists_every_base_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    base = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == base
    for generator in kustomization["configMapGenerator"]:
        assert all((DEPLOY / f).is_file() for f in generator["files"])


def test_role_grants_exactly_what_the_backend_uses() -> None:
    (role,) = of_kind("Role")
    granted = {(g, r): tuple(rule["verbs"]) for rule in role["rules"]
               for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == PERMISSIONS
    assert role["metadata"]["namespace"] == "jupyter-pods"
    (binding,) = of_kind("RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hatchway",
                                    "namespace": "hatchway"}]
    assert not of_kind("ClusterRole") and not of_kind("ClusterRoleBinding")


def test_deployment_is_replicated_probed_bounded_and_locked_down() -> None:
    (deployment,) = of_kind("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/_ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/_status"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["serviceAccountName"] == "hatchway"


def test_workspaces_accept_traffic_only_from_hatchway() -> None:
    policy = next(p for p in of_kind("NetworkPolicy")
                  if p["metadata"]["namespace"] == "jupyter-pods")
    assert policy["spec"]["podSelector"] == {} and policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "hatchway"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "hatchway"}}}]


@pytest.mark.parametrize("where", ["config", "kind"])
def test_config_files_load_with_hatchways_parsers(where: str) -> None:
    settings = load_settings([str(DEPLOY / where / "hatchway.yaml")], environ={})
    assert settings.backend == "kubernetes" and settings.hatchery is not None
    assert settings.hatchery.options
    assert settings.kubernetes.route_to in ("service", "endpoints")


def test_kind_cluster_has_a_node_for_workspaces() -> None:
    cluster = yaml.safe_load((DEPLOY / "kind" / "cluster.yaml").read_text())
    assert any(node.get("labels", {}).get("role") == "jupyter" for node in cluster["nodes"])


def test_kind_e2e_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(DEPLOY / "kind" / "e2e.sh")], check=True)
