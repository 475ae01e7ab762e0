"""Asks a running Envoy which route and cluster files it serves, and how many it refused, so
hatchway reports a workspace as Running only once Envoy can route to it (and gone only once it
can't), and says so when Envoy refused a file instead."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

_RDS = "http.hatchway.rds.hatchway_routes."
_CDS = "cluster_manager.cds."
_WANTED = {f"{_RDS}version_text", f"{_RDS}update_rejected",
           f"{_CDS}version_text", f"{_CDS}update_rejected"}
_FILTER = "^(http[.]hatchway[.]rds[.]hatchway_routes|cluster_manager[.]cds)[.]" \
          "(version_text|update_rejected)$"


class EnvoyAdminUnreachable(Exception):
    """No Envoy answers on the admin address (not started yet, or another host's)."""


@dataclass(frozen=True, slots=True)
class Served:
    """What Envoy's admin says about hatchway's two dynamic files."""

    routes_version: str  # version_info of the route file in effect ("" before any)
    clusters_version: str  # and of the cluster file
    refused: int  # files Envoy refused so far (route and cluster files; its log says why)


async def served(session: aiohttp.ClientSession, admin_url: str) -> Served:
    """One look at Envoy's ``/stats`` for the route and cluster subscriptions."""
    try:
        async with session.get(f"{admin_url}/stats", params={"filter": _FILTER, "format": "json"},
                               timeout=aiohttp.ClientTimeout(total=2)) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise EnvoyAdminUnreachable(str(exc) or type(exc).__name__) from None
    stats = {s["name"]: s.get("value", "") for s in body.get("stats", [])
             if isinstance(s, dict) and s.get("name") in _WANTED}
    refused = sum(int(stats.get(f"{p}update_rejected", 0) or 0) for p in (_RDS, _CDS))
    return Served(str(stats.get(f"{_RDS}version_text", "")),
                  str(stats.get(f"{_CDS}version_text", "")), refused)
