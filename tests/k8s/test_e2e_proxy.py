"""End to end through the real gateway (``proxy.serve.app.build_app``) on the Kubernetes backend:
options → launch → ``Launching`` with progress over SSE → ``Running`` → HTTP and WebSocket
through the proxy → terminate → ``Not Found`` with the PVC still there. A second replica and a
restarted one reach the very same workspace, because routes come from the cluster. On the real
API server; the API server going away is the emulator's (tests/k8s/emulator.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.api.devlogin import DEV_ISSUER
from proxy.gateway import GATEWAY
from proxy.serve.app import build_app
from proxy.settings import load_settings

from ..conftest import GatewayUnderTest
from .cluster import Cluster
from .conftest import PROXY, ApiServer, eventually, hatchery_doc
from .kubelet import Kubelet

API = "/lw-workspace/"
USER = "alice"

Starter = Callable[[], Any]


def auth(gw: GatewayUnderTest) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.token(USER)}"}


async def get(http: aiohttp.ClientSession, gw: GatewayUnderTest, path: str) -> Any:
    async with http.get(gw.url(path), headers=auth(gw)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def status(http: aiohttp.ClientSession, gw: GatewayUnderTest) -> str:
    return str((await get(http, gw, API + "status"))["status"])


async def status_is(http: aiohttp.ClientSession, gw: GatewayUnderTest, wanted: str) -> bool:
    return await status(http, gw) == wanted


async def progress(http: aiohttp.ClientSession, gw: GatewayUnderTest) -> list[dict[str, Any]]:
    events = []
    async with http.get(gw.url(API + "progress"), headers=auth(gw)) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for line in resp.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["ready"] or events[-1]["failed"]:
                    break
    return events


async def whoami(http: aiohttp.ClientSession, gw: GatewayUnderTest) -> str:
    """The workspace's own start time: the same value means the same process."""
    async with http.get(gw.url(PROXY + "api/status"), headers=auth(gw)) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["started"])


async def test_launch_use_and_terminate_through_the_gateway(
        cluster: Cluster, kubelet: Kubelet, kubeconfig: str, tmp_path: Path,
        aiohttp_server: Any) -> None:
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps(hatchery_doc(cluster.namespace)))
    settings = load_settings([str(hatchery)], environ={}, overrides={
        "state_dir": str(tmp_path / "state"), "backend": "kubernetes",
        "kubernetes": {"kubeconfig": kubeconfig, "api_keys": False, "route_to": "endpoints",
                       "request_timeout": 2, "retries": 1, "retry_backoff": 0.05}})

    async def replica() -> GatewayUnderTest:
        app = build_app(settings)
        server = await aiohttp_server(app, host="127.0.0.1")
        return GatewayUnderTest(server, app[GATEWAY], app.get(DEV_ISSUER))

    gw = await replica()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        options = await get(http, gw, API + "options")
        demo = next(o["id"] for o in options if o["name"] == "Demo workspace")
        async with http.post(gw.url(f"{API}launch?id={demo}"), headers=auth(gw)) as resp:
            assert (resp.status, await resp.text()) == (200, "Success")
        assert await status(http, gw) == "Launching"

        events = await asyncio.wait_for(progress(http, gw), 20)
        assert any("Pulling image" in e["message"] for e in events)
        assert events[-1]["ready"] is True
        await eventually(lambda: status_is(http, gw, "Running"), within=10)
        health = await get(http, gw, API + "_status")
        assert health["backend_health"]["watch"] == "ok"

        started = await whoami(http, gw)
        async with http.ws_connect(gw.url(PROXY + "echo"), headers=auth(gw)) as ws:
            await ws.send_str("hello through the pod")
            assert await ws.receive_str(timeout=5) == "hello through the pod"

        second = await replica()  # another replica, sharing nothing but the cluster
        assert await whoami(http, second) == started
        await gw.server.close()  # hatchway restarts...
        restarted = await replica()
        assert await whoami(http, restarted) == started  # ...and nothing was lost

        async with http.post(restarted.url(API + "terminate"), headers=auth(restarted)) as resp:
            assert (resp.status, await resp.text()) == (200, "Terminated workspace")
        await eventually(lambda: status_is(http, restarted, "Not Found"), within=10)
        assert await cluster.names("persistentvolumeclaims") == ["claim-alice"]
        async with http.get(second.url(PROXY + "api/status"), headers=auth(second)) as resp:
            assert resp.status != 200


@pytest.mark.emulated
async def test_launch_answers_503_and_status_not_found_while_the_api_server_is_gone(
        api: ApiServer, cluster: Cluster, kubeconfig: str, tmp_path: Path,
        aiohttp_server: Any) -> None:
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps(hatchery_doc(cluster.namespace)))
    settings = load_settings([str(hatchery)], environ={}, overrides={
        "state_dir": str(tmp_path / "state"), "backend": "kubernetes",
        "kubernetes": {"kubeconfig": kubeconfig, "api_keys": False, "request_timeout": 1,
                       "retries": 1,
                       "retry_backoff": 0.05}})
    app = build_app(settings)
    gw = GatewayUnderTest(await aiohttp_server(app, host="127.0.0.1"), app[GATEWAY],
                          app.get(DEV_ISSUER))
    async with aiohttp.ClientSession() as http:
        demo = (await get(http, gw, API + "options"))[0]["id"]
        await api.stop()
        async with http.post(gw.url(f"{API}launch?id={demo}"), headers=auth(gw)) as resp:
            assert resp.status == 503
            assert "Kubernetes API" in await resp.text()
        async with http.get(gw.url(API + "status"), headers=auth(gw)) as resp:
            # Hatchery answers any API error on the pod with Not Found; the portal relies on a
            # status string (a 503 body would leave its first page spinning)
            assert resp.status == 200 and (await resp.json())["status"] == "Not Found"
        health = await get(http, gw, "/_status")  # still 200: routes keep serving
        await eventually(lambda: gw.gateway.backend.health()["watch"] == "down")
        assert health["status"] == "Healthy"
