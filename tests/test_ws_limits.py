"""WebSocket message size: both relay paths (the fast path's byte splice and the aiohttp
relay) hold a message to ``websocket_max_message_bytes`` and close a bigger one with 1009 on
both sides, without buffering it. Raw sockets send the frames exactly as an attacker would."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from .conftest import PROXY, GatewayUnderTest

PATHS = [pytest.param(True, id="fast-path"), pytest.param(False, id="aiohttp")]
MiB = 1024 * 1024


@dataclass
class Workspace:
    """What a workspace with no message limit of its own received."""

    sizes: list[int] = field(default_factory=list)
    close_code: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


async def _workspace(gw: GatewayUnderTest, aiohttp_server: Any, *, send: int = 0) -> Workspace:
    """A workspace that takes messages of any size (so only the gateway can refuse one) and
    echoes their sizes; with ``send`` it first sends a binary message of that many bytes."""
    seen = Workspace()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoclose=False)
        await ws.prepare(request)
        if send:
            await ws.send_bytes(b"w" * send)
        async for msg in ws:
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                seen.sizes.append(len(msg.data))
                await ws.send_str(str(len(msg.data)))
        if not seen.close_code.done():
            seen.close_code.set_result(ws.close_code)
        return ws

    app = web.Application()
    app.router.add_get(PROXY + "ws", handler)
    gw.publish("alice", await aiohttp_server(app, host="127.0.0.1"))
    return seen


async def _open(gw: GatewayUnderTest) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {PROXY}ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\nCookie: access_token={gw.token('alice')}\r\n"
                  "\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


def _frame_head(opcode: int, length: int, *, fin: bool = True) -> bytes:
    """A masked (browser) frame header; the mask key is zero so the payload goes as is."""
    first = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        return first + bytes([0x80 | length]) + bytes(4)
    if length < 65536:
        return first + b"\xfe" + length.to_bytes(2, "big") + bytes(4)
    return first + b"\xff" + length.to_bytes(8, "big") + bytes(4)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked (server) frame: (opcode, payload)."""
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), 10)
    length = b1 & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await asyncio.wait_for(reader.readexactly(length), 10)


def _rss() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


async def _start(start_gateway: Callable[..., Any], fast: bool, **kw: Any) -> GatewayUnderTest:
    gw: GatewayUnderTest = await start_gateway(fast_path=fast, **kw)
    assert (gw.server.fast_path is not None) is fast
    return gw


@pytest.mark.parametrize("fast", PATHS)
async def test_64_mib_declared_frame_is_closed_1009_without_buffering(
        start_gateway: Callable[..., Any], aiohttp_server: Any, fast: bool) -> None:
    gw = await _start(start_gateway, fast)
    ws = await _workspace(gw, aiohttp_server)
    reader, writer = await _open(gw)
    sock = writer.get_extra_info("socket").dup()  # plain socket calls: read what arrived
    writer.transport.pause_reading()
    before = _rss()
    loop = asyncio.get_running_loop()
    chunk = bytes(MiB)

    async def pour() -> None:  # the header, then the declared payload as fast as it's taken
        try:
            await loop.sock_sendall(sock, _frame_head(0x2, 64 * MiB))
            for _ in range(64):
                await loop.sock_sendall(sock, chunk)
        except ConnectionError:
            pass

    sender = asyncio.ensure_future(pour())
    got = b""
    try:
        async with asyncio.timeout(10):
            while len(got) < 4:
                try:
                    data = await loop.sock_recv(sock, 4096)
                except ConnectionError:
                    break  # the close frame, if sent, was delivered before the reset
                if not data:
                    break
                got += data
    finally:
        sender.cancel()
        sock.close()
        writer.close()
    assert got[:4] == b"\x88\x02" + (1009).to_bytes(2, "big")
    assert await asyncio.wait_for(ws.close_code, 10) == 1009
    assert ws.sizes == []
    assert _rss() - before < 24 * MiB


@pytest.mark.parametrize("fast", PATHS)
async def test_message_of_exactly_the_limit_passes(
        start_gateway: Callable[..., Any], aiohttp_server: Any, fast: bool) -> None:
    gw = await _start(start_gateway, fast, websocket_max_message_bytes=MiB)
    ws = await _workspace(gw, aiohttp_server)
    reader, writer = await _open(gw)
    writer.write(_frame_head(0x2, MiB) + bytes(MiB))
    assert await _read_frame(reader) == (0x1, str(MiB).encode())
    writer.write(_frame_head(0x8, 2) + (1000).to_bytes(2, "big"))
    writer.close()
    assert ws.sizes == [MiB]


@pytest.mark.parametrize("fast", PATHS)
async def test_fragments_adding_up_past_the_limit_are_closed_1009(
        start_gateway: Callable[..., Any], aiohttp_server: Any, fast: bool) -> None:
    gw = await _start(start_gateway, fast, websocket_max_message_bytes=MiB)
    ws = await _workspace(gw, aiohttp_server)
    reader, writer = await _open(gw)
    half = MiB // 2
    writer.write(_frame_head(0x2, half, fin=False) + bytes(half)
                 + _frame_head(0x0, half, fin=False) + bytes(half)
                 + _frame_head(0x0, 1) + b"!")
    assert await _read_frame(reader) == (0x8, (1009).to_bytes(2, "big"))
    writer.close()
    assert await asyncio.wait_for(ws.close_code, 10) == 1009
    assert ws.sizes == []


@pytest.mark.parametrize("fast", PATHS)
async def test_oversized_message_from_workspace_is_closed_1009(
        start_gateway: Callable[..., Any], aiohttp_server: Any, fast: bool) -> None:
    gw = await _start(start_gateway, fast, websocket_max_message_bytes=MiB)
    ws = await _workspace(gw, aiohttp_server, send=MiB + 1)
    reader, writer = await _open(gw)
    assert await _read_frame(reader) == (0x8, (1009).to_bytes(2, "big"))
    writer.close()
    assert await asyncio.wait_for(ws.close_code, 10) == 1009
