"""Hatchery's pay-model endpoints: ``/paymodels``, ``/allpaymodels``, ``/setpaymodel``,
``/resetpaymodels``, with Hatchery's methods, codes, texts and JSON (hatchery.go).

The data-portal reads ``/allpaymodels`` (``{current_pay_model, all_pay_models}``) and calls
``/setpaymodel?id=``; the hatchery-reaper reads ``/paymodels`` ``request_status``. With no pay
models configured every answer is Hatchery's "not set".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from launcher.backend import NOT_FOUND, WorkspaceStatus
from launcher.paymodels import PayModel, PayModelError, PayModels

from .. import responses
from ..gateway import Gateway
from ..sessions.tokens import Identity
from .signed_in import signed_in

log = logging.getLogger("hatchway.paymodels")

class _HasJson(Protocol):
    def to_json(self) -> str: ...


StatusOf = Callable[[Gateway, str], Awaitable[WorkspaceStatus]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RESET_POLL_SECONDS = 5.0  # Hatchery polls the status this often after a terminate
RESET_GIVE_UP_SECONDS = 600.0  # and forever; hatchway stops after ten minutes
_background: set[asyncio.Task[None]] = set()


def _json(body: str) -> web.Response:
    return web.Response(text=body, content_type="application/json")


def _store(gateway: Gateway) -> PayModels:
    if gateway.paymodels is None:  # build_app always sets one; an empty one answers "not set"
        return PayModels(default=PayModel(), configured=[])
    return gateway.paymodels


def _reader(read: Callable[[PayModels, str], Awaitable[_HasJson | None]],
            missing: str) -> Handler:
    """A GET that reads the user's pay models: 500 with the store's error, 404 ``missing``
    when there is nothing, else the Go-marshalled JSON; any other method 404 (sic: Hatchery's
    answer)."""

    @signed_in("GET", other_method=404)
    async def handler(request: web.Request, gateway: Gateway,
                      who: Identity) -> web.StreamResponse:
        try:
            found = await read(_store(gateway), who.user)
        except PayModelError as exc:
            return responses.hatchery_text(500, str(exc))
        if found is None:
            return responses.hatchery_text(404, missing)
        return _json(found.to_json())

    return handler


paymodels = _reader(PayModels.current_pay_model, "Current paymodel not set")
allpaymodels = _reader(PayModels.for_user, "No paymodel set")


def _changer(status_of: StatusOf, *, set_one: bool) -> Handler:
    """``/setpaymodel`` and ``/resetpaymodels``: refused while a workspace exists."""
    @signed_in("POST")
    async def handler(request: web.Request, gateway: Gateway,
                      who: Identity) -> web.StreamResponse:
        wanted = request.query.get("id", "")
        if set_one and not wanted:
            return responses.hatchery_text(400, "Missing ID argument")
        store = _store(gateway)
        try:
            if store.configured:  # Hatchery's status reads the pay models first
                await store.for_user(who.user)
            current = await status_of(gateway, who.user)
            if current.status != NOT_FOUND:
                what = "update paymodel" if set_one else "reset paymodels"
                return responses.hatchery_text(
                    500, f"Can not {what} when workspace is running")
            if set_one:
                return _json((await store.set_current(who.user, wanted)).to_json())
            await store.reset_current(who.user)
        except PayModelError as exc:
            return responses.hatchery_text(500, str(exc))
        return web.Response(text="Current Paymodel has been reset")
    return handler


def reset_pay_model_when_gone(gateway: Gateway, user: str, status_of: StatusOf) -> None:
    """After a terminate, Hatchery clears the user's current pay model once the workspace is
    gone, so the next launch asks for a choice again. Only a table has anything to clear."""
    store = gateway.paymodels
    if store is None or not store.table:
        return

    async def wait_and_reset() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESET_GIVE_UP_SECONDS
        while loop.time() < deadline:
            if (await status_of(gateway, user)).status == NOT_FOUND:
                try:
                    await store.reset_current(user)
                except PayModelError as exc:
                    log.warning("could not reset %s's current pay model: %s", user, exc)
                return
            await asyncio.sleep(RESET_POLL_SECONDS)

    task = asyncio.get_running_loop().create_task(wait_and_reset(),
                                                  name=f"reset pay model of {user}")
    _background.add(task)
    task.add_done_callback(_background.discard)


def add_routes(app: web.Application, prefix: str, status_of: StatusOf) -> None:
    app.router.add_route("*", f"{prefix}/paymodels", paymodels)
    app.router.add_route("*", f"{prefix}/allpaymodels", allpaymodels)
    app.router.add_route("*", f"{prefix}/setpaymodel", _changer(status_of, set_one=True))
    app.router.add_route("*", f"{prefix}/resetpaymodels", _changer(status_of, set_one=False))
