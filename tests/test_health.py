"""Liveness (``/_status``) and readiness (``/_ready``) are separate: readiness fails while the
session keys cannot be loaded (and while draining, see test_drain), liveness stays up and
names the failing check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from .conftest import GatewayUnderTest
from .helpers import JWKSServer, eventually, free_port

JWKS_SESSIONS = {"mode": "jwks", "jwks_refetch_min_seconds": 0.1}


async def _get(client: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with client.get(url) as resp:
        return resp.status, await resp.json()


async def test_a_dev_gateway_is_ready_with_every_check_ok(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    status, body = await _get(client, gw.url("/lw-workspace/_ready"))
    assert status == 200
    assert body == {"ready": True, "checks": {"routes": "ok", "keys": "ok", "draining": "ok"}}


async def test_readiness_is_also_served_where_the_revproxy_strips_the_prefix(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    assert (await _get(client, gw.url("/_ready")))[0] == 200


async def test_unloadable_session_keys_fail_readiness_not_liveness(
        start_gateway: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/user/.well-known/jwks"
    gw = await start_gateway(sessions={**JWKS_SESSIONS, "jwks_url": nowhere})

    async def fetch_failed() -> bool:  # the check names why, once a fetch has failed
        _, body = await _get(client, gw.url("/lw-workspace/_ready"))
        return str(body["checks"]["keys"]).startswith("session keys not loaded: ")
    await eventually(fetch_failed)
    status, body = await _get(client, gw.url("/lw-workspace/_ready"))
    assert status == 503
    assert body["failing"] == ["keys"]
    assert body["checks"]["keys"].startswith("session keys not loaded")
    status, body = await _get(client, gw.url("/lw-workspace/_status"))
    assert status == 200
    assert body["ready"] is False and body["failing"] == ["keys"]


async def test_loaded_session_keys_make_the_gateway_ready(
        start_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        jwks_server: JWKSServer) -> None:
    gw = await start_gateway(sessions={**JWKS_SESSIONS, "jwks_url": jwks_server.url})

    async def ready() -> bool:
        return (await _get(client, gw.url("/lw-workspace/_ready")))[0] == 200
    await eventually(ready, within=2.5)
    assert (await _get(client, gw.url("/lw-workspace/_ready")))[0] == 200
