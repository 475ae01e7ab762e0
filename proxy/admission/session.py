"""The session check every protected endpoint shares, the admission sequence's first two steps
as aiohttp answers them: token → Identity → gateway-level authorization, or the precise answer
to send instead (401, browser redirect, 403, 503)."""

from __future__ import annotations

import math

from aiohttp import web

from .. import responses
from ..gateway import Gateway
from ..sessions.tokens import Identity, SessionError
from ..sessions.trusted import Ambiguous, trusted_user
from .authz import AuthzUnavailable
from .sequence import ADMISSION


def login_url(gateway: Gateway) -> str:
    configured = gateway.settings.sessions.login_url
    if configured:
        return configured
    if gateway.settings.dev_login is not False and gateway.settings.dev_sessions:
        return gateway.settings.prefix.rstrip("/") + "/login"
    return ""


async def authenticate(request: web.Request, gateway: Gateway) -> Identity | web.Response:
    """Steps 1 and 2 of the admission sequence (``sequence``) for aiohttp's handlers and
    Envoy's check: the caller's Identity, or the response to answer with instead. A trusted
    peer's ``REMOTE_USER`` comes first, as in Hatchery: that peer (Gen3's revproxy) has checked
    the session and Arborist's ``/workspace`` access already; the token it forwards, if any, is
    kept for per-option Arborist checks."""
    admission = request.app[ADMISSION]
    try:
        trusted = trusted_user(request, gateway.trusted)
    except Ambiguous as exc:
        return responses.error(request, 400, str(exc))
    headers = request.headers
    try:
        token = admission.token(headers.getall("Authorization", ()), headers.getall("Cookie", ()))
    except SessionError as exc:  # two different tokens: which user is it?
        return _refuse(request, gateway, exc.status, exc.message)
    if trusted is not None:
        return Identity(user=trusted, token=token or "", expires_at=math.inf)
    if not token:
        return _refuse(request, gateway, 401, "no session: sign in first")
    try:
        identity = await admission.identify(token)
    except SessionError as exc:
        return _refuse(request, gateway, exc.status, exc.message)
    try:
        allowed = await admission.allowed(identity)
    except AuthzUnavailable as exc:
        return responses.error(request, 503, f"authorization service unavailable: {exc}",
                               headers={"Retry-After": "5"})
    if not allowed:
        return responses.error(request, 403, f"user {identity.user!r} may not use workspaces")
    return identity


def _refuse(request: web.Request, gateway: Gateway, status: int, message: str) -> web.Response:
    if status == 401:
        return responses.unauthenticated(request, message, login_url(gateway),
                                         gateway.settings.public_url)
    return responses.error(request, status, message,
                           headers={"Retry-After": "5"} if status == 503 else None)
