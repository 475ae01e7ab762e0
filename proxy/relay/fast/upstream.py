"""Keep-alive connections to workspaces, pooled per (host, port), and the relay of each
response from the workspace to the browser.

A connection carries one request at a time. Its response head is parsed and rewritten; the
body is passed on as it arrives, still framed as the workspace framed it (Content-Length or
chunked, checked as it goes), or chunk-encoded when the workspace ends it by closing. The
browser's write buffer pauses this connection's reading, so a slow reader slows the workspace
instead of filling memory. A Content-Length body of ``PUMP_MIN`` bytes or more goes from socket
to socket inside the kernel (``kernelcopy.Pump``) where the platform allows it.
"""

from __future__ import annotations

import asyncio
from time import monotonic_ns
from typing import cast

from ...observe.traffic import Traffic
from .chunked import ChunkedError, ChunkedScanner
from .head import (
    HEAD_END,
    ResponseHead,
    ResponseReader,
    browser_response_head,
    head_never_ends,
)
from .interfaces import WRITE_HIGH_WATER, Browser, Request, write_head_and_body
from .kernelcopy import Pipes, Pump, pump_between

CONNECT_TIMEOUT = 10.0
MAX_IDLE_PER_UPSTREAM = 256
# A body at least this long still to come is spliced in the kernel (kernelcopy): below it,
# setting up the splice costs more than the copies it saves.
PUMP_MIN = 64 * 1024

_IDLE, _HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _UPGRADE = range(6)


