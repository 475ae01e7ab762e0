"""Readiness on the Kubernetes backend: a replica whose route watch has never synced is not
ready (it would answer "no workspace" to everyone); once synced it is, and it stays ready
while the API server is away (routes keep serving from the cache). On the emulator
(tests/k8s/emulator.py): the outage is injected."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from proxy.serve.app import build_app
from proxy.serve.server import start
from proxy.settings import load_settings

from .conftest import ApiServer, eventually

pytestmark = pytest.mark.emulated


async def test_readiness_waits_for_the_first_sync_and_survives_an_outage(
        api: ApiServer, kubeconfig: str, tmp_path: Path) -> None:
    await api.stop()
    settings = load_settings([], environ={}, overrides={
        "state_dir": str(tmp_path / "state"), "backend": "kubernetes",
        "kubernetes": {"kubeconfig": kubeconfig, "request_timeout": 0.5, "retries": 1,
                       "retry_backoff": 0.05, "backoff_max": 0.2}})
    running = await start(build_app(settings), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{running.port}/lw-workspace/_ready"
    try:
        async with aiohttp.ClientSession() as http:
            async def ready() -> tuple[int, dict[str, object]]:
                async with http.get(url) as resp:
                    return resp.status, await resp.json()

            status, body = await ready()
            assert status == 503
            assert body["failing"] == ["routes"]
            await api.start()
            async def now_ready() -> bool:
                return (await ready())[0] == 200

            await eventually(now_ready, within=10)
            await api.stop()
            status, _ = await ready()
            assert status == 200
    finally:
        await running.close()

