"""The listening protocol: each browser connection starts here.

Per request it cuts the head at the blank line, lets llhttp parse it and asks the gate whether
this is the proxy's happy path (valid session, authorized, clean path, a ready route, an
allowed Origin). If so it relays the request itself on a pooled workspace connection and keeps
the browser connection for the next request; a WebSocket handshake answered 101 becomes a byte
splice. Anything else (other paths, every refusal, anything odd) is handed to aiohttp at that
request boundary: aiohttp's own protocol takes over the transport, is fed the bytes from the
start of that request, and serves the connection from then on, answers included.

Requests on one connection are handled strictly in turn (pipelined ones wait in the buffer),
so responses keep their order and a handoff always starts at a request boundary. What waits is
bounded per connection (``max_pending_bytes``) and over all of them (``max_buffered_bytes``):
past its own bound a connection stops reading until its answer is done; the connection that
would take the total past its bound is answered 503 and closed.

The connection (this class) owns what outlives a request: the transport, read-ahead, caps and
the handoff. Each request it takes up is an ``exchange.Exchange``, whose phases move along one
table that touches no socket: the connection does the I/O and tells the exchange what happened.

A request is sent to a workspace once. The one exception is the HTTP client's classic race: a
pooled keep-alive connection the workspace closed, without a byte of answer, as an idempotent
request went out; that request is sent once more on a fresh connection. Nothing already
written to a workspace is ever handed to aiohttp (which would send it again).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from enum import IntEnum
from functools import partial
from time import monotonic_ns
from typing import TYPE_CHECKING, cast

from .chunked import ChunkedError, ChunkedScanner
from .exchange import Exchange, Phase, Step
from .head import (
    HEAD_END,
    RequestReader,
    head_never_ends,
    session_cookie_out,
    upstream_request_head,
)
from .interfaces import WRITE_HIGH_WATER, Listener, Workspace, write_head_and_body
from .kernelcopy import SOURCE, pump_between
from .limits import Handed
from .splice import splice

if TYPE_CHECKING:
    from ...sessions.tokens import Identity


class State(IntEnum):
    """A browser connection's state; while BUSY, its exchange's phase says more."""

    HEAD = 0  # between requests, or reading a head
    BUSY = 1  # an exchange is under way (``Front.x``)
    HANDOFF = 2  # to be handed to aiohttp once the browser's write buffer drains
    GONE = 3  # no longer the fast path's: closed, handed to aiohttp, or spliced


HEAD, BUSY, HANDOFF, GONE = State.HEAD, State.BUSY, State.HANDOFF, State.GONE
# the exchange's phases and steps, as module names (no attribute lookup on the hot path)
CONNECTING, BODY = Phase.CONNECTING, Phase.BODY
CONNECT, SEND_HEAD, SEND_ALL = Step.CONNECT, Step.SEND_HEAD, Step.SEND_ALL
RETRY, DECLINE, FAIL, UPGRADE = Step.RETRY, Step.DECLINE, Step.FAIL, Step.UPGRADE
# why reading from the browser is paused (bits); PUMPING: the body is spliced in the kernel
BUF_FULL, _UP_FULL, _HANDOFF, PUMPING = 1, 2, 4, 8
# A request body at least this long still to come is spliced in the kernel (kernelcopy)
PUMP_MIN = 64 * 1024


def final_answer(status: bytes, message: str) -> bytes:
    """An error answer after which the connection closes, for the cases aiohttp cannot
    answer because part of the request is already gone: a workspace failing once the request
    (or a 101) could not be replayed, or answering what the gateway does not relay (502), and
    a chunked body that turns out malformed (400). Every other refusal is aiohttp's."""
    body = json.dumps({"error": message}).encode()
    return (b"HTTP/1.1 %s\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"X-Content-Type-Options: nosniff\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (status, len(body))) + body


