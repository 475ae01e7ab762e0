"""Graceful drain on SIGTERM, so rolling a Deployment cuts nobody off.

1. Readiness (``/_ready``) fails at once, and the listener keeps accepting for
   ``drain.delay_seconds``: Kubernetes takes a while to drop the pod from the Service's
   endpoints, and connections made meanwhile must still be served.
2. The listeners stop accepting. Idle keep-alive connections are closed (between requests,
   so no request is cut); requests in flight, however long (a 100 MiB download), go on.
3. After ``drain.websocket_grace_seconds`` every WebSocket still open is closed with 1001
   (going away), on both ends: the browser's Jupyter reconnects to another replica. Fast-path
   splices get the close frame written at a frame boundary, aiohttp relays through aiohttp.
4. Once nothing is in flight (or ``drain.timeout_seconds`` after the SIGTERM, which
   ``terminationGracePeriodSeconds`` must exceed) the process closes everything and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ..aiohttp_compat import request_in_progress
from ..gateway import GATEWAY
from ..observe.metrics import METRICS
from ..relay.fast.front import HEAD
from ..relay.fast.splice import LINGER_SECONDS, SpliceEnd
from ..relay.fast.wsframes import close_frame

if TYPE_CHECKING:
    from ..relay.fast import FastPath
    from ..settings import DrainSettings
    from .running import Running

log = logging.getLogger("hatchway.drain")
GOING_AWAY = 1001
TICK_SECONDS = 0.1


class Drain:
    """The drain's state (read by readiness) and the aiohttp WebSockets it must close."""

    def __init__(self) -> None:
        self.draining = False
        self.websockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if isinstance(response, web.WebSocketResponse):
            self.websockets.add(response)


DRAIN: web.AppKey[Drain] = web.AppKey("drain", Drain)


def _idle_fronts_closed(fast: FastPath) -> int:
    """Close the fast path's connections that wait between requests; the number left busy."""
    busy = 0
    for front in list(fast.fronts):
        if front.state == HEAD and not front.buf:
            front.close()
        else:
            busy += 1
    return busy


def _close_splices(fast: FastPath, force: bool) -> int:
    """1001 to both ends of every splice whose two directions are at a frame boundary (all
    of them when ``force``); the number not closed yet."""
    left = 0
    for end in list(fast.splices):
        if end.refused:
            continue
        other = end.peer.get_protocol()
        if not isinstance(other, SpliceEnd):
            continue
        # bytes into end.own come from other's reading: a close frame may follow only a
        # whole frame (FrameMeter.skip is what remains of the frame being passed on)
        if not force and (other.meter.skip or end.meter.skip):
            left += 1
            continue
        loop = asyncio.get_running_loop()
        for side in (end, other):
            side.refused = True  # what still arrives is read and dropped
            transport = side.own
            if transport.is_closing():
                continue
            transport.write(close_frame(GOING_AWAY, masked=side.to_server))
            transport.resume_reading()
            if transport.can_write_eof():
                transport.write_eof()
            loop.call_later(LINGER_SECONDS, transport.close)
    return left


async def _close_aiohttp_websockets(drain: Drain) -> None:
    sockets = [ws for ws in list(drain.websockets) if not ws.closed]
    await asyncio.gather(*(ws.close(code=GOING_AWAY, message=b"server shutting down")
                           for ws in sockets), return_exceptions=True)


def _aiohttp_busy(running: Running) -> int:
    """aiohttp connections with a request in progress; idle ones are closed. pre_shutdown
    asks each to close once idle, but a connection whose handler task has already ended
    (seen on connections the fast path handed over) keeps its socket open, and aiohttp has
    no public "idle" flag (``aiohttp_compat.request_in_progress`` reads its private one)."""
    server = running.runner.server
    if server is None:
        return 0
    busy = 0
    for conn in list(server.connections):
        if request_in_progress(conn):
            busy += 1
        else:
            conn.force_close()
    return busy


async def drain(running: Running, state: Drain, settings: DrainSettings,
                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Run the drain (module docstring); returns when the process may close and exit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout_seconds
    state.draining = True
    gauge = running.runner.app.get(METRICS)
    if gauge is not None:
        gauge.draining.set(1)
    delay = settings.delay_seconds
    if delay is None:
        delay = 5.0 if running.runner.app[GATEWAY].backend.name == "kubernetes" else 0.0
    log.info("draining: readiness fails now, listener closes in %.1f s", delay,
             extra={"event": "drain"})
    await sleep(delay)
    running.server.close()
    if running.ambassador is not None:
        running.ambassador[1].close()
    server = running.runner.server
    if server is not None:
        server.pre_shutdown()  # aiohttp: close each connection once its request is done
    fast = running.fast_path
    ws_at = loop.time() + settings.websocket_grace_seconds
    websockets_closed = False
    in_flight: dict[str, int] = {}
    while loop.time() < deadline:
        in_flight = {"aiohttp": _aiohttp_busy(running)}
        if fast is not None:
            in_flight["fast_path"] = _idle_fronts_closed(fast)
            in_flight["websocket_splices"] = len(fast.splices) // 2
        if not any(in_flight.values()):
            break
        if not websockets_closed and loop.time() >= ws_at:
            websockets_closed = True
            log.info("draining: closing open WebSockets with 1001", extra={"event": "drain"})
            await _close_aiohttp_websockets(state)
        if websockets_closed and fast is not None:
            _close_splices(fast, force=loop.time() >= ws_at + 1.0)
        await sleep(TICK_SECONDS)
    else:
        log.warning("drain timed out with connections in flight (%s); closing them",
                    ", ".join(f"{k}: {v}" for k, v in in_flight.items() if v),
                    extra={"event": "drain"})
    log.info("drained", extra={"event": "drain"})
