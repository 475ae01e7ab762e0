"""WebSockets through the proxy: frames, close codes, subprotocols and the Origin rule."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from .conftest import PROXY, GatewayUnderTest


async def _connect(gw: GatewayUnderTest, client: aiohttp.ClientSession, path: str = "echo",
                   **kw: Any) -> aiohttp.ClientWebSocketResponse:
    headers = {**gw.cookie_header("alice"), **kw.pop("headers", {})}
    return await client.ws_connect(gw.url(PROXY + path), headers=headers, **kw)


async def test_text_echo(two_workspaces: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with await _connect(two_workspaces, client) as ws:
        for text in ("hello", "ünïcødé", "x" * 100_000):
            await ws.send_str(text)
            assert await ws.receive_str(timeout=5) == text


async def test_binary_echo(two_workspaces: GatewayUnderTest,
                           client: aiohttp.ClientSession) -> None:
    async with await _connect(two_workspaces, client) as ws:
        payload = bytes(range(256)) * 1024
        await ws.send_bytes(payload)
        assert await ws.receive_bytes(timeout=5) == payload


async def test_close_code_and_reason_from_workspace_reach_browser(
        two_workspaces: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    ws = await _connect(two_workspaces, client)
    await ws.send_str("close:4001:kernel restarted")
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE
    assert (msg.data, msg.extra) == (4001, "kernel restarted")
    await ws.close()


async def test_close_code_and_reason_from_browser_reach_workspace(
        gw: GatewayUnderTest, aiohttp_server: Any, client: aiohttp.ClientSession) -> None:
    got: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        msg = await ws.receive()
        got.set_result((msg.data, msg.extra))
        await ws.close(code=msg.data, message=msg.extra.encode())
        return ws

    app = web.Application()
    app.router.add_get(PROXY + "ws", handler)
    gw.publish("alice", await aiohttp_server(app, host="127.0.0.1"))
    ws = await _connect(gw, client, "ws")
    await ws.close(code=4001, message=b"tab closed")
    assert await asyncio.wait_for(got, 5) == (4001, "tab closed")
    assert ws.close_code == 4001


async def test_subprotocol_chosen_by_workspace_is_returned(
        two_workspaces: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with await _connect(two_workspaces, client, protocols=("nope", "chat")) as ws:
        assert ws.protocol == "chat"


async def test_no_subprotocol_when_workspace_picks_none(
        two_workspaces: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with await _connect(two_workspaces, client, protocols=("nope",)) as ws:
        assert ws.protocol is None


async def test_ping_from_workspace_reaches_browser_and_pong_returns(
        gw: GatewayUnderTest, aiohttp_server: Any, client: aiohttp.ClientSession) -> None:
    pong: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        await ws.ping(b"are-you-there")
        msg = await ws.receive()
        if msg.type is WSMsgType.PONG:
            pong.set_result(msg.data)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get(PROXY + "ws", handler)
    gw.publish("alice", await aiohttp_server(app, host="127.0.0.1"))
    ws = await _connect(gw, client, "ws")  # autoping on: the client answers the ping
    await ws.receive(timeout=5)
    assert await asyncio.wait_for(pong, 5) == b"are-you-there"
    await ws.close()


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:1"])
async def test_cross_origin_upgrade_is_refused(two_workspaces: GatewayUnderTest,
                                               client: aiohttp.ClientSession,
                                               origin: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await _connect(two_workspaces, client, headers={"Origin": origin})
    assert err.value.status == 403


async def test_same_origin_upgrade_is_accepted(two_workspaces: GatewayUnderTest,
                                               client: aiohttp.ClientSession) -> None:
    async with await _connect(two_workspaces, client,
                              headers={"Origin": two_workspaces.base}) as ws:
        await ws.send_str("ok")
        assert await ws.receive_str(timeout=5) == "ok"


async def test_configured_origin_is_accepted(start_gateway: Any, demo_workspace: Any,
                                             client: aiohttp.ClientSession) -> None:
    gw = await start_gateway(allowed_origins=["https://portal.example.org"])
    gw.publish("alice", await demo_workspace())
    async with await _connect(gw, client, headers={"Origin": "https://portal.example.org"}) as ws:
        await ws.send_str("ok")
        assert await ws.receive_str(timeout=5) == "ok"


async def test_workspace_refusing_upgrade_is_502(gw: GatewayUnderTest, aiohttp_server: Any,
                                                 client: aiohttp.ClientSession) -> None:
    async def not_a_websocket(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get(PROXY + "ws", not_a_websocket)
    gw.publish("alice", await aiohttp_server(app, host="127.0.0.1"))
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await _connect(gw, client, "ws")
    assert err.value.status == 502


async def test_websocket_messages_count_as_activity(two_workspaces: GatewayUnderTest,
                                                    client: aiohttp.ClientSession) -> None:
    tracker = two_workspaces.gateway.activity
    async with await _connect(two_workspaces, client) as ws:
        tracker.forget("alice")
        await ws.send_str("tick")
        await ws.receive_str(timeout=5)
        assert tracker.last_ms("alice") > 0
