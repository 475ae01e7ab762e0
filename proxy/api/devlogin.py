"""The dev login page (embedded default only): type a user name, get a session cookie.

It exists so a newcomer can use hatchway in a browser with no Fence. It is on only with dev
sessions and says so on the page; the token it sets is minted by the dev issuer and checked by
the same validator as any Fence token.
"""

from __future__ import annotations

import html
import re

from aiohttp import web

from ..gateway import GATEWAY
from ..sessions.devissuer import DevIssuer

DEV_ISSUER = web.AppKey("dev_issuer", DevIssuer)
_USER = re.compile(r"^[A-Za-z0-9._@+-]{1,128}$")

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Sign in (development) · hatchway</title>
<style>body{{font-family:system-ui,sans-serif;max-width:30em;margin:4em auto;padding:0 1em}}
.dev{{background:#fff3cd;border:1px solid #e0c36a;padding:.5em .8em;border-radius:4px}}
input,button{{font:inherit;padding:.4em}} .err{{color:#c53030}}</style></head><body>
<h1>Sign in</h1>
<p class="dev"><strong>Development mode.</strong> This page issues sessions for any user name.
It is served only when hatchway runs with dev sessions; production uses Fence.</p>
<p class="err">{error}</p>
<form method="post">
<input type="hidden" name="redirect" value="{redirect}">
<label>User name <input name="user" autofocus required pattern="[A-Za-z0-9._@+\\-]{{1,128}}"
 value="{user}"></label> <button type="submit">Sign in</button></form></body></html>"""


def _safe_redirect(target: str, default: str) -> str:
    """Only same-origin paths: the login page must not be an open redirect. Browsers drop
    tabs and newlines from a Location and read a backslash as ``/``, so ``/<tab>/evil.com``
    and ``/<backslash>evil.com`` mean ``//evil.com``, another site: a control character,
    whitespace, backslash or non-ASCII character anywhere refuses the target."""
    if (target.startswith("/") and not target.startswith("//")
            and all("!" <= c <= "~" and c != "\\" for c in target)):
        return target
    return default


async def login_page(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    issuer = request.app[DEV_ISSUER]
    home = gateway.settings.prefix.rstrip("/") + "/"
    if request.method == "POST":
        form = await request.post()
        user = str(form.get("user", "")).strip()
        target = _safe_redirect(str(form.get("redirect", "")), home)
        if not _USER.match(user):
            return _render(400, "Use 1–128 letters, digits or . _ @ + -", target, user)
        token = issuer.mint(user)
        resp = web.HTTPSeeOther(target)
        resp.set_cookie(gateway.settings.sessions.cookie_name, token, httponly=True,
                        samesite="Lax", path="/", max_age=1200,
                        secure=gateway.settings.public_url.startswith("https://"))
        raise resp
    target = _safe_redirect(request.query.get("redirect", ""), home)
    return _render(200, "", target, "")


def _render(status: int, error: str, redirect: str, user: str) -> web.Response:
    return web.Response(status=status, content_type="text/html", text=_PAGE.format(
        error=html.escape(error), redirect=html.escape(redirect), user=html.escape(user)))


async def logout(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    resp = web.HTTPSeeOther(gateway.settings.prefix.rstrip("/") + "/login")
    resp.del_cookie(gateway.settings.sessions.cookie_name, path="/")
    raise resp


async def jwks(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[DEV_ISSUER].jwks())
