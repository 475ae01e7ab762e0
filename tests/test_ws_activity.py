"""What a WebSocket does to ``lastActivityTime``, frame by frame, on both relay paths (the fast
path's byte splice, proxy/relay/fast/splice.py, and the aiohttp relay): the browser's data
frames (text, binary, continuations) move it; the browser's pings, pongs and close, and
everything the workspace sends, do not (an open tab answering a workspace's keep-alive is no
user at work: launcher/lifetime.py).

The browser is a raw socket sending frames exactly as a browser does (masked with a random
key; fragmented; trickled byte by byte across TCP segments), so nothing normalises them on the
way. Each test first proves which relay carried the connection: the fast path counts the
WebSockets it spliced and holds their two ends; with the fast path off, aiohttp relays. Time is
a ManualClock, so "moved" means stamped later than the moment before the frame was sent.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import WSMessage, WSMsgType, web

from launcher.clock import ManualClock

from .conftest import PROXY, GatewayUnderTest

PATHS = [pytest.param(True, id="fast-path"), pytest.param(False, id="aiohttp")]
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def browser_frame(opcode: int, payload: bytes, *, fin: bool = True,
                  key: bytes | None = None) -> bytes:
    """A frame as a browser puts it on the wire: masked with a fresh random key (RFC 6455
    §5.3), or with ``key`` when the test needs to choose the bytes the payload becomes."""
    key = os.urandom(4) if key is None else key
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += b"\xfe" + n.to_bytes(2, "big")
    else:
        head += b"\xff" + n.to_bytes(8, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@dataclass
class Workspace:
    """A workspace that records every frame the relay delivered to it (no autoping, no
    autoclose: pings, pongs and closes arrive as they were sent) and can send its own."""

    received: asyncio.Queue[WSMessage] = field(default_factory=asyncio.Queue)
    socket: asyncio.Future[web.WebSocketResponse] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    async def next(self) -> WSMessage:
        return await asyncio.wait_for(self.received.get(), 10)


@dataclass
class Browser:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def trickle(self, data: bytes) -> None:
        """One byte per TCP segment (Nagle off, a pause between writes), so the relay reads
        the frame in as many pieces: a header cut before its length, inside its mask key,
        a payload cut anywhere."""
        for i in range(len(data)):
            await self.send(data[i:i + 1])
            await asyncio.sleep(0.01)

    async def read_frame(self) -> tuple[int, bytes]:
        """One frame from the workspace, unmasked as a server sends it: (opcode, payload)."""
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), 10)
        assert not b1 & 0x80, "a frame to the browser must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        return b0 & 0x0F, await asyncio.wait_for(self.reader.readexactly(n), 10)


@dataclass
class Pipe:
    gw: GatewayUnderTest
    clock: ManualClock
    browser: Browser
    workspace: Workspace

    def last(self) -> int:
        return self.gw.gateway.activity.last_ms("alice")

    async def passed(self) -> None:
        """Wait until everything the browser sent so far has passed the relay: a ping sent
        behind it reaches the workspace (frames keep their order on both paths)."""
        mark = os.urandom(8)
        await self.browser.send(browser_frame(PING, mark))
        while (msg := await self.workspace.next()).data != mark:
            assert msg.type is WSMsgType.PING, "a message arrived before its last fragment"

    def later(self) -> int:
        """Move time on (past the activity tracker's one-second tick); the stamp before."""
        before = self.last()
        self.clock.advance(2.0)
        return before


async def _workspace(gw: GatewayUnderTest, aiohttp_server: Any) -> Workspace:
    seen = Workspace()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False, autoclose=False)
        await ws.prepare(request)
        seen.socket.set_result(ws)
        while True:  # not ``async for``: it ends before yielding a close
            msg = await ws.receive()
            seen.received.put_nowait(msg)
            if msg.type is WSMsgType.CLOSE:
                await ws.close(code=msg.data)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                            WSMsgType.ERROR):
                return ws

    app = web.Application()
    app.router.add_get(PROXY + "ws", handler)
    gw.publish("alice", await aiohttp_server(app, host="127.0.0.1"))
    return seen


