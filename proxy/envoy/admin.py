"""Asks a running Envoy which route configuration it is serving, so hatchway reports a
workspace as Running only once Envoy can route to it (and gone only once it can't)."""

from __future__ import annotations

import aiohttp

ROUTES_VERSION_STAT = "http.hatchway.rds.hatchway_routes.version_text"


class EnvoyAdminUnreachable(Exception):
    """No Envoy answers on the admin address (not started yet, or another host's)."""


async def served_routes_version(session: aiohttp.ClientSession, admin_url: str) -> str:
    """The ``version_info`` of the route file Envoy has applied ("" before any)."""
    url = f"{admin_url}/stats"
    params = {"filter": f"^{ROUTES_VERSION_STAT.replace('.', '[.]')}$", "format": "json"}
    try:
        async with session.get(url, params=params,
                               timeout=aiohttp.ClientTimeout(total=2)) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise EnvoyAdminUnreachable(str(exc) or type(exc).__name__) from None
    for stat in body.get("stats", []):
        if stat.get("name") == ROUTES_VERSION_STAT:
            return str(stat.get("value", ""))
    return ""
