"""The proxy endpoint, ``<prefix>/proxy/…``: the admission sequence (``admission.sequence``:
session → authorization → route → Origin), then the relay (HTTP stream or WebSocket).

The workspace is chosen by the session's user alone, never by anything in the path or headers,
so no spelling of a request can reach another user's workspace.
"""

from __future__ import annotations

from functools import partial

import aiohttp
from aiohttp import web
from yarl import URL

from ... import responses
from ...admission.answers import refusal
from ...admission.sequence import ADMISSION, ADMIT
from ...admission.session import authenticate
from ...gateway import GATEWAY
from ..headers import names_framing, upstream_request_headers
from .http import UpstreamBroken, UpstreamFailed, relay_http
from .websocket import relay_websocket

CLIENT = web.AppKey("upstream_client", aiohttp.ClientSession)


def _no_touch() -> None:
    pass


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
    identity = await authenticate(request, gateway)  # admission steps 1 and 2
    if isinstance(identity, web.StreamResponse):
        return identity
    user = identity.user
    is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
    verdict, route, target = request.app[ADMISSION].place(
        user, raw_target, websocket=is_ws, origin=request.headers.get("Origin"),
        host=request.headers.get("Host", ""))
    if verdict is not ADMIT or route is None:
        return refusal(request, verdict, target, user=user, prefix=settings.prefix,
                       proxy_prefix=settings.proxy_prefix)
    # a REMOTE_USER-only caller (the hatchery-reaper) is not the user at work
    touch = partial(gateway.activity.touch, user) if identity.token else _no_touch
    touch()
    scheme = "https" if route.tls else "http"
    # encoded=True: the target goes out byte for byte as normalised, never re-quoted.
    url = URL(f"{scheme}://{route.host}:{route.port}{target}", encoded=True)
    headers = upstream_request_headers(
        request.headers, user=user, client_ip=request.remote or "", scheme=request.scheme,
        prefix=settings.proxy_prefix, session_token=identity.token,
        cookie_name=settings.sessions.cookie_name, websocket=is_ws, route_auth=route.auth,
    )
    client = request.app[CLIENT]
    try:
        if is_ws:
            return await relay_websocket(request, client, url, headers, touch,
                                         settings.websocket_max_message_bytes)
        return await relay_http(request, client, url, headers)
    except UpstreamFailed as exc:
        return responses.error(request, 502, f"your workspace did not answer: {exc}")
    except UpstreamBroken as exc:
        return responses.error(request, 502, f"your workspace sent a malformed answer: {exc}")
