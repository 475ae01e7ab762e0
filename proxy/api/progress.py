"""Spawn progress as server-sent events, shaped like JupyterHub's
(``{"progress": 0-100, "message": str, "ready": bool, "failed": bool}``).

A backend with its own ``progress(user)`` stream (Kubernetes: pod events) is used as is;
otherwise the status is polled and each change becomes one event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from launcher.backend import LAUNCHING, NOT_FOUND, RUNNING, STOPPED, Backend

from ..gateway import Gateway
from ..sessions.tokens import Identity
from .signed_in import signed_in

KEEPALIVE_SECONDS = 15.0
POLL_SECONDS = 0.5
MAX_SECONDS = 900.0


async def _polled(backend: Backend, user: str) -> AsyncIterator[dict[str, Any]]:
    last = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_SECONDS
    while loop.time() < deadline:
        st = await backend.status(user)
        if st.status != last:
            last = st.status
            if st.status == RUNNING:
                yield {"progress": 100, "message": "workspace is ready", "ready": True,
                       "failed": False}
                return
            if st.status in (STOPPED, NOT_FOUND):
                msg = st.detail or ("no workspace: launch one first" if st.status == NOT_FOUND
                                    else "workspace stopped")
                yield {"progress": 100, "message": msg, "ready": False, "failed": True}
                return
            if st.status == LAUNCHING:
                yield {"progress": 50, "message": "workspace is starting", "ready": False,
                       "failed": False}
        await asyncio.sleep(POLL_SECONDS)


@signed_in()
async def progress(request: web.Request, gateway: Gateway, who: Identity) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    events = gateway.backend.progress(who.user) or _polled(gateway.backend, who.user)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def feed() -> None:
        try:
            async for event in events:
                await queue.put(event)
        finally:
            await queue.put(None)

    feeder = asyncio.ensure_future(feed())
    try:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            await resp.write(f"data: {json.dumps(event)}\n\n".encode())
            if event.get("ready") or event.get("failed"):
                break
        await resp.write_eof()
    except ConnectionResetError:  # the page was reloaded or closed: nothing went wrong
        pass
    finally:
        feeder.cancel()
    return resp
