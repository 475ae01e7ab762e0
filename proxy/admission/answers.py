"""The answers to a signed-in user's request the admission sequence refused (steps 3 and 4),
for the aiohttp relay and Envoy's check alike: the same status, page or JSON on both paths.
(Steps 1 and 2 answer in ``session.authenticate``.)"""

from __future__ import annotations

from aiohttp import web

from .. import responses
from . import stopped
from .sequence import Verdict


def refusal(request: web.Request, verdict: Verdict, detail: str, *, user: str, prefix: str,
            proxy_prefix: str) -> web.Response:
    """The answer for a refused Placement (``detail`` is its third field); BARE_PREFIX
    raises the redirect to the proxy prefix."""
    if verdict == Verdict.BAD_PATH:
        return responses.error(request, 400, f"bad request path: {detail}")
    if verdict == Verdict.OUTSIDE:
        return responses.error(request, 400, "the request path leaves the workspace proxy")
    if verdict == Verdict.BARE_PREFIX:
        raise web.HTTPFound(proxy_prefix + detail)
    if verdict == Verdict.NO_WORKSPACE:
        return no_workspace(request, user, prefix)
    if verdict == Verdict.LAUNCHING:
        return responses.error(request, 503, responses.LAUNCHING,
                               headers={"Retry-After": responses.LAUNCHING_RETRY_AFTER})
    if verdict == Verdict.CROSS_ORIGIN:
        return responses.error(request, 403, "cross-origin WebSocket refused")
    raise ValueError(f"{verdict!r} is not a refusal")


def no_workspace(request: web.Request, user: str, prefix: str) -> web.Response:
    """410 + Retry-After when this gateway stopped the workspace (``stopped``), else 404 "no
    workspace"; a page for browsers, JSON for scripts."""
    launch_page = prefix.rstrip("/") + "/"
    gone = stopped.answer(request, user, launch_page)
    if gone is not None:  # terminated or culled
        return gone
    return responses.error(request, 404, responses.NO_WORKSPACE,
                           link=(prefix + "/", responses.LAUNCH_LINK))
