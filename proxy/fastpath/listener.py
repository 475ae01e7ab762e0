"""The fast path of one listening socket: the protocol factory ``loop.create_server`` calls,
and what its connections share (the gate, the upstream pool, the aiohttp protocol factory for
handoffs), plus the housekeeping that aiohttp would otherwise do: closing idle keep-alive
connections, and closing everything on shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ..gateway import Gateway
from .front import HEAD, Front
from .gate import Gate
from .splice import SpliceEnd
from .upstream import UpstreamPool

SWEEP_SECONDS = 15.0
KEEPALIVE_TICKS = 5  # an idle browser connection is closed after about 75 s, like aiohttp's


class FastPath:
    def __init__(self, gateway: Gateway,
                 aiohttp_protocol: Callable[[], asyncio.Protocol]) -> None:
        self.gateway = gateway
        self.gate = Gate(gateway)
        self.sessions = gateway.sessions
        self.touch = gateway.activity.touch
        self.aiohttp_protocol = aiohttp_protocol
        self.pool = UpstreamPool()
        self.fronts: set[Front] = set()
        self.splices: set[SpliceEnd] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self) -> Front:
        """A protocol for a new browser connection."""
        return Front(self)

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sweep(self) -> None:
        for front in list(self.fronts):
            if front.state != HEAD:
                continue
            if front.idle >= KEEPALIVE_TICKS:
                front.transport.close()
            else:
                front.idle += 1
        self.pool.sweep()
        self.start()

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
