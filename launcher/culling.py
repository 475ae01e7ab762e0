"""Idle culling: a workspace with an ``idle-time-limit`` is terminated once the proxy has seen
no request and no WebSocket message for it that long (Hatchery leaves this to Jupyter's own
``shutdown_no_activity_timeout``; the gateway sees traffic Jupyter cannot, such as other apps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from proxy.routes import RouteTable

from .backend import RUNNING, Backend

log = logging.getLogger("hatchway.culling")


class IdleCuller:
    def __init__(self, backend: Backend, routes: RouteTable, last_activity_ms: Callable[[str], int],
                 *, interval_seconds: float = 30.0,
                 on_cull: Callable[[str, str], None] | None = None) -> None:
        self._backend = backend
        self._routes = routes
        self._last = last_activity_ms
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None
        self._on_cull = on_cull  # (user, why): metrics, the log line, the stopped page

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="idle culler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def sweep(self) -> list[str]:
        """Terminate every running workspace idle past its limit; returns whose."""
        now_ms = int(time.time() * 1000)
        culled = []
        for user, route in self._routes.items():
            if route.source in ("static", "test"):
                continue
            try:
                status = await self._backend.status(user)
            except Exception as exc:  # one failing status must not stop the sweep
                log.warning("culler could not read %s's status: %s", user, exc)
                continue
            limit = status.idle_time_limit
            last = self._last(user)
            if status.status != RUNNING or limit <= 0 or not last:
                continue
            if now_ms - last > limit:
                why = f"idle for {(now_ms - last) // 1000} s (limit {limit // 1000} s)"
                if self._on_cull is None:
                    log.info("terminating %s's workspace: %s", user, why)
                await self._backend.terminate(user)
                if self._on_cull is not None:
                    self._on_cull(user, why)
                culled.append(user)
        return culled

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("idle sweep failed")
