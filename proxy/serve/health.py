"""Liveness and readiness, kept apart.

* ``/_status`` (liveness): 200 unless the process is broken in a way a restart fixes (a watch
  loop has died); it also names every readiness check and which one fails, for people.
* ``/_ready`` (readiness): 200 only when this replica can serve users now: the route table has
  been synced from the watch at least once (a fresh replica would answer 404 "no workspace" to
  everyone), the session keys are loaded (it would answer 503 to everyone), and it is not
  draining after a SIGTERM (so endpoints drop it before the listener closes). An unreachable
  Kubernetes API after the first sync does not fail readiness: routes keep serving from the
  cache, and taking every replica out of the Service would cut users off for nothing.
  Likewise in Envoy mode, when Envoy refused hatchway's latest route or cluster file (or has not
  taken it): ``/_ready`` says so under ``degraded`` and stays 200, since every replica's Envoy
  reads the same table and would refuse it alike, while the workspaces it already routes keep
  working; each affected workspace's ``/status`` says so too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..gateway import GATEWAY, Gateway
from ..sessions.jwks import KeyStore
from .drain import DRAIN

KEYS: web.AppKey[KeyStore] = web.AppKey("session_keys", KeyStore)
OK = "ok"


def _routes_synced(gateway: Gateway) -> str:
    """The Kubernetes backend's reflectors have listed once (other backends own their
    routes and are synced from the start)."""
    waiting = gateway.backend.routes_pending()
    if waiting:
        return "routes not synced yet from the watch: " + ", ".join(waiting)
    return OK


def _keys_loaded(app: web.Application) -> str:
    keys = app.get(KEYS)
    if keys is None or keys.loaded():
        return OK
    keys.preload_soon()  # rate-limited by the store: a readiness probe never floods Fence
    return "session keys not loaded" + (f": {keys.failure}" if keys.failure else "")


def checks(app: web.Application) -> dict[str, str]:
    """Each readiness check: ``ok`` or why not."""
    gateway = app[GATEWAY]
    drain = app.get(DRAIN)
    return {
        "routes": _routes_synced(gateway),
        "keys": _keys_loaded(app),
        "draining": "draining after SIGTERM" if drain is not None and drain.draining else OK,
    }


def degraded(app: web.Application) -> dict[str, str]:
    """What works less well than it should without making the replica unready."""
    envoy = app[GATEWAY].envoy
    problem = envoy.problem if envoy is not None else ""
    return {"envoy": problem} if problem else {}


def readiness(app: web.Application) -> tuple[bool, dict[str, Any]]:
    results = checks(app)
    failing = {k: v for k, v in results.items() if v != OK}
    notes = degraded(app)
    return not failing, {"ready": not failing, "checks": results,
                         **({"failing": sorted(failing)} if failing else {}),
                         **({"degraded": notes} if notes else {})}


async def ready(request: web.Request) -> web.StreamResponse:
    """``/_ready``: 200 ready, else 503 naming the failing checks."""
    is_ready, body = readiness(request.app)
    return web.json_response(body, status=200 if is_ready else 503,
                             headers={"Cache-Control": "no-store"})


async def status(request: web.Request) -> web.StreamResponse:
    """``/_status``: Hatchery's health path; 503 only when the backend says it is broken."""
    gateway = request.app[GATEWAY]
    body: dict[str, object] = {"status": "Healthy", "routes": len(gateway.routes),
                               "backend": gateway.backend.name, "mode": gateway.settings.mode}
    status_code = 200
    detail = gateway.backend.health()
    if detail is not None:
        body["backend_health"] = detail
        if detail.get("healthy") is False:
            body["status"] = "Unhealthy"
            status_code = 503
    envoy = gateway.envoy
    if envoy is not None:
        body["envoy_config"] = envoy.problem or "ok"
    if gateway.hatchery_reload is not None:  # a broken hatchery.json says why (still healthy)
        body["hatchery_config"] = gateway.hatchery_reload.health()
    fast = gateway.fast_path
    if fast is not None:  # which path answered (tests prove the fast path is taken)
        body["fast_path"] = {"relayed": fast.relayed, "handed_off": fast.handed_off}
    body.update(readiness(request.app)[1])  # which readiness check fails (/_ready)
    return web.json_response(body, status=status_code)
