"""Fixtures for the Kubernetes backend: the emulated API server on 127.0.0.1 (which tests can
stop and restart on the same port), a kubeconfig pointing at it, the test node, and backends
built exactly as the app builds them (settings → KubernetesBackend)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.kubernetes import KubernetesBackend
from launcher.options import HatcheryConfig, parse_hatchery_config
from launcher.routes import RouteTable
from proxy.settings import Settings, load_settings
from proxy.settings import kube_settings as kube_config

from ..fence_contract import FenceContract
from ..helpers import NAMESPACE
from .emulator import ApiServer, Emulator, write_kubeconfig
from .kubelet import DEMO_IMAGE, SIDECAR_IMAGE, Kubelet

PROXY = "/lw-workspace/proxy/"
BROKEN_IMAGE = "registry.invalid/no-such-image:1"


def demo_entry(name: str = "Demo workspace", **extra: Any) -> dict[str, Any]:
    return {"name": name, "cpu-limit": "0.5", "memory-limit": "256Mi", "image": DEMO_IMAGE,
            "target-port": 8888, "args": ["--base-url", PROXY], "path-rewrite": PROXY,
            "ready-probe": PROXY + "api/status", "user-volume-location": "/home/jovyan/pd",
            **extra}


HATCHERY_DOC: dict[str, Any] = {
    "user-namespace": NAMESPACE,
    "sub-dir": "/lw-workspace",
    "user-volume-size": "1Gi",
    "sidecar": {"cpu-limit": "0.1", "memory-limit": "64Mi", "image": SIDECAR_IMAGE},
    "containers": [demo_entry(), demo_entry("Broken image", image=BROKEN_IMAGE)],
}


@pytest.fixture
async def fence() -> AsyncIterator[FenceContract]:
    """Fence's credentials and token endpoints on loopback (tests/fence_contract.py)."""
    server = FenceContract()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def api() -> AsyncIterator[ApiServer]:
    async with ApiServer() as server:
        yield server


@pytest.fixture
def emulator(api: ApiServer) -> Emulator:
    return api.emulator


@pytest.fixture
def kubeconfig(api: ApiServer, tmp_path: Path) -> str:
    return str(write_kubeconfig(tmp_path / "kubeconfig", api.url))


@pytest.fixture
async def kubelet(api: ApiServer) -> AsyncIterator[Kubelet]:
    async with Kubelet(api.url, NAMESPACE) as node:
        yield node


@pytest.fixture
def hatchery() -> HatcheryConfig:
    return parse_hatchery_config(HATCHERY_DOC, "test hatchery.json")


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

    async def make(routes: RouteTable | None = None, **kubernetes: Any) -> KubernetesBackend:
        table = RouteTable() if routes is None else routes
        backend = KubernetesBackend(table, kube_config(kube_settings(**kubernetes)), hatchery)
        await backend.start()
        started.append(backend)
        return backend

    yield make
    for backend in started:
        await backend.close()


async def eventually(check: Callable[[], Any], within: float = 10.0,
                     interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy (awaiting it when async)."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {check}")
        await asyncio.sleep(interval)


async def api_write(api: ApiServer, method: str, plural: str, body: dict[str, Any] | None = None,
                    name: str = "") -> dict[str, Any]:
    """Write to the emulator as another actor would (a Go Hatchery, an operator)."""
    group = "apis/discovery.k8s.io/v1" if plural == "endpointslices" else "api/v1"
    url = f"{api.url}/{group}/namespaces/{NAMESPACE}/{plural}" + (f"/{name}" if name else "")
    async with aiohttp.ClientSession() as http, http.request(method, url, json=body) as resp:
        assert resp.status < 300, await resp.text()
        return dict(await resp.json())
