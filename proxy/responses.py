"""Error answers shaped for who is asking: JSON for API clients, a short page for browsers."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from http import HTTPStatus
from urllib.parse import quote

from aiohttp import web

from .aiohttp_compat import HookedRequest

NOSNIFF = ("X-Content-Type-Options", "nosniff")


class RelayedResponse(web.StreamResponse):
    """A workspace's answer passed on: its headers are the workspace's, not the gateway's."""


class GatewayRequest(HookedRequest):
    """aiohttp's Request, except that every answer the gateway makes carries
    ``X-Content-Type-Options: nosniff``: its pages, JSON, redirects, ``text/plain`` answers,
    and aiohttp's own answer to a malformed request (text/plain quoting the request, which no
    ``on_response_prepare`` signal sees: that request matched no route). A workspace's answer
    (RelayedResponse) is left as the workspace made it. ``proxy.serve.server`` installs it."""

    def before_prepare(self, response: web.StreamResponse) -> None:
        if not isinstance(response, RelayedResponse):
            response.headers.setdefault(*NOSNIFF)


def wants_html(request: web.Request) -> bool:
    """Browsers navigating ask for text/html first; fetch()/scripts don't."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


# Said where no workspace takes a signed-in user's request: by the built-in proxy, and in
# Envoy mode by hatchway's check or Envoy's own config (the same words in both modes).
NO_WORKSPACE = "no workspace — launch one"
LAUNCH_LINK = "Launch one"  # the 404 page's link to the launch page
LAUNCHING = "your workspace is still launching; retry shortly"
LAUNCHING_RETRY_AFTER = "2"


def error_page(status: int, message: str, link: tuple[str, str] | None = None) -> str:
    """The page ``error`` shows a browser (Envoy mode writes the same bytes into its config)."""
    return _page(f"{status} {HTTPStatus(status).phrase}", message, link)


def error_json(message: str) -> str:
    """The JSON ``error`` answers a script with (``web.json_response``'s exact bytes)."""
    return json.dumps({"error": message})


def _page(title: str, message: str, link: tuple[str, str] | None = None) -> str:
    extra = ""
    if link:
        extra = f'<p><a href="{html.escape(link[0])}">{html.escape(link[1])}</a></p>'
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;"
        "max-width:40em;margin:4em auto;padding:0 1em}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{extra}</body></html>"
    )


def error(
    request: web.Request,
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    link: tuple[str, str] | None = None,
) -> web.Response:
    """One error answer: ``{"error": message}`` or, for browsers, a small page."""
    if wants_html(request):
        return web.Response(status=status, text=error_page(status, message, link),
                            content_type="text/html", headers=headers)
    return web.Response(status=status, text=error_json(message),
                        content_type="application/json", headers=headers)


def unauthenticated(
    request: web.Request, message: str, login_url: str, public_url: str = ""
) -> web.Response:
    """401 for API clients; browsers are sent to the login page with the URL they wanted:
    absolute on the configured public origin, else a path. Never built from the request's
    Host, which the client chooses (a login page on another origin would send the user to
    a site of the attacker's choice): set ``public_url`` when ``login_url`` is off-site."""
    if wants_html(request) and request.method in ("GET", "HEAD") and login_url:
        original = public_url.rstrip("/") + str(request.rel_url)
        sep = "&" if "?" in login_url else "?"
        raise web.HTTPFound(f"{login_url}{sep}redirect={quote(original, safe='')}")
    return web.json_response({"error": message}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="hatchway"'})


def hatchery_text(status: int, text: str, *, headers: Mapping[str, str] | None = None
                  ) -> web.Response:
    """An answer as Hatchery's Go ``http.Error`` writes it: the text and a newline, plain
    text, ``nosniff``. Clients (the data-portal, the hatchery-reaper) may match these texts."""
    return web.Response(status=status, text=text + "\n", content_type="text/plain",
                        charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff", **(headers or {})})
