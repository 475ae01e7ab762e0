"""Fixtures for the Kubernetes backend.

``cluster`` is the real control plane (tests/cluster/: etcd + kube-apiserver, one per session)
with a fresh user namespace per test, set up as a deployed hatchway has it (the Role and
RoleBinding of tests/cluster/rbac.py's source), and hatchway reaching it as its ServiceAccount
with a TokenRequest token: a verb the Role lacks fails with the API server's own 403. A test
that injects faults the real server cannot be made to show (outages, stalls, 409 storms) is
marked ``emulated`` and runs on the emulator (tests/k8s/emulator.py) instead; its module's
docstring says so. Backends are built exactly as the app builds them (settings → KubernetesBackend).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from launcher.clock import REAL, Clock
from launcher.kubernetes import KubernetesBackend
from launcher.options import HatcheryConfig, parse_hatchery_config
from launcher.routes import RouteTable
from proxy.settings import Settings, load_settings
from proxy.settings import kube_settings as kube_config

from ..cluster import rbac
from ..cluster.controlplane import ControlPlane
from ..fence_contract import FenceContract
from ..helpers import NAMESPACE
from ..helpers import eventually as eventually  # the suite's one, for the k8s modules
from .cluster import Cluster
from .emulator import ApiServer, Emulator, write_kubeconfig
from .kubelet import DEMO_IMAGE, SIDECAR_IMAGE, Kubelet

PROXY = "/lw-workspace/proxy/"
BROKEN_IMAGE = "registry.invalid/no-such-image:1"


def demo_entry(name: str = "Demo workspace", **extra: Any) -> dict[str, Any]:
    return {"name": name, "cpu-limit": "0.5", "memory-limit": "256Mi", "image": DEMO_IMAGE,
            "target-port": 8888, "args": ["--base-url", PROXY], "path-rewrite": PROXY,
            "ready-probe": PROXY + "api/status", "user-volume-location": "/home/jovyan/pd",
            **extra}


def hatchery_doc(namespace: str) -> dict[str, Any]:
    return {
        "user-namespace": namespace,
        "sub-dir": "/lw-workspace",
        "user-volume-size": "1Gi",
        "sidecar": {"cpu-limit": "0.1", "memory-limit": "64Mi", "image": SIDECAR_IMAGE},
        "containers": [demo_entry(), demo_entry("Broken image", image=BROKEN_IMAGE)],
    }


HATCHERY_DOC = hatchery_doc(NAMESPACE)
_namespaces = itertools.count(1)


@pytest.fixture
async def fence() -> AsyncIterator[FenceContract]:
    """Fence's credentials and token endpoints on loopback (tests/fence_contract.py)."""
    server = FenceContract()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="session")
def hatchway_kubeconfig(control_plane: ControlPlane) -> Path:
    """hatchway's ServiceAccount on the real cluster and a kubeconfig with its token."""
    return rbac.hatchway_kubeconfig(control_plane)


@pytest.fixture
async def real_cluster(control_plane: ControlPlane, hatchway_kubeconfig: Path
                       ) -> AsyncIterator[Cluster]:
    namespace = f"jupyter-pods-{next(_namespaces)}"
    rbac.setup_user_namespace(control_plane, namespace)
    async with Cluster(control_plane.url, namespace, str(hatchway_kubeconfig),
                       control_plane.ssl_context()) as cluster:
        yield cluster


@pytest.fixture
async def api() -> AsyncIterator[ApiServer]:
    """The emulated API server (fault injection only)."""
    async with ApiServer() as server:
        yield server


@pytest.fixture
def emulator(api: ApiServer) -> Emulator:
    return api.emulator


@pytest.fixture
async def emulated_cluster(api: ApiServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", api.url))
    async with Cluster(api.url, NAMESPACE, kubeconfig, real=False) as cluster:
        yield cluster


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """The cluster a test runs against: the real one, unless it is marked ``emulated``."""
    which = "emulated_cluster" if request.node.get_closest_marker("emulated") else \
        "real_cluster"
    found: Cluster = request.getfixturevalue(which)
    return found


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    return cluster.namespace


@pytest.fixture
def kubeconfig(cluster: Cluster) -> str:
    return cluster.kubeconfig


@pytest.fixture
async def kubelet(cluster: Cluster) -> AsyncIterator[Kubelet]:
    async with cluster.kubelet() as node:
        yield node


@pytest.fixture
def hatchery(namespace: str) -> HatcheryConfig:
    return parse_hatchery_config(hatchery_doc(namespace), "test hatchery.json")


@pytest.fixture
def kube_settings(kubeconfig: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**kubernetes: Any) -> Settings:
        k8s = {"kubeconfig": kubeconfig, "request_timeout": 2, "connect_timeout": 0.5,
               "retries": 1, "retry_backoff": 0.05, "backoff_max": 0.2, "watch_seconds": 30,
               "api_keys": False,  # no Fence here; tests/k8s/test_fence_keys.py runs one
               **kubernetes}
        return load_settings([], environ={}, overrides={
            "backend": "kubernetes", "state_dir": str(tmp_path / "state"), "kubernetes": k8s})
    return make


BackendFactory = Callable[..., Awaitable[KubernetesBackend]]


@pytest.fixture
async def make_backend(kube_settings: Callable[..., Settings], hatchery: HatcheryConfig
                       ) -> AsyncIterator[BackendFactory]:
    """Start a backend (a hatchway replica) with its own route table; closed at teardown."""
    started: list[KubernetesBackend] = []

    async def make(routes: RouteTable | None = None, *, clock: Clock = REAL,
                   **kubernetes: Any) -> KubernetesBackend:
        table = RouteTable() if routes is None else routes
        backend = KubernetesBackend(table, kube_config(kube_settings(**kubernetes)), hatchery,
                                    clock=clock)
        await backend.start()
        started.append(backend)
        return backend

    yield make
    for backend in started:
        await backend.close()


async def api_write(cluster: Cluster, method: str, plural: str,
                    body: dict[str, Any] | None = None, name: str = "") -> dict[str, Any]:
    """Write to the cluster as another actor would (a Go Hatchery, an operator)."""
    return await cluster.write(method, plural, body, name)
