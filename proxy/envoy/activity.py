"""Activity for idle culling in Envoy's jwt mode, read from Envoy's own counters.

In jwt mode most requests never reach hatchway, so nothing on the request path can record
activity. Envoy already counts, per cluster, the requests and the bytes each way; every user has
a cluster of their own (``proxy.envoy.config.cluster_name``). Every ``interval_s`` this reads
those counters from Envoy's admin and touches each user whose counters moved: requests and
WebSocket frames either way count, as in builtin mode, at no cost per request.
"""

from __future__ import annotations

import logging
import re

import aiohttp

from launcher.activity import ActivityTracker
from launcher.periodic import Periodic
from launcher.routes import RouteTable

from .config import cluster_name

log = logging.getLogger(__name__)

_COUNTERS = ("upstream_rq_total", "upstream_cx_rx_bytes_total", "upstream_cx_tx_bytes_total")
_FILTER = r"^cluster\.ws_[^.]+\.(" + "|".join(_COUNTERS) + r")$"
_LINE = re.compile(r"^cluster\.(ws_[^.]+)\.[a-z_]+: (\d+)$", re.MULTILINE)


def cluster_totals(stats_text: str) -> dict[str, int]:
    """Sum of the activity counters per cluster, from ``/stats`` text output."""
    totals: dict[str, int] = {}
    for name, value in _LINE.findall(stats_text):
        totals[name] = totals.get(name, 0) + int(value)
    return totals


class EnvoyActivityPoller:
    """Turns moving per-user cluster counters into ActivityTracker touches."""

    def __init__(self, routes: RouteTable, activity: ActivityTracker, admin_url: str, *,
                 interval_s: float = 5.0) -> None:
        self._routes = routes
        self._activity = activity
        self._url = admin_url.rstrip("/") + "/stats"
        self._seen: dict[str, int] = {}  # cluster → counter sum last read
        self._users: dict[str, str] = {}  # cluster → user, rebuilt when the table changes
        self._users_for: object = None
        self._http: aiohttp.ClientSession | None = None
        self._loop = Periodic("Envoy activity poll", self._poll, interval_s, log=log,
                              at_once=True)
        self.polls = 0  # successful reads (health and tests)

    def _cluster_users(self) -> dict[str, str]:
        users = frozenset(user for user, _ in self._routes.items())
        if users != self._users_for:
            self._users = {cluster_name(user): user for user in users}
            self._users_for = users
        return self._users

    def observe(self, totals: dict[str, int]) -> None:
        """Touch every user whose cluster counted anything since the last read."""
        users = self._cluster_users()
        for cluster, total in totals.items():
            if total > self._seen.get(cluster, 0):
                user = users.get(cluster)
                if user is not None:
                    self._activity.touch(user)
            self._seen[cluster] = total

    async def poll_once(self, http: aiohttp.ClientSession) -> None:
        async with http.get(self._url, params={"filter": _FILTER},
                            timeout=aiohttp.ClientTimeout(total=5)) as resp:
            text = await resp.text()
        self.observe(cluster_totals(text))
        self.polls += 1

    async def _poll(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        await self.poll_once(self._http)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None
