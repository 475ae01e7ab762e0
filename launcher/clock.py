"""The time hatchway judges by: the wall clock (epoch seconds), a monotonic clock, and timers
on the same time. Passed in wherever elapsed time decides something (activity, idle culling,
the session cache, the JWKS windows, the culler's Lease), so a test moves time with
``ManualClock.advance`` instead of waiting for it. Loops that only pace work (``Periodic``) and
I/O timeouts stay on the event loop's time: they wait, they do not judge.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time as _time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock time, epoch seconds (what activity and token expiry are stated in)."""
        ...

    def monotonic(self) -> float:
        """Seconds that never go back (what windows and leases are measured in)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once ``delay`` seconds of this clock have passed."""
        ...


class RealClock:
    """The machine's clocks and the running event loop's timers."""

    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)

    @staticmethod
    def call_later(delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


REAL: Clock = RealClock()


class _ManualTimer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Time that stands still until ``advance`` moves it (tests, simulations). It starts at
    the real wall time, so timestamps from real parts (a token's ``exp``, a workspace's own
    ``last_activity``) compare sensibly; timers fall due in order as time passes them."""

    def __init__(self, start: float | None = None) -> None:
        self._wall = _time.time() if start is None else start
        self._elapsed = 0.0
        self._timers: list[tuple[float, int, _ManualTimer, Callable[[], None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._wall + self._elapsed

    def monotonic(self) -> float:
        return self._elapsed

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = _ManualTimer()
        heapq.heappush(self._timers, (self._elapsed + max(0.0, delay), next(self._order),
                                      timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, running each timer at the moment it falls due."""
        until = self._elapsed + seconds
        while self._timers and self._timers[0][0] <= until:
            due, _, timer, callback = heapq.heappop(self._timers)
            self._elapsed = max(self._elapsed, due)
            if not timer.cancelled:
                callback()
        self._elapsed = until
