"""The operator's view under ``<prefix>/admin/``: every workspace (user, option, age, last
activity, pay model, cost so far) and a way to stop any of them, as Hatchery's terminate does
(API key revoked, volume kept).

Who may: a session this gateway checks itself (a trusted peer's ``REMOTE_USER`` is not
enough: an operator's grant is asked with the operator's own token) and the admin grant
(proxy.admission.authz.may_administer: Arborist's ``admin.resource``/``admin.method``, else
``admin.users``). Everyone else gets 401/403 and no data. Stopping is a POST whose Origin, when
a browser sends one, must be the gateway's own. Every action, and every refusal, is one INFO
line naming the actor, the target and the action.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib.resources import files
from typing import Any

from aiohttp import web

from launcher.backend import WorkspaceRecord
from launcher.errors import BackendError, BackendUnavailable
from launcher.paymodels import PayModelError

from .. import responses
from ..admission.authz import AuthzUnavailable, may_administer
from ..admission.sequence import ADMISSION
from ..admission.session import login_url
from ..gateway import GATEWAY, Gateway
from ..sessions.tokens import Identity, SessionError
from . import events
from .failures import RETRY_AFTER
from .hatchery import workspace_status
from .last_activity import gateway_last_ms
from .paymodels import reset_pay_model_when_gone

log = logging.getLogger("hatchway.admin")
_PAGE = files("proxy").joinpath("static/admin.html").read_text(encoding="utf-8")


def _audit(actor: str, action: str, target: str, outcome: str) -> None:
    log.info("admin %s by %s: %s (%s)", action, actor, target or "-", outcome,
             extra={"event": "admin", "actor": actor, "action": action, "target": target,
                    "outcome": outcome})


async def _operator(request: web.Request, gateway: Gateway, action: str) -> Identity | web.Response:
    """The operator making this request, or the answer that refuses it."""
    sessions = gateway.sessions
    settings = gateway.settings
    try:
        token = sessions.token_from(request.headers)
        if not token:
            return responses.unauthenticated(request, "no session: sign in first",
                                             login_url(gateway), settings.public_url)
        who = sessions.cached(token) or await sessions.validate(token)
    except SessionError as exc:
        if exc.status == 401:
            return responses.unauthenticated(request, exc.message, login_url(gateway),
                                             settings.public_url)
        return responses.error(request, exc.status, exc.message)
    try:
        allowed = await may_administer(gateway.authz, settings.admin, who)
    except AuthzUnavailable as exc:
        return responses.error(request, 503, f"authorization service unavailable: {exc}",
                               headers=RETRY_AFTER)
    if not allowed:
        _audit(who.user, action, "", "refused: no admin grant")
        return responses.error(request, 403, f"user {who.user!r} may not administer workspaces")
    return who


async def _pay_model(gateway: Gateway, record: WorkspaceRecord) -> dict[str, Any] | None:
    """The pay model the workspace runs on (its ``bmh_workspace_id``, else the user's
    current one), with what it has used so far; None where a commons has none."""
    pay = gateway.paymodels
    if pay is None or not pay.configured:
        return None
    try:
        found = await pay.for_user(record.user)
    except PayModelError as exc:
        return {"error": str(exc)}
    if found is None:
        return None
    chosen = next((p for p in found.all if p.id and p.id == record.pay_model_id),
                  found.current)
    if chosen is None:
        return None
    return {"id": chosen.id, "name": chosen.name, "status": chosen.status,
            "total_usage": chosen.total_usage, "hard_limit": chosen.hard_limit}


async def _row(gateway: Gateway, record: WorkspaceRecord, now: float) -> dict[str, Any]:
    pay = await _pay_model(gateway, record)
    offered = gateway.hatchery.option(record.option_id) is not None
    return {
        "user": record.user,
        "status": record.status,
        "option": {"id": record.option_id, "name": record.option_name, "offered": offered},
        "started_at": record.started_at or None,
        "age_seconds": int(max(0.0, now - record.started_at)) if record.started_at else None,
        "last_activity": gateway_last_ms(gateway, record.user),
        "pay_model": pay,
        "cost_so_far": pay.get("total_usage") if pay else None,
    }


async def workspaces(request: web.Request) -> web.StreamResponse:
    """``GET <prefix>/admin/workspaces``: ``{"workspaces": [...]}``, one row per workspace."""
    gateway = request.app[GATEWAY]
    who = await _operator(request, gateway, "list")
    if isinstance(who, web.StreamResponse):
        return who
    try:
        records = await gateway.backend.workspaces()
    except BackendUnavailable:
        raise  # 503 with Retry-After (proxy.api.failures)
    except BackendError as exc:
        return responses.error(request, 502, str(exc))
    now = gateway.clock.time()
    rows = await asyncio.gather(*(_row(gateway, r, now) for r in records))
    _audit(who.user, "list", "", f"{len(rows)} workspace(s)")
    return web.json_response({"workspaces": sorted(rows, key=lambda r: r["user"])},
                             headers={"Cache-Control": "no-store"})


async def stop(request: web.Request) -> web.StreamResponse:
    """``POST <prefix>/admin/workspaces/stop?user=<name>``: terminate that user's workspace."""
    gateway = request.app[GATEWAY]
    if request.method != "POST":
        return responses.error(request, 405, "stop with POST", headers={"Allow": "POST"})
    headers = request.headers  # a cross-site form or fetch: the admission sequence's Origin rule
    if not request.app[ADMISSION].origin_allowed(headers.get("Origin"), headers.get("Host", "")):
        return responses.error(request, 403, "cross-origin request refused")
    who = await _operator(request, gateway, "stop")
    if isinstance(who, web.StreamResponse):
        return who
    target = request.query.get("user", "")
    if not target:
        return responses.error(request, 400, "missing 'user' parameter")
    try:  # no token of the user's: the key revokes itself, as a cull's does
        existed = await gateway.backend.terminate(target, None)
    except BackendUnavailable:
        _audit(who.user, "stop", target, "failed: backend unavailable")
        raise
    except BackendError as exc:
        _audit(who.user, "stop", target, f"failed: {exc}")
        return responses.error(request, 500, str(exc))
    if not existed:
        _audit(who.user, "stop", target, "no workspace")
        return responses.error(request, 404, f"{target!r} has no workspace")
    gateway.activity.forget(target)
    if gateway.envoy is not None:
        await gateway.envoy.wait_applied(target)
    reset_pay_model_when_gone(gateway, target, workspace_status)
    events.terminated(request.app, target, "admin", f"by {who.user}")
    _audit(who.user, "stop", target, "stopped")
    return web.json_response({"stopped": target})


async def page(request: web.Request) -> web.StreamResponse:
    """``GET <prefix>/admin/``: the list as a page; its data comes from the JSON above."""
    gateway = request.app[GATEWAY]
    who = await _operator(request, gateway, "view")
    if isinstance(who, web.StreamResponse):
        return who
    config = {"prefix": gateway.settings.prefix.rstrip("/"), "user": who.user}
    blob = json.dumps(config).replace("</", "<\\/")  # cannot end the script element
    return web.Response(text=_PAGE.replace("/*CONFIG*/{}", blob), content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application, prefix: str) -> None:
    p = prefix.rstrip("/")
    app.router.add_get(f"{p}/admin/", page)
    app.router.add_get(f"{p}/admin/workspaces", workspaces)
    app.router.add_route("*", f"{p}/admin/workspaces/stop", stop)
