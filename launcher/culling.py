"""Idle culling: a workspace with an ``idle-time-limit`` is terminated once the proxy has seen
no request and no WebSocket message for it that long (Hatchery leaves this to Jupyter's own
``shutdown_no_activity_timeout``; the gateway sees traffic Jupyter cannot, such as other apps).

A workspace idle by the gateway's record is asked for its own last activity before it goes
(``workspace_last_ms``: Jupyter's ``api/status``, which hatchery-reaper culls by): a kernel
busy with a long cell while the browser is closed is activity the proxy never sees. The later
of the two decides; a workspace neither knows anything about is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .backend import RUNNING, Backend
from .clock import REAL, Clock
from .periodic import Periodic
from .routes import RouteTable

log = logging.getLogger("hatchway.culling")


class IdleCuller:
    def __init__(self, backend: Backend, routes: RouteTable, last_activity_ms: Callable[[str], int],
                 *, interval_seconds: float = 30.0, is_leader: Callable[[], bool] = lambda: True,
                 default_limit_ms: int = 0,
                 on_cull: Callable[[str, str], None] | None = None,
                 workspace_last_ms: Callable[[str], Awaitable[int]] | None = None,
                 clock: Clock = REAL) -> None:
        # is_leader: only the replica holding the Lease culls (launcher/kubernetes/leader.py);
        # default_limit_ms: hatchery-reaper's global limit for options without their own.
        self._backend = backend
        self._routes = routes
        self._last = last_activity_ms
        self._loop = Periodic("idle sweep", self.sweep, interval_seconds, log=log)
        self._is_leader, self._default_limit = is_leader, default_limit_ms
        self._on_cull = on_cull  # (user, why): metrics, the log line, the stopped page
        self._workspace_last = workspace_last_ms  # asked only once the gateway's record is idle
        self._clock = clock  # idle time is judged by it; the sweeps are paced by the loop

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def sweep(self) -> list[str]:
        """Terminate every running workspace idle past its limit; returns whose."""
        if not self._is_leader():
            return []
        now_ms = int(self._clock.time() * 1000)
        culled = []
        for user, route in self._routes.items():
            if route.source in ("static", "test"):
                continue
            try:
                status = await self._backend.status(user)
            except Exception as exc:  # one failing status must not stop the sweep
                log.warning("culler could not read %s's status: %s", user, exc)
                continue
            limit = status.idle_time_limit if status.idle_time_limit > 0 else self._default_limit
            last = self._last(user)
            if status.status != RUNNING or limit <= 0 or now_ms - last <= limit:
                continue
            if self._workspace_last is not None:
                try:
                    last = max(last, await self._workspace_last(user))
                except Exception as exc:  # unknown is not idle: next sweep asks again
                    log.warning("culler could not read %s's workspace activity: %s", user, exc)
                    continue
            if last and now_ms - last > limit:
                whose = "the option's" if status.idle_time_limit > 0 else "the default"
                why = (f"idle for {(now_ms - last) // 1000} s, past {whose} limit of "
                       f"{limit // 1000} s; its volume is kept")
                if self._on_cull is None:
                    log.info("culling %s's workspace: %s", user, why)
                await self._backend.terminate(user)
                if self._on_cull is not None:
                    self._on_cull(user, why)
                culled.append(user)
        return culled
