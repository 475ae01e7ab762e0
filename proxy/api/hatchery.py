"""Hatchery's API under ``<prefix>/``: options, launch, status, terminate, pay models, version.

Same methods, status codes, bodies and status strings as Hatchery, so an existing Gen3
data-portal and the hatchery-reaper work unchanged; where hatchway answers differently on
purpose, the README's compatibility table says so and why. Identity comes from the session, or
from ``REMOTE_USER`` sent by a trusted peer (proxy.sessions.trusted).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from launcher.backend import LAUNCHING, NOT_FOUND, RUNNING, WorkspaceStatus
from launcher.errors import (
    BackendError,
    BackendUnavailable,
    NameTaken,
    NotIsolated,
    Unsupported,
    WorkspaceExists,
)
from launcher.names import pod_name
from launcher.options import WorkspaceOption
from launcher.paymodels import ABOVE_LIMIT, ACTIVE, PayModel, PayModelError

from .. import __version__, responses
from ..admission.authz import AuthzUnavailable, may_launch_option
from ..gateway import Gateway
from ..sessions.tokens import Identity
from . import events, paymodels
from .failures import RETRY_AFTER
from .last_activity import last_activity_ms
from .paymodels import reset_pay_model_when_gone
from .signed_in import signed_in

log = logging.getLogger("hatchway.api")


async def _may_launch(gateway: Gateway, identity: Identity, option: WorkspaceOption) -> bool:
    async def current_pay_model(who: Identity) -> str | None:
        pay = gateway.paymodels
        if pay is None:
            return None
        try:
            current = await pay.current_pay_model(who.user)
        except PayModelError as exc:  # fail closed: the rule cannot be decided
            raise AuthzUnavailable(f"pay models unavailable: {exc}") from exc
        return None if current is None else current.name

    return await may_launch_option(gateway.authz, identity, option, current_pay_model)


def option_json(opt: WorkspaceOption) -> dict[str, Any]:
    """Hatchery's ``containerOption``: ``gpu`` a bool (never null), ``idle-time-limit`` by the
    rule ``/status`` uses too (launcher.idle)."""
    return opt.summary()


def _invalid_id(option_id: str) -> web.Response:
    # Hatchery answers an unknown id and a forbidden one alike, so ids reveal nothing.
    return responses.hatchery_text(400, f"Invalid 'id' parameter '{option_id}'")


@signed_in()
async def options(request: web.Request, gateway: Gateway, who: Identity) -> web.StreamResponse:
    wanted = request.query.get("id", "")
    if wanted:  # AuthzUnavailable: 503 (proxy.api.failures)
        opt = gateway.hatchery.option(wanted)
        if opt is None or not await _may_launch(gateway, who, opt):
            return _invalid_id(wanted)
        return web.json_response(option_json(opt))
    allowed = [option_json(o) for o in gateway.hatchery.options
               if await _may_launch(gateway, who, o)]
    # Go marshals an empty list as null; the data-portal then shows its "no access" page.
    return web.json_response(allowed or None)


async def _launch_pay_model(request: web.Request, gateway: Gateway,
                            user: str) -> PayModel | web.Response | None:
    """Hatchery's pay-model checks before a launch, in one read: the refusal, or the current
    pay model, whose id is the workspace's ``bmh_workspace_id`` (None: no pay models here,
    the workspace gets a fresh UUID)."""
    pay = gateway.paymodels
    if pay is None or not pay.configured:
        return None
    try:
        everything = await pay.for_user(user)
    except PayModelError as exc:  # Hatchery launches anyway; hatchway fails closed
        return responses.error(request, 503, f"pay models unavailable: {exc}",
                               headers=RETRY_AFTER)
    if everything is None:
        return None
    current = everything.current
    if current is None:
        return responses.hatchery_text(500, "Current Paymodel is not set. Launch forbidden")
    if (current.ecs and current.status != ACTIVE) or current.status == ABOVE_LIMIT:
        return responses.hatchery_text(500, "Paymodel is not active. Launch forbidden")
    if current.ecs or not current.local:
        where = "ECS" if current.ecs else "another account's Kubernetes cluster"
        return responses.hatchery_text(
            500, f"Pay model '{current.name}' runs workspaces in {where}, which hatchway "
                 "does not support. Launch forbidden")
    return current


@signed_in("POST")
async def launch(request: web.Request, gateway: Gateway, who: Identity) -> web.StreamResponse:
    option_id = request.query.get("id", "")
    if not option_id:
        return responses.hatchery_text(400, "Missing 'id' parameter")
    option = gateway.hatchery.option(option_id)
    if option is None:
        return _invalid_id(option_id)
    if not await _may_launch(gateway, who, option):  # AuthzUnavailable: 503 (proxy.api.failures)
        return _invalid_id(option_id)
    if option.unsupported:  # refused, not started half-working (named at start-up too)
        refusal = Unsupported(f"Workspace '{option.name}' needs {option.unsupported}, which "
                              "hatchway does not support. Launch forbidden")
        events.launch_failed(request.app, who.user, option.name, refusal, "unsupported")
        return responses.hatchery_text(500, str(refusal))
    pay_model = await _launch_pay_model(request, gateway, who.user)
    if isinstance(pay_model, web.Response):
        return pay_model
    try:
        await gateway.backend.launch(who.user, option, who.token,
                                     pay_model_id=pay_model.id if pay_model else None)
    except NameTaken as exc:  # another user's name escapes like this one: never theirs
        events.launch_failed(request.app, who.user, option.name, exc, "name_taken")
        return responses.error(request, 409, str(exc))
    except NotIsolated as exc:
        events.launch_failed(request.app, who.user, option.name, exc, "not_isolated")
        return responses.error(request, 403, str(exc))
    except WorkspaceExists as exc:
        return responses.hatchery_text(500, str(exc))
    except BackendUnavailable as exc:
        events.launch_failed(request.app, who.user, option.name, exc, "backend_unavailable")
        raise  # 503 with Retry-After (proxy.api.failures)
    except Exception as exc:  # a backend failure is Hatchery's plain 500, never a traceback
        log.exception("launch failed for %s", who.user)
        events.launch_failed(request.app, who.user, option.name, exc)
        return responses.hatchery_text(500, str(exc))
    gateway.activity.touch(who.user)
    events.launched(request.app, who.user, option.name)  # metrics + one structured line
    return web.Response(text="Success")


async def workspace_status(gateway: Gateway, user: str) -> WorkspaceStatus:
    """The backend's status; Hatchery's ``Not Found`` when the backend cannot say (Hatchery
    answers any Kubernetes API error on the pod so: the portal then offers a launch)."""
    try:
        return await gateway.backend.status(user)
    except BackendError as exc:
        log.warning("status of %s's workspace unknown, answering Not Found: %s", user, exc)
        return WorkspaceStatus(status=NOT_FOUND)


@signed_in()
async def status(request: web.Request, gateway: Gateway, who: Identity) -> web.StreamResponse:
    pay = gateway.paymodels
    if pay is not None and pay.configured:
        try:  # Hatchery reads the pay models first and answers 500 when it cannot
            await pay.for_user(who.user)
        except PayModelError as exc:
            return responses.hatchery_text(500, str(exc))
    st = await workspace_status(gateway, who.user)
    envoy = gateway.envoy
    if st.status == RUNNING and envoy is not None and not envoy.applied(who.user):
        # Running means reachable: Envoy has not loaded the route yet, or refused it
        st.status = LAUNCHING
        st.detail = envoy.route_problem(who.user) or st.detail
    return web.json_response(st.to_json(await last_activity_ms(gateway, who.user, st)))


@signed_in("POST")
async def terminate(request: web.Request, gateway: Gateway, who: Identity) -> web.StreamResponse:
    try:
        existed = await gateway.backend.terminate(who.user, who.token)  # revokes its API key
    except BackendUnavailable:
        raise  # 503 with Retry-After (proxy.api.failures)
    except BackendError as exc:
        return responses.hatchery_text(500, str(exc))
    if not existed:  # Hatchery's words when the pod is not there
        return responses.hatchery_text(
            500, f'a workspace pod was not found: pods "{pod_name(who.user)}" not found')
    gateway.activity.forget(who.user)
    envoy = gateway.envoy
    if envoy is not None:  # answer once Envoy no longer routes to it
        await envoy.wait_applied(who.user)
    reset_pay_model_when_gone(gateway, who.user, workspace_status)
    events.terminated(request.app, who.user, "user")  # metrics, log line, stopped page
    return web.Response(text="Terminated workspace")


async def version(request: web.Request) -> web.StreamResponse:
    return web.json_response({"version": __version__, "commit": ""})


def add_routes(app: web.Application, prefix: str) -> None:
    p = prefix.rstrip("/")
    # Hatchery answers /options and /status whatever the method; launch and terminate say 405.
    app.router.add_route("*", f"{p}/options", options)
    app.router.add_route("*", f"{p}/launch", launch)
    app.router.add_route("*", f"{p}/status", status)
    app.router.add_route("*", f"{p}/terminate", terminate)
    paymodels.add_routes(app, p, workspace_status)
    app.router.add_get(f"{p}/_version", version)
