"""Idle culling counts what the proxy sees: an idle workspace is terminated after its
idle-time-limit; WebSocket messages alone keep one alive."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from launcher.clock import ManualClock
from proxy.serve.app import CULLER

from .conftest import PROXY, GatewayUnderTest
from .helpers import get_json, launch, status_becomes

SHORT_LIVED = {
    "name": "Demo (culled after 1.5 s idle)",
    "command": [sys.executable, "-m", "launcher.demo"],
    "args": ["--port", "{port}", "--base-url", "{base_url}"],
    "path-rewrite": PROXY, "ready-probe": PROXY + "api/status",
    "idle-time-limit": 1500,
}


async def _gateway(start_gateway: Any, tmp_path: Path, clock: ManualClock) -> GatewayUnderTest:
    path = tmp_path / "hatchery.json"
    path.write_text(json.dumps({"containers": [SHORT_LIVED]}), encoding="utf-8")
    gw: GatewayUnderTest = await start_gateway(hatchery_config=str(path),
                                               cull_interval_seconds=0.2, clock=clock)
    return gw


def catch_up(clock: ManualClock) -> None:
    """Bring the gateway's clock to the real time the workspace stamps its own activity with
    (the culler takes the later of the two records)."""
    clock.advance(max(0.0, time.time() - clock.time()))


async def test_idle_workspace_is_terminated_after_its_limit(
        start_gateway: Any, tmp_path: Path, client: aiohttp.ClientSession,
        clock: ManualClock) -> None:
    gw = await _gateway(start_gateway, tmp_path, clock)
    await launch(client, gw, "culled")
    running = await status_becomes(client, gw, "Running")
    assert running["idleTimeLimit"] == 1500
    catch_up(clock)
    clock.advance(2.0)  # idle past the 1.5 s limit by both records
    await status_becomes(client, gw, "Not Found", within=6.0)


async def test_websocket_messages_keep_a_workspace_alive(
        start_gateway: Any, tmp_path: Path, client: aiohttp.ClientSession,
        clock: ManualClock) -> None:
    gw = await _gateway(start_gateway, tmp_path, clock)
    await launch(client, gw, "culled")
    await status_becomes(client, gw, "Running")
    catch_up(clock)
    async with client.ws_connect(gw.url(PROXY + "echo"), headers=gw.cookie_header("alice")) as ws:
        for _ in range(12):  # 3.6 s of chatter, more than twice the limit
            await ws.send_str("still here")
            await ws.receive_str(timeout=5)
            clock.advance(0.3)
        # the workspace's own record is 3.6 s old by now: only the gateway's keeps it alive
        assert await gw.server.runner.app[CULLER].sweep() == []
        assert (await get_json(client, gw, "status"))["status"] == "Running"
