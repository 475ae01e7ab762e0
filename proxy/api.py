"""Hatchery's API under ``<prefix>/``: options, launch, status, terminate, pay models, health.

Same methods, status codes, bodies and status strings as Hatchery, so an existing Gen3
data-portal works unchanged. Identity comes from the session (not a ``REMOTE_USER`` header).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from launcher.backend import LAUNCHING, RUNNING
from launcher.errors import BackendUnavailable, NameTaken, NotIsolated, WorkspaceExists

from . import __version__, responses
from .authz import AuthzUnavailable
from .gateway import GATEWAY, Gateway
from .session_check import authenticate
from .sessions import Identity

log = logging.getLogger("hatchway.api")


async def _who(request: web.Request) -> tuple[Gateway, Identity | web.Response]:
    gateway = request.app[GATEWAY]
    return gateway, await authenticate(request, gateway)


async def _may_launch(gateway: Gateway, identity: Identity, paths: list[str]) -> bool:
    return not paths or await gateway.authz.may_launch(identity, paths)


def _backend_unavailable(request: web.Request, exc: Exception) -> web.Response:
    return responses.error(request, 503, f"workspace backend unavailable: {exc}",
                           headers={"Retry-After": "5"})


async def options(request: web.Request) -> web.StreamResponse:
    gateway, who = await _who(request)
    if isinstance(who, web.StreamResponse):
        return who
    try:
        allowed = [o for o in gateway.hatchery.options
                   if await _may_launch(gateway, who, o.resource_paths)]
    except AuthzUnavailable as exc:
        return responses.error(request, 503, f"authorization service unavailable: {exc}")
    wanted = request.query.get("id")
    if wanted is not None:
        for opt in allowed:
            if opt.id == wanted:
                return web.json_response(opt.summary())
        return responses.error(request, 404, f"no workspace option with id {wanted!r}")
    return web.json_response([o.summary() for o in allowed])


async def launch(request: web.Request) -> web.StreamResponse:
    if request.method != "POST":
        return responses.error(request, 405, "launch needs POST",
                               headers={"Allow": "POST"})
    gateway, who = await _who(request)
    if isinstance(who, web.StreamResponse):
        return who
    option_id = request.query.get("id", "")
    if not option_id:
        return web.Response(status=400, text="Missing 'id' parameter")
    option = gateway.hatchery.option(option_id)
    if option is None:
        return web.Response(status=400, text=f"Invalid 'id' parameter '{option_id}'")
    try:
        if not await _may_launch(gateway, who, option.resource_paths):
            return web.Response(status=400, text=f"Invalid 'id' parameter '{option_id}'")
    except AuthzUnavailable as exc:
        return responses.error(request, 503, f"authorization service unavailable: {exc}")
    try:
        await gateway.backend.launch(who.user, option, who.token)
    except NameTaken as exc:  # another user's name escapes like this one: never theirs
        return responses.error(request, 409, str(exc))
    except NotIsolated as exc:
        return responses.error(request, 403, str(exc))
    except WorkspaceExists as exc:
        return web.Response(status=500, text=f"Error: {exc}")
    except BackendUnavailable as exc:
        return _backend_unavailable(request, exc)
    except Exception as exc:  # a backend failure is the user's 500, never a traceback
        log.exception("launch failed for %s", who.user)
        return web.Response(status=500, text=f"Error: {exc}")
    gateway.activity.touch(who.user)
    log.info("launched %r for %s", option.name, who.user)
    return web.Response(text="Success")


async def status(request: web.Request) -> web.StreamResponse:
    gateway, who = await _who(request)
    if isinstance(who, web.StreamResponse):
        return who
    try:
        st = await gateway.backend.status(who.user)
    except BackendUnavailable as exc:
        return _backend_unavailable(request, exc)
    envoy = gateway.extras.get("envoy")
    if st.status == RUNNING and envoy is not None and not envoy.applied(who.user):
        st.status = LAUNCHING  # Running means reachable: Envoy has not loaded the route yet
    return web.json_response(st.to_json(gateway.activity.last_ms(who.user)))


async def terminate(request: web.Request) -> web.StreamResponse:
    if request.method != "POST":
        return responses.error(request, 405, "terminate needs POST", headers={"Allow": "POST"})
    gateway, who = await _who(request)
    if isinstance(who, web.StreamResponse):
        return who
    try:
        existed = await gateway.backend.terminate(who.user)
    except BackendUnavailable as exc:
        return _backend_unavailable(request, exc)
    if not existed:
        return responses.error(request, 404, "no workspace to terminate")
    gateway.activity.forget(who.user)
    envoy = gateway.extras.get("envoy")
    if envoy is not None:  # answer once Envoy no longer routes to it
        await envoy.wait_applied(who.user)
    log.info("terminated the workspace of %s", who.user)
    return web.Response(text="Terminated workspace")


def _paymodels_not_set(
    methods: tuple[str, ...]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method not in methods:
            return responses.error(request, 405, f"use {' or '.join(methods)}",
                                   headers={"Allow": ", ".join(methods)})
        _, who = await _who(request)
        if isinstance(who, web.StreamResponse):
            return who
        return web.json_response({"error": "pay model not set: none are configured"},
                                 status=404)
    return handler


async def health(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    body: dict[str, object] = {"status": "Healthy", "routes": len(gateway.routes),
                               "backend": gateway.backend.name, "mode": gateway.settings.mode}
    status_code = 200
    report = getattr(gateway.backend, "health", None)
    if report is not None:
        detail = report()
        body["backend_health"] = detail
        if detail.get("healthy") is False:
            body["status"] = "Unhealthy"
            status_code = 503
    envoy = gateway.extras.get("envoy")
    if envoy is not None:
        body["envoy_config"] = envoy.last_error or "ok"
    return web.json_response(body, status=status_code)


async def version(request: web.Request) -> web.StreamResponse:
    return web.json_response({"version": __version__, "commit": ""})


def add_routes(app: web.Application, prefix: str) -> None:
    p = prefix.rstrip("/")
    app.router.add_get(f"{p}/options", options)
    app.router.add_route("*", f"{p}/launch", launch)
    app.router.add_get(f"{p}/status", status)
    app.router.add_route("*", f"{p}/terminate", terminate)
    app.router.add_route("*", f"{p}/paymodels", _paymodels_not_set(("GET",)))
    app.router.add_route("*", f"{p}/allpaymodels", _paymodels_not_set(("GET",)))
    app.router.add_route("*", f"{p}/setpaymodel", _paymodels_not_set(("POST",)))
    app.router.add_route("*", f"{p}/resetpaymodels", _paymodels_not_set(("POST",)))
    app.router.add_get(f"{p}/_status", health)
    app.router.add_get(f"{p}/_version", version)
