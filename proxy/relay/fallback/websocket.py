"""The WebSocket relay: handshake with the workspace first, then accept the browser with the
subprotocol the workspace chose, and splice frames both ways.

Text, binary, ping and pong are passed as they come (autoping off on both sides, so a
workspace's keep-alive pings reach the browser and the browser's pongs reach it); each send
waits for the socket to drain, so a slow reader slows the writer instead of filling memory.
Close codes and reasons cross unchanged in both directions. Only the browser's text and binary
messages count as activity (``on_message``): not pings or pongs, nor what the workspace sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
from aiohttp import WebSocketError, WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from .http import UpstreamFailed

# Codes that must never be sent on the wire (RFC 6455 §7.4.1); a relay answers them with 1000.
_RESERVED = frozenset({1005, 1006, 1015})
_HANDSHAKE_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)


def requested_protocols(request: web.Request) -> tuple[str, ...]:
    values = request.headers.getall("Sec-WebSocket-Protocol", ())
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())


async def relay_websocket(
    request: web.Request,
    client: aiohttp.ClientSession,
    url: URL,
    headers: CIMultiDict[str],
    on_message: Callable[[], None],
    max_message: int,
) -> web.WebSocketResponse:
    """Open the workspace's WebSocket, then the browser's, then pump until either closes.
    Messages are whole in memory here, so each is held to ``max_message`` bytes: aiohttp
    refuses a bigger one from its frame header (before buffering it) with 1009, and the relay
    passes that 1009 to the other side — what the fast path's splice does.
    Raises UpstreamFailed when the workspace refuses the handshake (nothing sent yet)."""
    limit = max_message + 1  # aiohttp refuses sizes >= max_msg_size; the splice sizes > limit
    try:
        upstream = await client.ws_connect(
            url, headers=headers, protocols=requested_protocols(request), autoping=False,
            autoclose=False, max_msg_size=limit, compress=0, timeout=_HANDSHAKE_TIMEOUT,
        )
    except aiohttp.WSServerHandshakeError as exc:
        raise UpstreamFailed(f"workspace refused the WebSocket ({exc.status})") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamFailed(str(exc) or type(exc).__name__) from None
    browser = web.WebSocketResponse(
        protocols=(upstream.protocol,) if upstream.protocol else (), autoping=False,
        autoclose=False, max_msg_size=limit, compress=False,
    )
    try:
        await browser.prepare(request)
        to_up = asyncio.ensure_future(_pump(browser, upstream, on_message))
        to_down = asyncio.ensure_future(_pump(upstream, browser, _not_activity))
        try:
            await asyncio.wait((to_up, to_down), return_when=asyncio.FIRST_COMPLETED)
            # One side sent (or suffered) a close and it was passed on; let the other side
            # deliver its close reply, briefly.
            await asyncio.wait((to_up, to_down), timeout=5.0)
        finally:
            for task in (to_up, to_down):
                task.cancel()
    finally:
        if not upstream.closed:
            await upstream.close()
        if not browser.closed:
            await browser.close()
    return browser


def _not_activity() -> None:
    pass


async def _pump(
    src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    on_message: Callable[[], None],
) -> None:
    while True:
        msg = await src.receive()
        kind = msg.type
        if kind is WSMsgType.TEXT:
            on_message()
            await dst.send_str(msg.data)
        elif kind is WSMsgType.BINARY:
            on_message()
            await dst.send_bytes(msg.data)
        elif kind is WSMsgType.PING:
            await dst.ping(msg.data)
        elif kind is WSMsgType.PONG:
            await dst.pong(msg.data)
        elif kind is WSMsgType.CLOSE:
            code = msg.data if msg.data and msg.data not in _RESERVED else 1000
            reason = (msg.extra or "").encode("utf-8")
            if not dst.closed:
                await dst.close(code=code, message=reason)
            if not src.closed:
                await src.close(code=code, message=reason)
            return
        elif kind is WSMsgType.CLOSING:
            return  # the other pump is closing this socket and will finish the handshake
        else:  # CLOSED, ERROR: the source is gone without a close frame, or broke the protocol
            if not dst.closed:
                await dst.close(code=_error_code(msg.data) if kind is WSMsgType.ERROR else 1001)
            return


def _error_code(error: object) -> int:
    """The code aiohttp closed the source with (1009 for a message too big, 1002 for a
    protocol error) passes to the other side too; anything else is 1011."""
    return error.code if isinstance(error, WebSocketError) else 1011
