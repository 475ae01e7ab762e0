"""Last-activity tracking for idle culling and ``/status``'s ``lastActivityTime``.

Coarse on purpose: the clock is read once a second by a timer, so ``touch`` on the hot path is
one dict store and no syscall.
"""

from __future__ import annotations

from .clock import REAL, Clock, Timer


class ActivityTracker:
    def __init__(self, resolution_seconds: float = 1.0, *, clock: Clock = REAL) -> None:
        self._clock = clock
        self._last: dict[str, int] = {}
        self._now_ms = int(clock.time() * 1000)
        self._resolution = resolution_seconds
        self._timer: Timer | None = None

    def start(self) -> None:
        self._tick()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._now_ms = int(self._clock.time() * 1000)
        self._timer = self._clock.call_later(self._resolution, self._tick)

    def touch(self, user: str) -> None:
        """Record activity for ``user`` now (every proxied request and WebSocket message)."""
        self._last[user] = self._now_ms

    def last_ms(self, user: str) -> int:
        """Epoch milliseconds of the last activity, 0 when there was none."""
        return self._last.get(user, 0)

    def forget(self, user: str) -> None:
        self._last.pop(user, None)
