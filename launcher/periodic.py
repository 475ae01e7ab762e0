"""A step run every ``interval`` seconds in a background task until stopped: the loop under the
idle culler, the culler's Lease, the shared activity sync and Envoy's activity poller.

A failing step never ends the loop. A run of failures is logged once, as one WARNING line
without a traceback (the same outage every few seconds would flood the log), and the recovery
at INFO; every failure's traceback is at DEBUG for whoever needs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .tasks import cancel_and_wait


class Periodic:
    """``step`` every ``interval`` seconds, the first right away when ``at_once``, else after
    one interval."""

    def __init__(self, name: str, step: Callable[[], Awaitable[object]], interval: float, *,
                 log: logging.Logger, at_once: bool = False) -> None:
        self.name, self._step, self._interval = name, step, interval
        self._log, self._at_once = log, at_once
        self._task: asyncio.Task[None] | None = None
        self.failures = 0  # consecutive failed steps

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the loop and wait for it; a step under way is cut where it awaits."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        if not self._at_once:
            await asyncio.sleep(self._interval)
        while True:
            try:
                await self._step()
            except Exception as exc:
                self._failed(exc)
            else:
                if self.failures:
                    self._log.info("%s works again after %d failed rounds", self.name,
                                   self.failures)
                self.failures = 0
            await asyncio.sleep(self._interval)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self._log.debug("%s failed", self.name, exc_info=exc)
        if self.failures == 1:
            self._log.warning("%s failed (%s: %s); retrying every %g s", self.name,
                              type(exc).__name__, exc, self._interval)
