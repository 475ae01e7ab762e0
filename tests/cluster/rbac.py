"""hatchway's identity on the test cluster, from one place: the ServiceAccount, Role and
RoleBinding hatchway is deployed with. Every real-cluster test authenticates as that
ServiceAccount, so a verb the Role lacks fails a test with the API server's own 403.

``SOURCE`` is deploy/install.yaml, the Helm chart (deploy/helm/hatchway) rendered with its
default values (deploy/render.sh keeps it current): the objects an operator applies.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .controlplane import REPO, ControlPlane

SOURCE = REPO / "deploy" / "install.yaml"
Grant = tuple[str, str, str]  # (API group, resource, verb)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def service_account() -> tuple[str, str]:
    """(namespace, name) of the ServiceAccount hatchway runs as."""
    (doc,) = [d for d in _docs(SOURCE) if d["kind"] == "ServiceAccount"]
    return str(doc["metadata"]["namespace"]), str(doc["metadata"]["name"])


def hatchway_rbac(namespace: str, *, without: Iterable[Grant] = ()) -> list[dict[str, Any]]:
    """The Role and RoleBinding from ``SOURCE``, placed in ``namespace`` (the user
    namespace), less the grants in ``without``."""
    drop = set(without)
    out = []
    for doc in _docs(SOURCE):
        if doc["kind"] not in ("Role", "RoleBinding"):
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        for rule in doc.get("rules") or []:
            rule["verbs"] = [v for v in rule["verbs"]
                             if not any((g, r, v) in drop for g in rule["apiGroups"]
                                        for r in rule["resources"])]
        out.append(doc)
    return out


def collection(doc: dict[str, Any]) -> str:
    """The API path that creates ``doc``."""
    group, _, version = doc["apiVersion"].rpartition("/")
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    plural = doc["kind"].lower() + ("es" if doc["kind"].endswith("s") else "s")
    namespace = doc["metadata"].get("namespace")
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def create(plane: ControlPlane, docs: Iterable[dict[str, Any]]) -> None:
    """Create each object as the admin (an operator applying manifests)."""
    for doc in docs:
        plane.call("POST", collection(doc), doc)


def setup_user_namespace(plane: ControlPlane, namespace: str, *,
                         without: Iterable[Grant] = ()) -> None:
    """A user namespace as a cluster has it once hatchway is deployed: the namespace, its
    ``default`` ServiceAccount (the controller-manager's job; the ServiceAccount admission
    plugin refuses pods without it) and hatchway's Role and RoleBinding."""
    create(plane, [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "default", "namespace": namespace}},
        *hatchway_rbac(namespace, without=without),
    ])


def hatchway_kubeconfig(plane: ControlPlane, seconds: int = 6 * 3600) -> Path:
    """hatchway's ServiceAccount (created with its namespace if missing) and a kubeconfig
    holding a TokenRequest token for it."""
    namespace, name = service_account()
    for doc in ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                {"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": name, "namespace": namespace}}):
        status, answer = plane.request("POST", collection(doc), doc)
        assert status in (201, 409), answer
    return plane.kubeconfig_for_token(plane.service_account_token(namespace, name,
                                                                  seconds=seconds))
