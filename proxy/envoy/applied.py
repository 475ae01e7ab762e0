"""Whether Envoy has taken hatchway's latest route and cluster files, asked of its admin.

hatchway says a workspace is Running only once Envoy routes to it. After each write the
tracker polls Envoy's ``/stats`` until Envoy serves that route version together with that
cluster file. When Envoy refuses a file (its ``update_rejected`` counters move while its
version stays behind) or has not taken it within ``CONFIRM_WITHIN_S``, ``problem`` says so, and
``/status`` and ``/_ready`` report it, until Envoy serves a later write (issue 21: Envoy
refused every route file after one it could not read, hatchway only logged that Envoy had not
applied it, and ``/status`` said Running while Envoy answered 404).
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from launcher.tasks import cancel_and_wait

from .admin import EnvoyAdminUnreachable, Served, served

log = logging.getLogger(__name__)

CONFIRM_WITHIN_S = 5.0  # Envoy takes a file within milliseconds of its rename
REFUSAL_GRACE_S = 0.5  # after a write, for Envoy to read it (a refused earlier file may be
# followed by the current one's success)
POLL_S = 0.02
SLOW_POLL_S = 1.0  # while Envoy is behind: until it catches up (an operator fixed something)


class EnvoyApplied:
    """Follows what Envoy serves at ``admin_url``; ``served`` and ``problem`` say the rest."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.served = 0  # the route version Envoy serves, with the cluster file written with it
        self.problem = ""  # why Envoy does not serve the latest files; "" when it does (or soon)
        self._target: tuple[int, str] = (0, "")
        self._refused_seen: int | None = None  # Envoy's refusal count at the last look
        self._refused = False  # Envoy refused a file since it last served one of ours
        self._written = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wrote(self, routes_version: int, clusters_version: str) -> None:
        """hatchway's files now carry these versions."""
        self._target = (routes_version, clusters_version)
        self._written.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="envoy-applied")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _follow(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                await self._written.wait()
                self._written.clear()
                await self._until_served(session)

    async def _until_served(self, session: aiohttp.ClientSession) -> None:
        """Poll until Envoy serves the target, or hatchway writes again (then the caller starts
        over with the new target)."""
        loop = asyncio.get_running_loop()
        routes, clusters = self._target
        started = loop.time()
        while not self._written.is_set():
            try:
                now = await served(session, self.admin_url)
            except EnvoyAdminUnreachable:
                self.served, self.problem = routes, ""  # no Envoy to wait for: hold no one back
                return
            # A refusal since the last look (at the first look at this Envoy, as hatchway and
            # Envoy start together, any it counts): Envoy reads the current file on each
            # change, so once past the grace a version still behind ours was refused.
            if now.refused > (0 if self._refused_seen is None else self._refused_seen):
                self._refused = True
            self._refused_seen = now.refused  # (falls when Envoy restarts)
            if _serves(now, routes, clusters):
                if self.problem:
                    log.warning("Envoy serves hatchway's route version %d again", routes)
                self.served, self.problem, self._refused = routes, "", False
                return
            waited = loop.time() - started
            if self._refused and waited >= REFUSAL_GRACE_S:
                self._report(f"Envoy refused hatchway's route or cluster file (route version "
                             f"{routes}; it serves {now.routes_version or 'none'}): Envoy's log "
                             "says why ('config update rejected'); workspaces launched since "
                             "are not routed")
            elif waited >= CONFIRM_WITHIN_S and not self.problem:
                self._report(f"Envoy has not applied route version {routes} within "
                             f"{CONFIRM_WITHIN_S:g} s (it serves {now.routes_version or 'none'})")
            await asyncio.sleep(SLOW_POLL_S if self.problem or waited >= CONFIRM_WITHIN_S
                                else POLL_S)

    def _report(self, problem: str) -> None:
        if problem != self.problem:
            log.error("%s", problem)
        self.problem = problem


def _serves(now: Served, routes: int, clusters: str) -> bool:
    return (now.routes_version.isdigit() and int(now.routes_version) >= routes
            and now.clusters_version == clusters)
