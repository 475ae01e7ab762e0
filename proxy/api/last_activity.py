"""``lastActivityTime`` for ``/status``: the later of the gateway's record (every replica's,
when the backend shares it) and Jupyter's own ``api/status`` ``last_activity``, read through the
workspace's route as Hatchery reads it through Ambassador (only for a Running workspace with an
idle limit, as Hatchery does). Jupyter sees kernel activity the proxy cannot; the proxy sees
traffic to apps Jupyter does not serve."""

from __future__ import annotations

import datetime
import logging

import aiohttp

from launcher.backend import RUNNING, SharedActivity, WorkspaceStatus

from ..gateway import Gateway

log = logging.getLogger("hatchway.activity")
_TIMEOUT = aiohttp.ClientTimeout(total=3)


def gateway_last_ms(gateway: Gateway, user: str) -> int:
    if isinstance(gateway.backend, SharedActivity):  # every replica's (k8s)
        return gateway.backend.last_activity_ms(user)
    return gateway.activity.last_ms(user)


def _headers(user: str, auth: str) -> dict[str, str]:
    return {"REMOTE_USER": user, "Authorization": auth} if auth else {"REMOTE_USER": user}


async def jupyter_last_ms(gateway: Gateway, user: str) -> int:
    """Jupyter's ``last_activity`` (RFC 3339) in epoch ms; 0 when it cannot be read."""
    route = gateway.routes.get(user)
    if route is None or gateway.http is None:
        return 0
    url = (f"{'https' if route.tls else 'http'}://{route.host}:{route.port}"
           f"{route.rewrite.rstrip('/')}/api/status")
    try:
        async with gateway.http.get(url, timeout=_TIMEOUT,
                                    headers=_headers(user, route.auth)) as resp:
            if resp.status != 200:
                return 0
            body = await resp.json(content_type=None)
        stamp = datetime.datetime.fromisoformat(str(body["last_activity"]).replace("Z", "+00:00"))
        return int(stamp.timestamp() * 1000)
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
        log.debug("no last_activity from %s's workspace: %s", user, exc)
        return 0


async def last_activity_ms(gateway: Gateway, user: str, status: WorkspaceStatus) -> int:
    ours = gateway_last_ms(gateway, user)
    if status.status != RUNNING or status.idle_time_limit <= 0:
        return ours
    return max(ours, await jupyter_last_ms(gateway, user))
