"""Handlers that serve a signed-in user (the Hatchery API, its pay-model endpoints, the launch
page, spawn progress): Hatchery's method rule and the session check, said once for all of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from .. import responses
from ..admission.session import authenticate
from ..gateway import GATEWAY, Gateway
from ..sessions.tokens import Identity

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UserHandler = Callable[[web.Request, Gateway, Identity], Awaitable[web.StreamResponse]]


def signed_in(method: str = "", *, other_method: int = 405) -> Callable[[UserHandler], Handler]:
    """``handler(request, gateway, identity)`` as an aiohttp handler. With ``method``, any other
    method is answered first, as Hatchery does, in its plain text (405, or ``other_method``:
    its pay-model readers say 404); then a caller without a session gets the session check's
    answer (401, or the login redirect)."""

    def wrap(handler: UserHandler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            if method and request.method != method:
                return responses.hatchery_text(other_method, HTTPStatus(other_method).phrase)
            gateway = request.app[GATEWAY]
            who = await authenticate(request, gateway)
            if isinstance(who, web.StreamResponse):
                return who
            return await handler(request, gateway, who)

        return checked

    return wrap
