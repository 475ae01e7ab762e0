"""Helm releases on the real control plane (tests/cluster/): helm and kubectl as an operator runs
them (the admin kubeconfig in ``KUBECONFIG``), the objects a release made, looked up on the API
server, and the pieces of a cluster no controller makes here.

helm and kubectl run in the test session's network namespace (tests/cluster/podnetwork.py): they
reach only the API server on loopback, which is all they need.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..cluster.controlplane import BIN, ControlPlane
from ..helpers import wait_until
from .chart import REPO, helm_binary

KUBECTL = BIN / "kubectl"
CRDS = REPO / ".build" / "crds"  # make cluster: the Prometheus Operator's, from its Go module
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def operator_env(plane: ControlPlane, workdir: Path) -> dict[str, str]:
    """An operator's shell: helm and kubectl on PATH, the admin kubeconfig, helm's caches in
    ``workdir``."""
    for tool in (Path(helm_binary()), KUBECTL):
        if not os.access(tool, os.X_OK):
            pytest.fail(f"{tool} is missing: `make cluster helm` builds it (make test does)")
    return {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(plane.admin_kubeconfig),
            "HELM_CACHE_HOME": str(workdir / ".helm-cache"),
            "HELM_CONFIG_HOME": str(workdir / ".helm-config"),
            "HELM_DATA_HOME": str(workdir / ".helm-data")}


def sh(script: str, env: dict[str, str], cwd: Path) -> str:
    """Run shell commands as written (``set -e``); their output, or a failure naming them."""
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"these commands failed ({done.returncode}):\n{script}\n"
                             f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done.stdout


def plural(kind: str) -> str:
    low = kind.lower()
    if low.endswith("y"):
        return low[:-1] + "ies"
    return low + ("es" if low.endswith("s") else "s")


def object_path(doc: dict[str, Any], namespace: str) -> str:
    """The API path of a rendered object (``namespace``: the release's, where the manifest
    names none)."""
    group, _, version = doc["apiVersion"].rpartition("/")
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    name = doc["metadata"]["name"]
    if doc["kind"] in CLUSTER_SCOPED:
        return f"{base}/{plural(doc['kind'])}/{name}"
    where = doc["metadata"].get("namespace") or namespace
    return f"{base}/namespaces/{where}/{plural(doc['kind'])}/{name}"


def manifest(release: str, namespace: str, env: dict[str, str], cwd: Path
             ) -> list[dict[str, Any]]:
    """What ``helm get manifest`` says the release holds."""
    text = sh(f"helm -n {namespace} get manifest {release}", env, cwd)
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d]


def live(plane: ControlPlane, doc: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    """The object on the API server, None when it is not there."""
    status, answer = plane.request("GET", object_path(doc, namespace))
    if status == 404:
        return None
    assert status == 200, answer
    return dict(answer)


def apply_crds(plane: ControlPlane, files: Iterable[Path]) -> None:
    """Create the CRDs (as the admin) and wait until the API server serves them."""
    for path in files:
        if not path.is_file():
            pytest.fail(f"{path} is missing: `make cluster` fetches the Prometheus Operator's "
                        "CRDs from its Go module (make test does)")
        _apply_crd(plane, path)


def _apply_crd(plane: ControlPlane, path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    status, answer = plane.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    assert status in (201, 409), answer
    where = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{doc['metadata']['name']}"
    wait_until(lambda: any(c["type"] == "Established" and c["status"] == "True"
                           for c in _conditions(plane.call("GET", where))),
               30, failure=lambda: f"{path.name} not established within 30 s")


def _conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def ensure_namespace(plane: ControlPlane, name: str) -> None:
    """A namespace with its ``default`` ServiceAccount (the controller-manager's job; pods need
    it), whether Helm or the test made the namespace."""
    status, answer = plane.request("POST", "/api/v1/namespaces",
                                   {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": name}})
    assert status in (201, 409), answer
    status, answer = plane.request("POST", f"/api/v1/namespaces/{name}/serviceaccounts",
                                   {"apiVersion": "v1", "kind": "ServiceAccount",
                                    "metadata": {"name": "default"}})
    assert status in (201, 409), answer


def claim(name: str) -> dict[str, Any]:
    """A user's volume claim as Hatchery makes it (no provisioner here: it stays Pending)."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "10Gi"}}}}


def claims(plane: ControlPlane, namespace: str) -> dict[str, str]:
    """Every PVC in ``namespace``: name → uid (a re-created claim is another volume)."""
    items = plane.call("GET", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims")["items"]
    return {c["metadata"]["name"]: c["metadata"]["uid"] for c in items
            if not c["metadata"].get("deletionTimestamp")}
