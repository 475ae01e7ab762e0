"""The fast path of one listening socket: the protocol factory ``loop.create_server`` calls,
and what its connections share (the gate, the upstream pool, the aiohttp protocol factory for
handoffs, the connection caps and the read-ahead budget), plus the housekeeping aiohttp would
otherwise do.

Housekeeping is one periodic sweep over the connections (no timer per request or connection):
it closes idle keep-alive connections, cuts heads and bodies that arrive too slowly, notices
clients that left while their reading was paused (asyncio does not look at a paused socket, so
a departed client would otherwise be held as long as its workspace stays silent; a poll(2) sees
a close that reached us, and read-ahead is held no longer than the keep-alive timeout for the
close that cannot reach us behind unread bytes), and closes everything on shutdown. Each
timeout is counted in sweeps, so a connection is cut between the timeout and the timeout plus
one sweep (a quarter of the shortest timeout).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import math
import select
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any

from ...gateway import Gateway
from ...observe.traffic import Traffic
from .exchange import Exchange
from .front import BODY, BUF_FULL, HANDOFF, HEAD, PUMPING, Front, final_answer
from .gate import Gate
from .limits import Places
from .splice import SpliceEnd
from .upstream import UpstreamPool

POOL_IDLE_SECONDS = 30.0  # a pooled workspace connection idle this long is closed
MAX_SWEEP_SECONDS = 15.0
_RDHUP = getattr(select, "POLLRDHUP", 0x2000)  # the peer shut its side (Linux)
_GONE = select.POLLHUP | select.POLLERR  # reset, or shut both ways
TRIM_BYTES = 16 * 1024 * 1024  # read-ahead freed since the last trim that is worth a trim


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc keeps freed heap pages; after a burst of read-ahead is let go, hand them back."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


class FastPath:
    def __init__(self, gateway: Gateway,
                 aiohttp_protocol: Callable[[], asyncio.Protocol]) -> None:
        self.gateway = gateway
        self.gate = Gate(gateway)
        self.touch = gateway.activity.touch
        self.aiohttp_protocol = aiohttp_protocol
        limits = gateway.settings.limits
        self.places = Places(max_total=limits.max_connections,
                             max_per_client=limits.max_connections_per_client)
        # connections that have not yet sent one whole head, oldest first: the ones given up
        # when every place is taken, so that attackers' idle sockets make room for new users
        self.fresh: OrderedDict[Front, None] = OrderedDict()
        self.max_pending = limits.max_pending_bytes
        self.max_buffered = limits.max_buffered_bytes
        self.buffered = 0  # read-ahead bytes held by all connections
        # what answered: requests relayed here, connections handed to aiohttp (``/_status``;
        # tests read them to prove the fast path is taken)
        self.relayed = 0
        self.handed_off = 0
        self.peak_buffered = 0
        timeouts = (limits.header_timeout_seconds, limits.keepalive_timeout_seconds,
                    limits.body_timeout_seconds)
        self.sweep_seconds = sweep = min(MAX_SWEEP_SECONDS, min(timeouts) / 4)
        self.head_ticks, self.keepalive_ticks, self.body_ticks = (
            max(1, math.ceil(t / sweep - 1e-9)) for t in timeouts)
        self.body_min_per_tick = int(limits.body_min_rate * sweep)
        self.traffic = Traffic()  # bytes each way, time to first byte (metrics)
        self.pool = UpstreamPool(idle_ticks=max(1, math.ceil(POOL_IDLE_SECONDS / sweep)),
                                 traffic=self.traffic)
        self.fronts: set[Front] = set()
        self.splices: set[SpliceEnd] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._trim = _malloc_trim()
        # metrics: plain ints, read by proxy.observe.metrics only when Prometheus scrapes
        self.n_websockets = 0
        self.n_failed = 0  # its own error answers (502 workspace gone mid-request, 408, 400)
        # the opt-in access log: called after each relayed answer (proxy.serve.wiring), else None
        self.access: Callable[[Exchange, Any], None] | None = None

    def __call__(self) -> Front:
        """A protocol for a new browser connection."""
        return Front(self)

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.sweep_seconds, self._sweep)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connection places ----------------------------------------------------------------
    def admit(self, front: Front) -> bool:
        """Give a new connection a place, or refuse it (503, closed). When every place is
        taken, the oldest connection that has not sent a whole head yet is closed to make
        room; connections of users already served are never given up for a newcomer."""
        places = self.places
        client = front.client
        # A trusted proxy (revproxy, a load balancer) is the address of many users: no
        # per-address cap for it (``front.trusted``: the gate asked once, on accept).
        if places.client_full(client) and not front.trusted:
            return _refuse(front, "too many connections from your address")
        if places.full():
            if not self.fresh:
                return _refuse(front, "the gateway is at its connection limit")
            oldest, _ = self.fresh.popitem(last=False)
            oldest.close()
        places.take(client)
        self.fresh[front] = None
        self.fronts.add(front)
        return True

    def forget(self, front: Front) -> None:
        """``front`` no longer serves its connection (closed, handed off or spliced)."""
        self.fronts.discard(front)
        if not front.served:
            self.fresh.pop(front, None)

    # -- the sweep ------------------------------------------------------------------------
    def _sweep(self) -> None:
        head_ticks = self.head_ticks
        keepalive_ticks = self.keepalive_ticks
        paused: list[Front] = []
        for front in list(self.fronts):
            state = front.state
            x = front.x
            if state == HEAD:
                limit = keepalive_ticks if front.served and not front.buf else head_ticks
            elif x is not None and x.phase == BODY:
                pump = x.pump  # a body spliced in the kernel counts down there
                left = x.body_left if pump is None else pump.left
                moved = x.mark - left
                x.mark = left
                if (moved >= self.body_min_per_tick or front.read_block & ~PUMPING
                        or (pump is not None and pump.writing)):
                    front.idle = 0  # moving, or held back by the workspace, not the client
                    continue
                limit = self.body_ticks
            elif state == HANDOFF or x is None or x.resp_started:
                continue  # an answer on its way: the client's reading paces it
            elif front.eof:
                limit = keepalive_ticks  # the client left: its answer has this long to start
            elif front.read_block & BUF_FULL:
                # Read-ahead held while the answer is awaited. A client that left behind it
                # is invisible (its FIN waits behind the bytes we do not read), so the
                # answer must start within the keep-alive timeout.
                paused.append(front)
                limit = keepalive_ticks
            else:
                continue
            idle = front.idle + 1
            front.idle = idle
            if idle > limit:
                front.expire()
        if paused:
            _peers_gone(paused)
        self.pool.sweep()
        self._give_memory_back()
        self.start()

    def _give_memory_back(self) -> None:
        if self.peak_buffered - self.buffered > TRIM_BYTES and self._trim is not None:
            self._trim(0)
        self.peak_buffered = self.buffered

    def close(self) -> None:
        """Close every connection the fast path holds (handed-off ones are aiohttp's)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        for front in list(self.fronts):
            front.transport.close()
        for end in list(self.splices):
            end.own.close()
        self.pool.close()


def _refuse(front: Front, message: str) -> bool:
    front.transport.write(final_answer(b"503 Service Unavailable", message))
    front.transport.close()
    return False


def _peers_gone(fronts: list[Front]) -> None:
    """Ask the kernel which of these paused connections' clients have left: one poll(2) for
    all of them, without reading (their read-ahead stays where it is)."""
    poller = select.poll()
    by_fd: dict[int, Front] = {}
    for front in fronts:
        sock = front.transport.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
        if fd >= 0:
            by_fd[fd] = front
            poller.register(fd, _RDHUP)
    for fd, events in poller.poll(0):
        front = by_fd[fd]
        if events & _GONE:
            front.close()
        elif events & _RDHUP:
            front.peer_eof()
