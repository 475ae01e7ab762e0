"""A user reaches their own workspace and nobody else's: not by path tricks, not by spoofed
identity headers, not over WebSocket; without a session nothing reaches any workspace."""

from __future__ import annotations

import json

import aiohttp
import pytest

from .conftest import PROXY, GatewayUnderTest, raw_request

TRICKS = [
    "../../bob/headers",
    "..%2F..%2Fbob%2Fheaders",
    "%2e%2e/%2e%2e/proxy/headers",
    "%2E%2E/proxy/headers",
    "//headers",
    "./headers",
    "headers/..//headers",
    "x/%2e%2e/headers",
]


def _seen_user(body: bytes) -> str:
    return json.loads(body)["headers"].get("REMOTE_USER", "")


async def test_own_workspace_sees_its_user(two_workspaces: GatewayUnderTest,
                                           client: aiohttp.ClientSession) -> None:
    async with client.get(two_workspaces.url(PROXY + "headers"),
                          cookies=two_workspaces.cookies("alice")) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["headers"]["REMOTE_USER"] == "alice"


@pytest.mark.parametrize("trick", TRICKS)
async def test_path_tricks_never_leave_own_workspace(two_workspaces: GatewayUnderTest,
                                                     trick: str) -> None:
    token = two_workspaces.token("alice")
    status, body = await raw_request(
        two_workspaces.server.port,
        f"GET {PROXY}{trick} HTTP/1.1\nHost: gw\nCookie: access_token={token}\n"
        "Connection: close\n")
    if status == 200:
        assert _seen_user(body) == "alice"
    else:
        assert status in (400, 404)
        assert b"bob" not in body


@pytest.mark.parametrize("header", ["REMOTE_USER", "Remote-User", "remote_user",
                                    "X-Forwarded-User", "X-Remote-User", "X-Auth-Request-User"])
async def test_spoofed_identity_headers_are_replaced(two_workspaces: GatewayUnderTest,
                                                    client: aiohttp.ClientSession,
                                                    header: str) -> None:
    async with client.get(two_workspaces.url(PROXY + "headers"),
                          cookies=two_workspaces.cookies("alice"),
                          headers={header: "bob"}) as resp:
        body = await resp.json()
    values = [v for k, v in body["headers"].items()
              if k.lower().replace("_", "-") in ("remote-user", "x-forwarded-user",
                                                 "x-remote-user", "x-auth-request-user")]
    assert values == ["alice"]


async def test_websocket_reaches_only_own_workspace(gw: GatewayUnderTest, demo_workspace,
                                                    recording_upstream,
                                                    client: aiohttp.ClientSession) -> None:
    alice_server, alice_seen = await recording_upstream()
    gw.publish("alice", alice_server)
    gw.publish("bob", await demo_workspace())
    async with client.ws_connect(gw.url(PROXY + "echo"),
                                 headers={**gw.cookie_header("bob"), "REMOTE_USER": "alice"}) as ws:
        await ws.send_str("hello")
        assert (await ws.receive_str(timeout=5)) == "hello"
    assert alice_seen == []


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
async def test_no_session_no_workspace_traffic(gw: GatewayUnderTest, recording_upstream,
                                               client: aiohttp.ClientSession,
                                               method: str) -> None:
    server, seen = await recording_upstream()
    gw.publish("alice", server)
    async with client.request(method, gw.url(PROXY + "anything"),
                              headers={"REMOTE_USER": "alice"}) as resp:
        assert resp.status == 401
        assert "error" in await resp.json()
    assert seen == []


async def test_no_session_websocket_refused(gw: GatewayUnderTest, recording_upstream,
                                            client: aiohttp.ClientSession) -> None:
    server, seen = await recording_upstream()
    gw.publish("alice", server)
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect(gw.url(PROXY + "echo"), headers={"REMOTE_USER": "alice"})
    assert err.value.status == 401
    assert seen == []


async def test_session_cookie_is_not_passed_to_the_workspace(
        two_workspaces: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    token = two_workspaces.token("alice")
    async with client.get(two_workspaces.url(PROXY + "headers"),
                          headers={"Cookie": f"access_token={token}; _xsrf=abc"}) as resp:
        headers = (await resp.json())["headers"]
    assert token not in json.dumps(headers)
    assert headers["Cookie"] == "_xsrf=abc"
