"""The proxy endpoint, ``<prefix>/proxy/…``: session → authorization → route → relay.

The workspace is chosen by the session's user alone, never by anything in the path or headers,
so no spelling of a request can reach another user's workspace.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from launcher.routes import Route

from ... import responses
from ...admission import stopped
from ...admission.paths import PathError, normalize_path, split_target
from ...admission.session import authenticate
from ...gateway import GATEWAY, Gateway
from ...settings import Settings
from ..headers import names_framing, upstream_request_headers
from .http import UpstreamBroken, UpstreamFailed, relay_http
from .websocket import relay_websocket

CLIENT = web.AppKey("upstream_client", aiohttp.ClientSession)


def _no_touch() -> None:
    pass


def request_origin_allowed(gateway: Gateway, request: web.Request) -> bool:
    """``origin_allowed`` for an aiohttp request (builtin mode's relay and Envoy's check)."""
    return origin_allowed(gateway.settings, request.headers.get("Origin"),
                          request.headers.get("Host", ""))


def origin_allowed(settings: Settings, origin: str | None, host: str) -> bool:
    """Cookie-authenticated WebSockets are open to cross-site hijacking unless the Origin is
    the gateway's own (or explicitly allowed). Clients that send no Origin are not browsers.
    Shared by this handler and the fast path (proxy.fastpath)."""
    if origin is None:
        return True
    if origin in settings.allowed_origins:
        return True
    own = settings.public_url
    if own:
        parts = urlsplit(own)
        return origin == f"{parts.scheme}://{parts.netloc}"
    parsed = urlsplit(origin)
    return bool(host) and parsed.netloc == host and parsed.scheme in ("http", "https")


def unrouted(request: web.Request, settings: Settings, user: str,
             route: Route | None) -> web.Response:
    """What a signed-in user whose workspace cannot take the request sees: 410 + Retry-After
    when this gateway stopped it (proxy.stopped), 404 when there is none, 503 while it
    launches; a page for browsers, JSON for scripts. Envoy mode's check answers with this
    too (proxy.envoy.ext_authz), so both modes show the same pages."""
    if route is None:
        gone = stopped.answer(request, user, settings.prefix.rstrip("/") + "/")
        if gone is not None:  # terminated or culled
            return gone
        return responses.error(request, 404, responses.NO_WORKSPACE,
                               link=(settings.prefix + "/", responses.LAUNCH_LINK))
    return responses.error(request, 503, responses.LAUNCHING,
                           headers={"Retry-After": responses.LAUNCHING_RETRY_AFTER})


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    """``<prefix>/proxy/…`` on the gateway's own listener."""
    return await _relay(request, request.raw_path)


async def stripped_proxy_handler(request: web.Request) -> web.StreamResponse:
    """``/…`` on the ambassador listener: the stock revproxy has stripped ``<prefix>/proxy/``
    (as it does for ambassador-service); the workspace still sees its full path."""
    prefix = request.app[GATEWAY].settings.proxy_prefix
    raw = request.raw_path
    return await _relay(request, prefix.rstrip("/") + (raw if raw.startswith("/") else "/"))


async def _relay(request: web.Request, raw_target: str) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    settings = gateway.settings
    if names_framing(request.headers):
        # The fast path refuses these too (it hands them here): see headers.FRAMING.
        response = responses.error(request, 400, "the Connection header names Content-Length, "
                                   "Transfer-Encoding or Host")
        response.force_close()
        return response
    identity = await authenticate(request, gateway)
    if isinstance(identity, web.StreamResponse):
        return identity
    try:
        path, query = split_target(raw_target)
        path = normalize_path(path)
    except PathError as exc:
        return responses.error(request, 400, f"bad request path: {exc}")
    prefix = settings.proxy_prefix
    if not path.startswith(prefix):
        if path + "/" == prefix:
            raise web.HTTPFound(prefix + query)
        return responses.error(request, 400, "the request path leaves the workspace proxy")
    user = identity.user
    route = gateway.routes.get(user)
    if route is None or not route.ready:
        return unrouted(request, settings, user, route)
    # a REMOTE_USER-only caller (the hatchery-reaper) is not the user at work
    touch = partial(gateway.activity.touch, user) if identity.token else _no_touch
    touch()
    target = f"{route.rewrite}{path[len(prefix):]}{query}"
    scheme = "https" if route.tls else "http"
    # encoded=True: the target goes out byte for byte as normalised, never re-quoted.
    url = URL(f"{scheme}://{route.host}:{route.port}{target}", encoded=True)
    is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
    headers = upstream_request_headers(
        request.headers, user=user, client_ip=request.remote or "", scheme=request.scheme,
        prefix=prefix, session_token=identity.token, cookie_name=settings.sessions.cookie_name,
        websocket=is_ws, route_auth=route.auth,
    )
    client = request.app[CLIENT]
    try:
        if is_ws:
            if not request_origin_allowed(gateway, request):
                return responses.error(request, 403, "cross-origin WebSocket refused")
            return await relay_websocket(request, client, url, headers, touch,
                                         settings.websocket_max_message_bytes)
        return await relay_http(request, client, url, headers)
    except UpstreamFailed as exc:
        return responses.error(request, 502, f"your workspace did not answer: {exc}")
    except UpstreamBroken as exc:
        return responses.error(request, 502, f"your workspace sent a malformed answer: {exc}")
