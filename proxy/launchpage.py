"""The launch page at ``<prefix>/``: a newcomer's first sight of hatchway. Plain HTML and a
little JavaScript over the Hatchery API; it needs a session like the API does."""

from __future__ import annotations

import json
from importlib.resources import files

from aiohttp import web

from .gateway import GATEWAY
from .session_check import authenticate, login_url

_TEMPLATE = files("proxy").joinpath("static/launch.html").read_text(encoding="utf-8")


async def launch_page(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    who = await authenticate(request, gateway)
    if isinstance(who, web.StreamResponse):
        return who
    settings = gateway.settings
    config = {"prefix": settings.prefix.rstrip("/"), "proxy": settings.proxy_prefix,
              "user": who.user, "dev": settings.dev_sessions, "login": login_url(gateway)}
    # "</" cannot end the script element early once escaped.
    blob = json.dumps(config).replace("</", "<\\/")
    return web.Response(text=_TEMPLATE.replace("/*CONFIG*/{}", blob), content_type="text/html",
                        headers={"Cache-Control": "no-store"})
