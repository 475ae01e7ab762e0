"""The launch page at ``<prefix>/``: a newcomer's first sight of hatchway. Plain HTML and a
little JavaScript over the Hatchery API; it needs a session like the API does."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from aiohttp import web

from launcher.paymodels import PayModelError

from ..admission.session import login_url
from ..gateway import Gateway
from ..sessions.tokens import Identity
from .events import running_option
from .signed_in import signed_in

_TEMPLATE = files("proxy").joinpath("static/launch.html").read_text(encoding="utf-8")


async def _current_pay_model(gateway: Gateway, user: str) -> Any:
    """The user's current pay model as ``/paymodels`` shows it; None when there is none or
    it cannot be read (the page still works; launching will say why)."""
    pay = gateway.paymodels
    if pay is None or not pay.configured:
        return None
    try:
        current = await pay.current_pay_model(user)
    except PayModelError:
        return None
    return None if current is None else json.loads(current.to_json())


@signed_in()
async def launch_page(request: web.Request, gateway: Gateway,
                      who: Identity) -> web.StreamResponse:
    settings = gateway.settings
    config = {"prefix": settings.prefix.rstrip("/"), "proxy": settings.proxy_prefix,
              "user": who.user, "dev": settings.dev_sessions, "login": login_url(gateway),
              "payModel": await _current_pay_model(gateway, who.user),
              "option": running_option(request.app, who.user)}  # proxy.api.events
    # "</" cannot end the script element early once escaped.
    blob = json.dumps(config).replace("</", "<\\/")
    return web.Response(text=_TEMPLATE.replace("/*CONFIG*/{}", blob), content_type="text/html",
                        headers={"Cache-Control": "no-store"})