class Front(asyncio.Protocol):
    """One browser connection, while the fast path serves it."""

    __slots__ = ("fp", "transport", "buf", "state", "x", "read_block", "write_paused", "eof",
                 "idle", "client_ip", "cred", "token", "token_bytes", "cookie_out", "client",
                 "served", "placed", "held", "trusted", "reader")

    def __init__(self, fp: Listener) -> None:
        self.fp = fp
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.buf = b""
        self.state = HEAD
        self.x: Exchange | None = None  # the request under way (state BUSY)
        self.read_block = 0
        self.write_paused = False
        self.eof = False
        self.idle = 0  # sweeps spent waiting on the client (see FastPath._sweep)
        self.client = ""  # the peer's address: its place in the connection caps
        self.client_ip = b""
        self.served = False  # a whole head has arrived on this connection
        self.placed = False  # holds a place in the caps, to be given back once
        self.held = 0  # bytes of ``buf`` counted in the gateway's read-ahead total
        self.trusted = False  # a trusted peer (Gate.trusts), asked once on accept
        # the session credential last seen on this connection (it rarely changes), as read
        # from (Authorization, Cookie): the token, and the Cookie header to forward
        self.cred: tuple[bytes | None, bytes | None] = (None, None)
        self.token = ""
        self.token_bytes = b""
        self.cookie_out: bytes | None = None
        self.reader = RequestReader()  # this connection's llhttp parser, and its last head

    # -- asyncio callbacks ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, list | tuple) else ""
        self.client_ip = self.client.encode()
        self.trusted = self.fp.gate.trusts(transport, peer)
        if self.fp.admit(self):
            self.placed = True
        else:
            self.state = GONE

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == BUSY:
            x = self.x
            assert x is not None
            if x.phase == BODY:
                self._body(x, data)
                return
        elif state == GONE:
            return
        buf = self.buf
        if buf:
            self.buf = buf + data
        else:
            self.buf = data
            if state == HEAD:
                self.idle = 0  # a head begins: the header timeout counts from here
        if state == HEAD:
            self._next()
        if self.buf or self.held:
            self._hold()

    def eof_received(self) -> bool | None:
        x = self.x
        if self.state == HEAD or (x is not None and x.phase == BODY):
            return None  # nothing in flight, or the request body cut short: close
        self.peer_eof()
        return True

    def peer_eof(self) -> None:
        """The client shut its side: answer what was asked (if it comes soon: the sweep
        gives it keepalive_timeout), then close."""
        self.eof = True
        if self.x is not None:
            self.x.keep_alive = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._detach()

    def _detach(self) -> None:
        """Forget this connection and give back (discard) its upstream, if any."""
        x, self.x = self.x, None
        self.state = GONE
        self.fp.forget(self)
        self._let_go()
        self._release()
        if x is None:
            return
        pump = x.pump
        if pump is not None:
            x.pump = None
            pump.abort()
            x.body_left = pump.left
        if x.chunks is None and x.body_left > 0:  # a Content-Length body cut short
            self.fp.traffic.to_workspace -= x.body_left  # counted in full by _send
        up, x.up = x.up, None
        if up is not None:
            up.discard()

    def _release(self) -> None:
        """Give back this connection's place in the caps (exactly once)."""
        if self.placed:
            self.placed = False
            self.fp.places.give_back(self.client)

    def _hold(self) -> None:
        """Count ``buf`` in the read-ahead total. Past this connection's bound, stop reading
        until the answer in flight is done (a head still arriving has MAX_HEAD instead); past
        the total, 503 and close."""
        n = len(self.buf)
        fp = self.fp
        total = fp.buffered + n - self.held
        fp.buffered = total
        self.held = n
        if total > fp.peak_buffered:
            fp.peak_buffered = total
        state = self.state
        if state == GONE:
            return
        if total > fp.max_buffered:
            # Each read may bring up to 256 KiB before anything can be checked, and many
            # connections may read at once: the one that crosses the budget is let go,
            # which keeps the total within it plus one read.
            self._fail(b"503 Service Unavailable", "the gateway is busy, try again")
        elif n > fp.max_pending and state != HEAD:
            self._block(BUF_FULL)
        elif self.read_block & BUF_FULL:
            self._unblock(BUF_FULL)

    def _let_go(self) -> None:
        """``buf`` is no longer this connection's to hold (sent on, handed over, or dropped)."""
        if self.held:
            self.fp.buffered -= self.held
            self.held = 0

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self.x.up if self.x is not None else None
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.x.up if self.x is not None else None
        if up is not None:
            up.resume_reading()
        if self.state == HANDOFF:
            self._handoff(self.buf)

    # -- one request ----------------------------------------------------------------------
    def _next(self) -> None:
        """Take up the request at the start of the buffer."""
        buf = self.buf
        end = buf.find(HEAD_END)
        if end < 0:
            if head_never_ends(buf):
                self._handoff(buf)  # too long or bare-LF lines: aiohttp answers
            return
        head_len = end + 4
        req = self.reader.read(buf[:head_len])
        fp = self.fp
        if not self.served:
            self.served = True
            fp.fresh.pop(self, None)
        gate = fp.gate
        if (req is None or not req.target.startswith(gate.prefix_bytes)
                or (req.remote_user and self.trusted)):
            self._handoff(buf)
            return
        cred = (req.authorization, req.cookie)
        if cred == self.cred and self.token:
            token = self.token
        else:
            found = gate.token(req)
            if found is None:
                self._handoff(buf)
                return
            token = self.token = found
            self.token_bytes = found.encode("latin-1")
            self.cookie_out = (None if req.cookie is None
                               else session_cookie_out(req.cookie, gate.cookie_name))
            self.cred = cred
        self.idle = 0
        self.x = x = Exchange(req, head_len, req.keep_alive and not self.eof)
        self.state = BUSY
        identity = gate.admission.known(token)
        allowed = gate.allowed_now(identity) if identity is not None else None
        if allowed is None or identity is None:
            fp.spawn(self._admit_later(x, token, identity))
        elif allowed:
            self._admit(x, identity)
        else:
            self._decline(x)

    async def _admit_later(self, x: Exchange, token: str, identity: Identity | None) -> None:
        """A token not seen before, or an authorizer that asks a service."""
        admission = self.fp.gate.admission
        try:
            if identity is None:
                identity = await admission.identify(token)
            allowed = await admission.allowed(identity)
        except Exception:  # noqa: BLE001 - any refusal is aiohttp's to explain
            allowed = False
        if self.x is not x:
            return  # the browser went away meanwhile
        if allowed and identity is not None:
            self._admit(x, identity)
        else:
            self._decline(x)

    def _admit(self, x: Exchange, identity: Identity) -> None:
        fp = self.fp
        gate = fp.gate
        req = x.req
        plan = gate.plan(req, identity)
        if plan is None:
            self._decline(x)
            return
        route, target, user, websocket = plan
        fp.relayed += 1
        fp.touch(identity.user)
        x.began = monotonic_ns()
        x.route = route
        x.websocket = websocket
        x.user = identity.user
        x.out_head = upstream_request_head(
            req, target, user=user, client_ip=self.client_ip, prefix=gate.forwarded_prefix,
            session_token=self.token_bytes, cookie_out=self.cookie_out,
            cookie_name=gate.cookie_name, websocket=websocket,
            route_auth=route.auth_bytes)
        up = fp.pool.take(route.host, route.port)
        if up is None:
            x.step(CONNECT)
            self._connect(x)
        else:
            self._send(x, up)

    def _connect(self, x: Exchange) -> None:
        assert x.route is not None
        self.fp.spawn(self._connect_later(x, x.route.host, x.route.port))

    async def _connect_later(self, x: Exchange, host: str, port: int) -> None:
        try:
            up = await self.fp.pool.connect(host, port)
        except Exception:  # noqa: BLE001 - refused, unreachable, unresolvable, timed out
            if self.x is x and x.phase == CONNECTING:
                self._decline(x)  # aiohttp tries and answers 502
            return
        if self.x is not x or x.phase != CONNECTING:
            self.fp.pool.give_back(up)
            return
        self._send(x, up)

    def _send(self, x: Exchange, up: Workspace) -> None:
        """Send the head, and as much of the body as is here, to the workspace."""
        req = x.req
        assert up.transport is not None
        x.up = up
        up.attach(self, x, self.transport, no_body=req.method == b"HEAD", upgrade=x.websocket)
        buf = self.buf
        head_len = x.head_len
        traffic = self.fp.traffic
        if req.chunked:
            scanner = ChunkedScanner(drop_trailers=True)
            try:
                out, after = scanner.feed(buf[head_len:])
            except ChunkedError as exc:
                self._fail(b"400 Bad Request", f"malformed request body: {exc}")
                return
            write_head_and_body(up.transport, x.out_head, out)
            traffic.to_workspace += len(out)
            if after is None:
                x.chunks = scanner
                self.buf = b""
                self.idle = 0
                x.step(SEND_HEAD)  # body_left counts down by bytes read (see _body)
            else:
                used = len(buf) - len(after)
                x.replay = buf[:used]
                self.buf = after
                x.step(SEND_ALL)
        elif req.content_length > 0:
            # the whole body counted once, here; a body cut short gives back what never
            # came (_detach)
            traffic.to_workspace += req.content_length
            end = head_len + req.content_length
            if len(buf) >= end:
                write_head_and_body(up.transport, x.out_head, buf[head_len:end])
                x.replay = buf[:end]
                self.buf = buf[end:]
                x.step(SEND_ALL)
            else:
                write_head_and_body(up.transport, x.out_head, buf[head_len:])
                x.body_left = x.mark = left = end - len(buf)
                self.idle = 0
                self.buf = b""
                x.step(SEND_HEAD)
                if left >= PUMP_MIN:
                    self._pump(x, up.transport, left)
        else:
            up.transport.write(x.out_head)
            x.replay = buf[:head_len]
            self.buf = buf[head_len:]
            x.step(SEND_ALL)
        if self.buf or self.held:
            self._hold()

    def _pump(self, x: Exchange, dst: asyncio.Transport, count: int) -> None:
        """The rest of a Content-Length body, socket to socket in the kernel, if it can."""
        pump = pump_between(self.fp.pool.pipes, self.transport, dst)
        if pump is None:
            return
        self._block(PUMPING)
        x.pump = pump
        pump.run(count, partial(self._pumped, x))

    def _pumped(self, x: Exchange, failed: int | None) -> None:
        pump = x.pump
        assert pump is not None
        x.pump = None
        pump.close()
        x.body_left = pump.left
        if failed == SOURCE:  # the browser left mid-body: _detach gives back the shortfall
            self.close()
        elif failed is not None:
            self._fail(b"502 Bad Gateway", "your workspace did not answer")
        else:
            x.step(SEND_ALL)
            self._unblock(PUMPING)

    def _body(self, x: Exchange, data: bytes) -> None:
        """More of a request body: straight on to the workspace."""
        up = x.up
        assert up is not None and up.transport is not None
        chunks = x.chunks
        if chunks is not None:
            x.body_left -= len(data)  # only the sweep reads it: how far the body moved
            try:
                out, after = chunks.feed(data)
            except ChunkedError as exc:
                self._fail(b"400 Bad Request", f"malformed request body: {exc}")
                return
            if out:
                up.transport.write(out)
                self.fp.traffic.to_workspace += len(out)
            if after is None:
                return
            x.chunks = None
        else:
            left = x.body_left
            n = len(data)
            if n < left:
                up.transport.write(data)
                x.body_left = left - n
                return
            up.transport.write(data if n == left else data[:left])
            after = data[left:]
        x.step(SEND_ALL)
        x.body_left = 0
        self.buf = after
        if after:
            self._hold()

    # -- called by the upstream connection ------------------------------------------------
    def response_done(self, up: Workspace, reusable: bool) -> None:
        """The workspace's answer has been passed on in full."""
        x = self.x
        assert x is not None
        access = self.fp.access
        if access is not None:
            access(x, up)
        x.up = None
        pool_it, close = x.answered(reusable)
        if pool_it:
            self.fp.pool.give_back(up)
        else:
            up.discard()
        if close:
            self.close()
            return
        self.x = None
        self.state = HEAD
        self.idle = 0  # the keep-alive timeout counts from the end of the answer
        if self.read_block:
            self.read_block = 0
            self.transport.resume_reading()
        if self.buf:
            self._next()
            if self.buf or self.held:
                self._hold()
        elif self.held:
            self._let_go()

    def upstream_lost(self, up: Workspace) -> None:
        """The workspace connection closed before the answer was complete."""
        x = self.x
        if x is None or up is not x.up:
            return
        x.up = None
        if x.resp_started:
            self.close()  # the browser sees the body cut short, never a hang
            return
        if x.may_retry(reused=up.reused, answered_any=bool(up.buf)):
            # ``up.buf`` would hold the start of an answer: none came, so most likely the
            # workspace closed the pooled connection while idle as the request went out
            x.retried = True
            x.step(RETRY)
            assert x.replay is not None
            self.buf = x.replay + self.buf
            self._unblock(_UP_FULL)
            self._connect(x)
        else:
            # Never handed to aiohttp: its relay would send the request again.
            self._fail(b"502 Bad Gateway", "your workspace did not answer")

    def upstream_broken(self, up: Workspace) -> None:
        """The workspace's answer is one the gateway does not relay (on any path)."""
        x = self.x
        if x is not None and up is x.up:
            x.up = None
            self._fail(b"502 Bad Gateway", "your workspace sent a malformed answer")

    def upstream_full(self, full: bool) -> None:
        if full:
            self._block(_UP_FULL)
        else:
            self._unblock(_UP_FULL)

    def upgrade_refused(self, status: int) -> None:
        if self.x is not None:
            self.x.up = None
        self._fail(b"502 Bad Gateway",
                   f"your workspace did not answer: workspace refused the WebSocket ({status})")

    def upgraded(self, up: Workspace, to_browser: bytes) -> None:
        """101 from the workspace: from now on the two connections are one byte pipe."""
        x = self.x
        assert x is not None and up.transport is not None
        fp = self.fp
        x.up = None
        x.step(UPGRADE)
        self.x = None
        self.state = GONE
        fp.forget(self)
        fp.n_websockets += 1  # metrics
        self._let_go()
        fp.pool.forget(up)
        browser = self.transport
        # browser reads pause exactly while the workspace's write buffer is full
        if self.read_block and not up.write_paused:
            browser.resume_reading()
        elif not self.read_block and up.write_paused:
            browser.pause_reading()
        release: Callable[[], None] | None = None
        if self.placed:  # the splice's browser end gives the place back
            self.placed = False
            release = partial(fp.places.give_back, self.client)
        splice(browser, up.transport, to_browser=to_browser, to_workspace=self.buf,
               touch=fp.touch, user=x.user, live=fp.splices, traffic=fp.traffic,
               max_message=fp.gateway.settings.websocket_max_message_bytes, release=release,
               pipes=fp.pool.pipes)
        self.buf = b""

    # -- endings --------------------------------------------------------------------------
    def _decline(self, x: Exchange) -> None:
        """Not the fast path's: aiohttp takes this request (nothing of it was sent)."""
        x.step(DECLINE)
        self.x = None
        self._handoff(self.buf)

    def _handoff(self, data: bytes) -> None:
        """From here on aiohttp serves this connection, starting with ``data``."""
        if self.write_paused:  # aiohttp must not inherit a paused writer; wait for the drain
            self.state = HANDOFF
            self.buf = data
            self._block(_HANDOFF)
            return
        fp = self.fp
        fp.handed_off += 1
        self.state = GONE
        fp.forget(self)
        self._let_go()
        transport = self.transport
        protocol = fp.aiohttp_protocol()
        if self.placed:  # aiohttp serves the connection now; its end gives the place back
            self.placed = False
            protocol = Handed(protocol, partial(fp.places.give_back, self.client))
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.read_block:
            self.read_block = 0
            transport.resume_reading()
        self.buf = b""
        if data:
            protocol.data_received(data)

    def _fail(self, status: bytes, message: str) -> None:
        x = self.x
        if x is not None:
            x.step(FAIL)
        if not (x is not None and x.resp_started) and self.state != GONE:
            self.fp.n_failed += 1  # metrics
            self.transport.write(final_answer(status, message))
        self.close()

    def close(self) -> None:
        self._detach()
        self.transport.close()

    def expire(self) -> None:
        """Called by the sweep when the client has been too slow in this state."""
        x = self.x
        if x is not None and x.phase == BODY:
            self._fail(b"408 Request Timeout", "the request body arrived too slowly")
        elif self.state == HEAD:
            if self.buf:
                self._fail(b"408 Request Timeout", "the request head arrived too slowly")
            else:
                self.close()  # idle keep-alive: nobody to tell
        else:  # an answer that did not start while read-ahead was held (or the client left)
            self._fail(b"504 Gateway Timeout", "your workspace did not answer in time")

    def _block(self, reason: int) -> None:
        if not self.read_block:
            self.transport.pause_reading()
        self.read_block |= reason

    def _unblock(self, reason: int) -> None:
        if self.read_block & reason:
            self.read_block &= ~reason
            if not self.read_block:
                self.transport.resume_reading()