async def _browser(gw: GatewayUnderTest) -> Browser:
    """A tab's WebSocket: same-origin, the session cookie, a 101 read and nothing more."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    host = f"127.0.0.1:{gw.server.port}"
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {PROXY}ws HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\nCookie: access_token={gw.token('alice')}\r\n"
                  "\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return Browser(reader, writer)


def _carried_by(gw: GatewayUnderTest, fast: bool) -> None:
    """Which relay holds the open WebSocket: the fast path's splice counted it and holds its
    two ends, or (fast path off) aiohttp relays it."""
    fp = gw.gateway.fast_path
    if fast:
        assert fp is not None and fp.n_websockets == 1 and len(fp.splices) == 2, \
            "the fast path did not splice this WebSocket"
        assert fp.handed_off == 0, "the connection went to aiohttp"
    else:
        assert gw.server.fast_path is None and fp is None, "the fast path is on"


@pytest.fixture(params=PATHS)
async def pipe(request: pytest.FixtureRequest, start_gateway: Callable[..., Any],
               aiohttp_server: Any, clock: ManualClock) -> Any:
    fast: bool = request.param
    gw: GatewayUnderTest = await start_gateway(clock=clock, fast_path=fast)
    workspace = await _workspace(gw, aiohttp_server)
    browser = await _browser(gw)
    await asyncio.wait_for(workspace.socket, 10)
    _carried_by(gw, fast)
    assert gw.gateway.activity.last_ms("alice") > 0  # the handshake is a request with a session
    yield Pipe(gw, clock, browser, workspace)
    browser.writer.close()


# -- the browser's messages move it ----------------------------------------------------------

async def test_a_text_message_from_the_browser_moves_last_activity(pipe: Pipe) -> None:
    before = pipe.later()
    await pipe.browser.send(browser_frame(TEXT, b"print(1)"))
    msg = await pipe.workspace.next()
    assert (msg.type, msg.data) == (WSMsgType.TEXT, "print(1)")
    assert pipe.last() > before


async def test_a_binary_message_from_the_browser_moves_last_activity(pipe: Pipe) -> None:
    before = pipe.later()
    await pipe.browser.send(browser_frame(BINARY, bytes(range(256)) * 300))  # 64-bit length
    msg = await pipe.workspace.next()
    assert (msg.type, msg.data) == (WSMsgType.BINARY, bytes(range(256)) * 300)
    assert pipe.last() > before


async def test_a_fragmented_message_counts_when_its_last_fragment_arrives(pipe: Pipe) -> None:
    await pipe.browser.send(browser_frame(TEXT, b"one ", fin=False))
    await pipe.passed()
    pipe.later()
    await pipe.browser.send(browser_frame(CONTINUATION, b"two ", fin=False))
    await pipe.passed()
    before = pipe.later()
    await pipe.browser.send(browser_frame(CONTINUATION, b"three"))
    msg = await pipe.workspace.next()
    assert (msg.type, msg.data) == (WSMsgType.TEXT, "one two three")
    assert pipe.last() > before


async def test_a_message_trickled_across_tcp_segments_moves_last_activity(pipe: Pipe) -> None:
    before = pipe.later()
    await pipe.browser.trickle(browser_frame(TEXT, b"x" * 130))  # a 16-bit length, cut too
    msg = await pipe.workspace.next()
    assert (msg.type, msg.data) == (WSMsgType.TEXT, "x" * 130)
    assert pipe.last() > before


async def test_a_message_sent_with_a_pong_in_one_segment_moves_last_activity(pipe: Pipe) -> None:
    before = pipe.later()
    await pipe.browser.send(browser_frame(PONG, b"k") + browser_frame(TEXT, b"hi"))
    assert (await pipe.workspace.next()).type is WSMsgType.PONG
    assert (await pipe.workspace.next()).data == "hi"
    assert pipe.last() > before


# -- keep-alive and closing do not -----------------------------------------------------------

async def test_pings_and_pongs_from_the_browser_do_not_move_last_activity(pipe: Pipe) -> None:
    before = pipe.later()
    await pipe.browser.send(browser_frame(PING, b"still open"))
    await pipe.browser.send(browser_frame(PONG, b"answering the workspace"))
    assert [(m.type, m.data) for m in (await pipe.workspace.next(),
                                       await pipe.workspace.next())] == [
        (WSMsgType.PING, b"still open"), (WSMsgType.PONG, b"answering the workspace")]
    assert pipe.last() == before


async def test_trickled_pings_whose_payload_looks_like_a_text_frame_do_not_count(
        pipe: Pipe) -> None:
    """On the wire, this ping's masked payload is the bytes of a masked text frame's header:
    only a relay that lost count of where the frame ends would see a message in it."""
    looks_like_text = browser_frame(TEXT, b"", key=bytes(4)) + b"\x81\x85"
    key = os.urandom(4)
    payload = bytes(b ^ key[i % 4] for i, b in enumerate(looks_like_text))
    before = pipe.later()
    await pipe.browser.trickle(browser_frame(PING, payload, key=key))
    await pipe.browser.trickle(browser_frame(PONG, payload, key=key))
    assert (await pipe.workspace.next()).data == payload
    assert (await pipe.workspace.next()).data == payload
    assert pipe.last() == before


async def test_a_ping_between_a_messages_fragments_does_not_count(pipe: Pipe) -> None:
    await pipe.browser.send(browser_frame(BINARY, b"part 1", fin=False))
    await pipe.passed()
    before = pipe.later()
    await pipe.browser.send(browser_frame(PING, b"between"))
    msg = await pipe.workspace.next()
    assert (msg.type, msg.data) == (WSMsgType.PING, b"between")
    assert pipe.last() == before
    await pipe.browser.send(browser_frame(CONTINUATION, b", part 2"))
    assert (await pipe.workspace.next()).data == b"part 1, part 2"


async def test_a_close_from_the_browser_does_not_move_last_activity(pipe: Pipe) -> None:
    before = pipe.later()
    await pipe.browser.send(browser_frame(CLOSE, (1001).to_bytes(2, "big") + b"tab closed"))
    msg = await pipe.workspace.next()
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1001, "tab closed")
    assert (await pipe.browser.read_frame())[0] == CLOSE  # the workspace's reply came back
    assert pipe.last() == before


async def test_what_the_workspace_sends_does_not_move_last_activity(pipe: Pipe) -> None:
    ws = pipe.workspace.socket.result()
    before = pipe.later()
    await ws.send_str("kernel busy")
    await ws.send_bytes(b"\x00" * 70_000)
    await ws.ping(b"are you there")
    await ws.pong(b"unsolicited")
    closing = asyncio.ensure_future(ws.close(code=4001, message=b"kernel restarted"))
    got = [await pipe.browser.read_frame() for _ in range(5)]
    assert [opcode for opcode, _ in got] == [TEXT, BINARY, PING, PONG, CLOSE]
    assert got[4][1] == (4001).to_bytes(2, "big") + b"kernel restarted"
    assert pipe.last() == before
    await pipe.browser.send(browser_frame(CLOSE, got[4][1]))  # the tab answers the close
    await asyncio.wait_for(closing, 10)
