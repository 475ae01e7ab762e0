"""Error answers shaped for who is asking: JSON for API clients, a short page for browsers."""

from __future__ import annotations

import html
from collections.abc import Mapping
from urllib.parse import quote

from aiohttp import web

NOSNIFF = ("X-Content-Type-Options", "nosniff")


class RelayedResponse(web.StreamResponse):
    """A workspace's answer passed on: its headers are the workspace's, not the gateway's."""


class GatewayRequest(web.Request):
    """aiohttp's Request, except that every answer the gateway makes carries
    ``X-Content-Type-Options: nosniff``: its pages, JSON, redirects, ``text/plain`` answers,
    and aiohttp's own answer to a malformed request (text/plain quoting the request, which no
    ``on_response_prepare`` signal sees: that request matched no route). A workspace's answer
    (RelayedResponse) is left as the workspace made it. ``proxy.server`` installs it."""

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        if not isinstance(response, RelayedResponse):
            response.headers.setdefault(*NOSNIFF)
        await super()._prepare_hook(response)


def wants_html(request: web.Request) -> bool:
    """Browsers navigating ask for text/html first; fetch()/scripts don't."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


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
        title = f"{status} {web.Response(status=status).reason}"
        return web.Response(status=status, text=_page(title, message, link),
                            content_type="text/html", headers=headers)
    return web.json_response({"error": message}, status=status, headers=headers)


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