class Upstream(asyncio.Protocol):
    """One connection to a workspace."""

    __slots__ = ("pool", "key", "transport", "front", "request", "down", "state", "buf", "left",
                 "chunks", "no_body", "upgrade", "reused", "idle", "write_paused",
                 "read_paused", "closed", "reusable", "resp", "pump", "reader")

    def __init__(self, pool: UpstreamPool, key: tuple[str, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.front: Browser | None = None
        self.request: Request | None = None  # the request being answered (its exchange)
        self.down: asyncio.Transport | None = None  # the browser's transport while attached
        self.state = _IDLE
        self.buf = b""
        self.left = 0
        self.chunks: ChunkedScanner | None = None
        self.no_body = False
        self.upgrade = False
        self.reused = False
        self.idle = 0
        self.write_paused = False
        self.read_paused = False
        self.closed = False
        self.reusable = False
        self.resp: ResponseHead | None = None  # the last answer's head (the access log)
        self.pump: Pump | None = None  # the body moving in the kernel (reading is paused)
        self.reader = ResponseReader()  # the last head read on this connection

    # -- the exchange ---------------------------------------------------------------------
    def attach(self, front: Browser, request: Request, down: asyncio.Transport, *,
               no_body: bool, upgrade: bool) -> None:
        """Carry ``front``'s current request; the response goes to ``down``."""
        self.front = front
        self.request = request
        self.down = down
        self.state = _HEAD
        self.no_body = no_body
        self.upgrade = upgrade
        if front.write_paused:
            self.pause_reading()

    def detach(self) -> None:
        self.front = None
        self.request = None
        self.down = None
        self.state = _IDLE
        self.chunks = None
        self.buf = b""
        self.resume_reading()

    def discard(self) -> None:
        """Not to be reused (mid-answer, or the exchange went wrong): close it."""
        self.front = None
        self.request = None
        self.down = None
        self.close()

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = False
            if self.pump is None:  # the pump reads the socket itself until it is done
                self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        self._stop_pump()
        if self.transport is not None:
            self.transport.close()

    def _stop_pump(self) -> None:
        """End a kernel copy still under way; what it had left is what the body lacks."""
        pump = self.pump
        if pump is not None:
            self.pump = None
            pump.abort()
            self.left = pump.left

    # -- asyncio callbacks ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.pool.live.add(self)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == _LENGTH:
            left = self.left
            n = len(data)
            down = self.down
            assert down is not None
            if n < left:
                down.write(data)
                self.left = left - n
                return
            down.write(data if n == left else data[:left])
            self._finished(self.reusable and n == left)
        elif state == _HEAD:
            self._head(data)
        elif state == _CHUNKED:
            self._chunked(data)
        elif state == _UNTIL_CLOSE:
            assert self.down is not None
            size = b"%x\r\n" % len(data)
            self.down.writelines((size, data, b"\r\n"))
            self.pool.traffic.to_browser += len(size) + len(data) + 2
        else:  # nothing asked: a workspace talking out of turn is not reused
            self.close()

    def eof_received(self) -> bool | None:
        self.closed = True  # never picked from the pool again
        if self.state == _UNTIL_CLOSE and self.down is not None:
            self.down.write(b"0\r\n\r\n")
            self.pool.traffic.to_browser += 5
            self._finished(False)
        return None  # close; connection_lost tells the front if it was waiting

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_pump()
        if self.state == _LENGTH:  # an answer cut short: _head counted all of it
            self.pool.traffic.to_browser -= self.left
            self.state = _IDLE
        self.pool.forget(self)
        front = self.front
        if front is not None:
            self.front = None
            self.request = None
            self.down = None
            front.upstream_lost(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.front is not None:
            self.front.upstream_full(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.front is not None:
            self.front.upstream_full(False)

    # -- response relay -------------------------------------------------------------------
    def _head(self, data: bytes) -> None:
        front = self.front
        request = self.request
        down = self.down
        assert front is not None and request is not None and down is not None
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(HEAD_END)
            if end < 0:
                if head_never_ends(buf):
                    self._broken()  # too long, or lines ended by a bare LF
                else:
                    self.buf = buf
                return
            end += 4
            head = buf[:end]
            buf = buf[end:]
            resp = self.reader.read(head)
            if resp is None:
                self._broken()
                return
            status = resp.status
            if status >= 200:
                break
            if status == 101 and self.upgrade:
                self.buf = b""
                self.state = _UPGRADE
                self.front = None
                self.request = None
                self.down = None
                front.upgraded(self, head + buf)
                return
            if status == 101:
                self._broken()
                return
            request.resp_started = True  # an interim answer (100 Continue, 103): pass it on
            down.write(head)
            self.pool.traffic.to_browser += len(head)
        self.buf = b""
        if self.upgrade:
            self.front = None
            self.request = None
            self.down = None
            self.close()
            front.upgrade_refused(status)
            return
        request.resp_started = True
        traffic = self.pool.traffic
        traffic.first_byte(monotonic_ns() - request.began)
        self.resp = resp
        self.reusable = resp.keep_alive
        close = not request.keep_alive
        if self.no_body or status == 204 or status == 304:
            out = browser_response_head(head, resp, chunked=False, close=close)
            down.write(out)
            traffic.to_browser += len(out)
            self._finished(self.reusable and not buf)
        elif resp.content_length >= 0:
            n = resp.content_length
            out = browser_response_head(head, resp, chunked=False, close=close)
            traffic.to_browser += len(out) + n  # once; connection_lost gives back a shortfall
            if len(buf) < n:
                write_head_and_body(down, out, buf)
                self.left = left = n - len(buf)
                self.state = _LENGTH
                if left >= PUMP_MIN:
                    self._pump(down, left)
            else:
                down.write(out + buf[:n])
                self._finished(self.reusable and len(buf) == n)
        elif resp.chunked:
            out = browser_response_head(head, resp, chunked=True, close=close)
            down.write(out)
            traffic.to_browser += len(out)
            self.chunks = ChunkedScanner()
            self.state = _CHUNKED
            if buf:
                self._chunked(buf)
        else:  # ends when the workspace closes: chunk-encode it for the browser
            out = browser_response_head(head, resp, chunked=True, close=close)
            down.write(out)
            traffic.to_browser += len(out)
            self.state = _UNTIL_CLOSE
            self.reusable = False
            if buf:
                self.data_received(buf)

    def _pump(self, down: asyncio.Transport, count: int) -> None:
        """The rest of a Content-Length body, socket to socket in the kernel, if it can."""
        transport = self.transport
        assert transport is not None
        pump = pump_between(self.pool.pipes, transport, down)
        if pump is None:
            return
        transport.pause_reading()
        self.pump = pump
        pump.run(count, self._pumped)

    def _pumped(self, failed: int | None) -> None:
        pump = self.pump
        assert pump is not None
        self.pump = None
        pump.close()
        if failed is not None:  # cut short: connection_lost gives back the shortfall
            self.left = pump.left
            self.close()
            return
        self.left = 0
        if not self.read_paused and self.transport is not None:
            self.transport.resume_reading()
        self._finished(self.reusable)

    def _chunked(self, data: bytes) -> None:
        assert self.chunks is not None and self.down is not None
        try:
            out, after = self.chunks.feed(data)
        except ChunkedError:
            self._broken()
            return
        if out:
            self.down.write(out)
            self.pool.traffic.to_browser += len(out)
        if after is not None:
            self._finished(self.reusable and not after)

    def _finished(self, reusable: bool) -> None:
        front = self.front
        assert front is not None
        self.state = _IDLE
        front.response_done(self, reusable)

    def _broken(self) -> None:
        """The workspace broke HTTP (a head the fast path will not relay, bad chunking, a 101
        nobody asked for): drop the connection and tell the front, which answers 502 or cuts
        the answer short. Never a retry: the workspace did answer, and aiohttp would only
        relay what was refused here."""
        front = self.front
        self.front = None
        self.request = None
        self.down = None
        self.close()
        if front is not None:
            front.upstream_broken(self)


class UpstreamPool:
    """Idle keep-alive connections per (host, port), most recently used first."""

    def __init__(self, *, idle_ticks: int, traffic: Traffic | None = None) -> None:
        self.idle_ticks = idle_ticks  # sweeps an idle pooled connection survives
        self.traffic = traffic if traffic is not None else Traffic()  # metrics
        self.pipes = Pipes()  # for bodies spliced in the kernel, both ways
        self._idle: dict[tuple[str, int], list[Upstream]] = {}
        self.live: set[Upstream] = set()

    def take(self, host: str, port: int) -> Upstream | None:
        idle = self._idle.get((host, port))
        while idle:
            up = idle.pop()
            if not up.closed:
                up.reused = True
                return up
        return None

    def give_back(self, up: Upstream) -> None:
        if up.closed or up.write_paused:
            up.close()
            return
        up.detach()
        up.idle = 0
        idle = self._idle.setdefault(up.key, [])
        if len(idle) >= MAX_IDLE_PER_UPSTREAM:
            up.close()
        else:
            idle.append(up)

    async def connect(self, host: str, port: int) -> Upstream:
        loop = asyncio.get_running_loop()
        key = (host, port)
        _, up = await asyncio.wait_for(
            loop.create_connection(lambda: Upstream(self, key), host, port), CONNECT_TIMEOUT)
        return up

    def forget(self, up: Upstream) -> None:
        self.live.discard(up)
        idle = self._idle.get(up.key)
        if idle and up in idle:
            idle.remove(up)

    def sweep(self) -> None:
        """Close connections idle for ``idle_ticks`` sweeps: workspaces close idle keep-alive
        connections on their own schedule, and a closed one must not be picked."""
        ticks = self.idle_ticks
        for idle in self._idle.values():
            for up in [u for u in idle if u.idle >= ticks]:
                up.close()
            for up in idle:
                up.idle += 1

    def close(self) -> None:
        for up in list(self.live):
            up.close()
        self._idle.clear()
        self.pipes.close()
