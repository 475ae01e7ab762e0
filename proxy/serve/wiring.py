"""Wiring for running hatchway in production, in one place so the app and server each carry a
single hook line: metrics (``observe.metrics``), readiness (``serve.health``), the drain
(``serve.drain``), the workspace-stopped answer (``admission.stopped``), the favicon, the access
log and the follower that counts failed launches (the launcher's events themselves are
``api.events``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from launcher.backend import NOT_FOUND, RUNNING, STOPPED
from launcher.tasks import cancel_and_wait

from ..admission import stopped
from ..admission.sequence import ADMISSION
from ..api import events
from ..gateway import GATEWAY
from ..observe import logs, metrics
from ..sessions.jwks import KeyStore
from . import health
from .drain import DRAIN, Drain

if TYPE_CHECKING:
    from ..relay.fast import FastPath
    from ..relay.fast.exchange import Exchange
    from ..settings import Settings

FOLLOW_SECONDS = 5.0  # how often pending launches are checked for an early failure
LAUNCH_GIVE_UP_SECONDS = 900.0
_FAVICON = files("proxy").joinpath("static/favicon.ico").read_bytes()


async def favicon(request: web.Request) -> web.Response:
    return web.Response(body=_FAVICON, content_type="image/x-icon",
                        headers={"Cache-Control": "public, max-age=86400"})


def install(app: web.Application, settings: Settings, keys: KeyStore) -> None:
    """Everything build_app adds for operations (before the app starts)."""
    prefix = settings.prefix.rstrip("/")
    m = app[metrics.METRICS] = metrics.Metrics()
    drain = app[DRAIN] = Drain()
    app[health.KEYS] = keys
    app[stopped.STOPPED] = stopped.StoppedWorkspaces()
    app[events.RUNNING_OPTIONS] = {}
    app.middlewares.append(metrics.middleware_for(m, settings.proxy_prefix,
                                                  f"{prefix}/_ext_authz"))
    if settings.access_log:
        app.middlewares.append(access_middleware(settings.proxy_prefix))
    app.on_response_prepare.append(metrics.on_prepare_for(m))
    app.on_response_prepare.append(drain.on_prepare)
    app.cleanup_ctx.append(_background)


def add_routes(app: web.Application, mount: str) -> None:
    """Liveness, readiness and the favicon at ``mount`` (build_app mounts them with the API)."""
    app.router.add_get(f"{mount}/_status", health.status)
    app.router.add_get(f"{mount}/_ready", health.ready)
    app.router.add_get(f"{mount}/favicon.ico", favicon)


def trace_configs(app: web.Application, settings: Settings) -> list[aiohttp.TraceConfig]:
    """Service-call latency for the gateway's JWKS/Arborist/Fence client."""
    services = {"jwks": settings.sessions.jwks_url, "arborist": settings.authz.arborist_url}
    return [metrics.trace_config(app[metrics.METRICS], services)]


async def _background(app: web.Application) -> AsyncIterator[None]:
    app[health.KEYS].preload_soon()
    task = asyncio.create_task(_follow_launches(app), name="launch follower")
    yield
    await cancel_and_wait(task)


async def _follow_launches(app: web.Application) -> None:
    """Pending launches whose status says they failed (image pull, crash loop, unschedulable)
    are counted by cause; one never Running in LAUNCH_GIVE_UP_SECONDS as a timeout."""
    m = app[metrics.METRICS]
    backend = app[GATEWAY].backend
    while True:
        await asyncio.sleep(FOLLOW_SECONDS)
        for user, began in m.pending_items():
            try:
                st = await backend.status(user)
            except Exception:  # noqa: BLE001 - the next round asks again
                continue
            if st.status == RUNNING:
                continue  # the route listener times it
            if st.status in (STOPPED, NOT_FOUND) or st.detail:
                m.pending_failed(user, st.detail or st.status)
            elif time.monotonic() - began > LAUNCH_GIVE_UP_SECONDS:
                m.pending_failed(user, "timed out")


def attach_fast_path(app: web.Application, fast: Callable[[], FastPath | None]) -> None:
    gateway = app.get(GATEWAY)
    m = app.get(metrics.METRICS)
    if gateway is not None and m is not None and m.collector is None:
        m.attach(gateway, fast)
    path = fast()
    if path is not None and gateway is not None and gateway.settings.access_log:
        path.access = _fast_access


def _fast_access(x: Exchange, up: Any) -> None:
    """An access-log line for a request the fast path relayed (bytes: the answer's
    Content-Length; -1 when it was chunked or ended by closing)."""
    req, route, resp = x.req, x.route, up.resp
    logs.access_line(
        user=x.user, method=req.method.decode("latin-1"), path=req.target.decode("latin-1"),
        status=resp.status if resp is not None else 0,
        bytes_sent=resp.content_length if resp is not None else -1,
        seconds=(time.monotonic_ns() - x.began) / 1e9,
        route=f"{route.host}:{route.port}" if route is not None else "-", via="fast")


# -- the opt-in access log (aiohttp path) --------------------------------------------------
def access_middleware(proxy_prefix: str) -> Any:
    @web.middleware
    async def access(request: web.Request, handler: metrics.Handler) -> web.StreamResponse:
        if not request.path.startswith(proxy_prefix):
            return await handler(request)
        began = time.monotonic()
        status = 500
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            gateway = request.app[GATEWAY]
            token = None
            with contextlib.suppress(Exception):
                token = gateway.sessions.token_from(request.headers)
            who = gateway.sessions.cached(token) if token else None
            user = who.user if who is not None else ""
            route = gateway.routes.get(user) if user else None
            logs.access_line(
                user=user, method=request.method, path=request.path, status=status,
                bytes_sent=response.body_length if response is not None and response.prepared
                else 0, seconds=time.monotonic() - began,
                route=f"{route.host}:{route.port}" if route is not None else "-", via="aiohttp")

    return access


def share_with_ambassador(main: web.Application, app: web.Application) -> None:
    """The ambassador listener admits as the main app does, counts its proxied requests in the
    main app's metrics and its WebSockets are drained with the others'."""
    app[ADMISSION] = main[ADMISSION]
    m = main.get(metrics.METRICS)
    if m is not None:
        prefix = main[GATEWAY].settings.proxy_prefix
        app.middlewares.append(metrics.middleware_for(m, prefix, "\0", stripped=True))
        app.on_response_prepare.append(metrics.on_prepare_for(m))
    drain = main.get(DRAIN)
    if drain is not None:
        app.on_response_prepare.append(drain.on_prepare)
