"""Errors mapped to answers once, for every handler: a backend or the authorization service
that cannot be reached is a 503 with ``Retry-After`` (the client may simply try again); any
other backend failure is a 500 that says what went wrong (JSON, or a short page for a browser,
as every error answer: ``responses.error``), never aiohttp's bare 500 or a traceback.
Handlers that must answer as Hatchery does (its plain-text 500s) catch their errors themselves
first; everything else is left to this middleware.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from launcher.errors import BackendError, BackendUnavailable

from .. import responses
from ..admission.authz import AuthzUnavailable

log = logging.getLogger("hatchway.api")
RETRY_AFTER = {"Retry-After": "5"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def map_failures(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BackendUnavailable as exc:
        return responses.error(request, 503, f"workspace backend unavailable: {exc}",
                               headers=RETRY_AFTER)
    except AuthzUnavailable as exc:
        return responses.error(request, 503, f"authorization service unavailable: {exc}",
                               headers=RETRY_AFTER)
    except BackendError as exc:
        log.warning("%s %s: backend error: %s", request.method, request.path, exc)
        return responses.error(request, 500, f"workspace backend error: {exc}")
