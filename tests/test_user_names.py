"""A session whose user name a header would trim or a log line would split (leading or
trailing whitespace, control characters, CR/LF) is refused at the session check, with a 401
that says why, on every path: the fast path, the aiohttp relay, the API and ext_authz."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from .conftest import PROXY, GatewayUnderTest

BAD_NAMES = ["alice ", " alice", "\talice", "alice\n", "alice\r\nINFO forged log line",
             "al\x00ice", "al\x1bice", "alice\u2028", "alice\u00a0", "\u200balice"]


async def _get(port: int, path: str, token: str, extra: str = "") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                      f"Authorization: Bearer {token}\r\n{extra}\r\n").encode())
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _refusal(body: bytes) -> str:
    return str(json.loads(body)["error"])


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "aiohttp"])
@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
async def test_proxy_refuses_unsafe_user_name(start_gateway: Any, demo_workspace: Any,
                                              name: str, fast: bool) -> None:
    gw: GatewayUnderTest = await start_gateway(fast_path=fast)
    gw.publish(name, await demo_workspace())  # even with a workspace routed for that name
    status, body = await _get(gw.server.port, PROXY + "headers", gw.token(name))
    assert status == 401
    assert "leading or trailing spaces or control characters" in _refusal(body)


@pytest.mark.parametrize("name", ["alice ", "alice\r\nINFO forged log line"], ids=repr)
async def test_api_refuses_unsafe_user_name(gw: GatewayUnderTest, name: str) -> None:
    status, body = await _get(gw.server.port, "/lw-workspace/status", gw.token(name))
    assert status == 401
    assert "control characters" in _refusal(body)


async def test_ext_authz_refuses_unsafe_user_name(start_gateway: Any) -> None:
    gw: GatewayUnderTest = await start_gateway(mode="envoy")
    status, _ = await _get(gw.server.port, "/lw-workspace/_ext_authz" + PROXY + "lab",
                           gw.token("alice\r\nremote_user: bob"))
    assert status == 401


@pytest.mark.parametrize("name", ["Alice Smith", "a.b@example.org", "ünïcødé"])
async def test_ordinary_names_are_accepted(gw: GatewayUnderTest, demo_workspace: Any,
                                           name: str) -> None:
    gw.publish(name, await demo_workspace())
    status, body = await _get(gw.server.port, PROXY + "headers", gw.token(name))
    assert status == 200
    assert json.loads(body)["headers"]["REMOTE_USER"] == name
