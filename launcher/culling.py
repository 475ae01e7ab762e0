"""Culling: a running workspace is terminated once it has been idle past the limit in force
(the smaller of its option's ``idle-time-limit`` and the global one, hatchery-reaper's rule:
launcher.lifetime), or once it is older than its maximum age, whatever its activity. Its
volume is kept, as after Terminate.

A workspace idle by the gateway's record is asked for its own last activity before it goes
(``workspace_last_ms``: Jupyter's ``api/status``, which hatchery-reaper culls by): a kernel
busy with a long cell while the browser is closed is activity the proxy never sees. The later
of the two decides; a workspace neither knows anything about is left alone.

With a pay-model table, a Running or Launching workspace whose user's *current* pay model is
``above limit`` is terminated too: hatchery-reaper's second rule (it reads ``/paymodels``
``request_status`` for each such user and calls ``/terminate``). The rows of every such user
come from one batched read per sweep; a table that cannot be read stops nobody.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from .backend import LAUNCHING, RUNNING, Backend
from .clock import REAL, Clock
from .lifetime import enforced_idle_ms, past_max_age
from .paymodels import ABOVE_LIMIT, PayModelError, PayModels
from .periodic import Periodic
from .routes import RouteTable

log = logging.getLogger("hatchway.culling")


class IdleCuller:
    def __init__(self, backend: Backend, routes: RouteTable, last_activity_ms: Callable[[str], int],
                 *, interval_seconds: float = 30.0, is_leader: Callable[[], bool] = lambda: True,
                 default_limit_ms: int = 0,
                 on_cull: Callable[[str, str, str], None] | None = None,
                 workspace_last_ms: Callable[[str], Awaitable[int]] | None = None,
                 clock: Clock = REAL, paymodels: PayModels | None = None) -> None:
        # is_leader: only the replica holding the Lease culls (launcher/kubernetes/leader.py);
        # default_limit_ms: hatchery-reaper's global limit, capping every option's.
        self._backend = backend
        self._routes = routes
        self._last = last_activity_ms
        self._loop = Periodic("idle sweep", self.sweep, interval_seconds, log=log)
        self._is_leader, self._default_limit = is_leader, default_limit_ms
        # (user, reason "idle" or "max_age", why): metrics, the log line, the stopped page
        self._on_cull = on_cull
        self._workspace_last = workspace_last_ms  # asked only once the gateway's record is idle
        self._clock = clock  # idle time is judged by it; the sweeps are paced by the loop
        # the reaper's pay-model rule, only where a table holds pay models to go over limit
        self._paymodels = paymodels if paymodels is not None and paymodels.table else None

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def sweep(self) -> list[str]:
        """Terminate every running workspace idle past its limit or older than its maximum
        age, and every running or launching one over its pay model's limit; returns whose."""
        if not self._is_leader():
            return []
        now_ms = int(self._clock.time() * 1000)
        culled: list[str] = []
        live: list[str] = []  # Running or Launching: what the reaper checks pay models for
        for user, route in self._routes.items():
            if route.source in ("static", "test"):
                continue
            try:
                status = await self._backend.status(user)
            except Exception as exc:  # one failing status must not stop the sweep
                log.warning("culler could not read %s's status: %s", user, exc)
                continue
            if status.status in (RUNNING, LAUNCHING):
                live.append(user)
            if status.status != RUNNING:
                continue
            if past_max_age(now_ms, status.started_ms, status.max_age_ms):
                await self._cull(user, "max_age", (
                    f"running for {(now_ms - status.started_ms) // 1000} s, past its maximum "
                    f"age of {status.max_age_ms // 1000} s; its volume is kept"))
                culled.append(user)
                continue
            limit = enforced_idle_ms(status.idle_time_limit, self._default_limit)
            last = self._last(user)
            if limit <= 0 or now_ms - last <= limit:
                continue
            if self._workspace_last is not None:
                try:
                    last = max(last, await self._workspace_last(user))
                except Exception as exc:  # unknown is not idle: next sweep asks again
                    log.warning("culler could not read %s's workspace activity: %s", user, exc)
                    continue
            if last and now_ms - last > limit:
                whose = "the option's" if limit == status.idle_time_limit else "the global"
                await self._cull(user, "idle", (
                    f"idle for {(now_ms - last) // 1000} s, past {whose} limit of "
                    f"{limit // 1000} s; its volume is kept"))
                culled.append(user)
        return culled + await self._over_limit([u for u in live if u not in culled])

    async def _over_limit(self, users: list[str]) -> list[str]:
        """Terminate the workspaces of ``users`` whose current pay model is above limit."""
        if self._paymodels is None or not users:
            return []
        try:
            current = await self._paymodels.current_pay_models(users)
        except PayModelError as exc:  # unknown is not over: next sweep reads again
            log.warning("culler could not read pay models, none stopped for them: %s", exc)
            return []
        culled = []
        for user in users:
            pm = current.get(user)
            if pm is None or pm.status != ABOVE_LIMIT:
                continue
            await self._cull(user, "over_limit", (
                f"its current pay model {pm.name!r} ({pm.id}) is above limit "
                f"(total-usage {pm.total_usage:g} of hard-limit {pm.hard_limit:g}); "
                "its volume is kept"))
            culled.append(user)
        return culled

    async def _cull(self, user: str, reason: str, why: str) -> None:
        if self._on_cull is None:
            log.info("culling %s's workspace: %s", user, why)
        await self._backend.terminate(user)
        if self._on_cull is not None:
            self._on_cull(user, reason, why)
