"""Every aiohttp internal hatchway relies on, in this one module, each with why.

aiohttp offers no public way to do the things below, so they use private names; nothing else in
the project touches one. pyproject caps ``aiohttp<4``, and ``HOOKS`` lists each name so that
``tests/test_aiohttp_compat.py`` fails, naming the hook, on the aiohttp release that renames or
drops it (beside tests that watch each hook work on a real socket):

* ``Application._make_request(..., _cls=)``: the class of every request a server parses.
  ``web.Server.request_factory`` is public, but making an app's request without this would mean
  copying aiohttp's constructor call (``use_request_class``).
* ``BaseRequest._prepare_hook(response)``: called for every response prepared for a request,
  aiohttp's own answer to a malformed request included, which no ``on_response_prepare`` signal
  sees (that request matched no app). ``HookedRequest.before_prepare`` is the public face.
* ``RequestHandler._request_in_progress``: whether a connection is serving a request. The drain
  closes connections that are between requests, and aiohttp has no public "idle" flag
  (``request_in_progress``).
* ``aiohttp._websocket.helpers.websocket_mask``: aiohttp's C XOR, ~50x faster than Python on
  64 KiB, for the benchmark's WebSocket client (``websocket_mask``, None if it moved).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable

from aiohttp import web, web_protocol


def use_request_class(server: web.Server, app: web.Application,
                      cls: type[web.Request]) -> None:
    """Every request ``server`` parses for ``app`` from now on is a ``cls`` (read by each
    protocol the server makes afterwards)."""
    server.request_factory = functools.partial(app._make_request, _cls=cls)


class HookedRequest(web.Request):
    """A Request that sees every response prepared for it, before its headers are sent."""

    def before_prepare(self, response: web.StreamResponse) -> None:
        """Override: called once per response, with its headers still open."""

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        self.before_prepare(response)
        await super()._prepare_hook(response)


def request_in_progress(conn: web_protocol.RequestHandler) -> bool:
    """Whether ``conn`` is serving a request. When aiohttp no longer says, the answer is True:
    a connection wrongly thought busy is only drained late, one thought idle would be cut."""
    return bool(getattr(conn, "_request_in_progress", True))


def websocket_mask() -> Callable[[bytes, bytearray], None] | None:
    """aiohttp's C ``websocket_mask(mask, buffer)`` (XOR in place), or None if it moved."""
    try:
        helpers = importlib.import_module("aiohttp._websocket.helpers")
    except ImportError:
        return None
    mask: Callable[[bytes, bytearray], None] | None = getattr(helpers, "websocket_mask", None)
    return mask


def _make_request_takes_cls() -> bool:
    make = getattr(web.Application, "_make_request", None)
    return make is not None and "_cls" in inspect.signature(make).parameters


def _has_prepare_hook() -> bool:
    return inspect.iscoroutinefunction(getattr(web.BaseRequest, "_prepare_hook", None))


def _handler_tracks_requests() -> bool:
    return "_request_in_progress" in getattr(web_protocol.RequestHandler, "__slots__", ())


# name → whether this aiohttp still has it, as hatchway uses it
HOOKS: dict[str, Callable[[], bool]] = {
    "web.Application._make_request(_cls=)": _make_request_takes_cls,
    "web.BaseRequest._prepare_hook": _has_prepare_hook,
    "web_protocol.RequestHandler._request_in_progress": _handler_tracks_requests,
    "aiohttp._websocket.helpers.websocket_mask": lambda: websocket_mask() is not None,
}


def missing_hooks() -> list[str]:
    """The hooks this aiohttp lacks (empty when all is well)."""
    return [name for name, present in HOOKS.items() if not present()]
