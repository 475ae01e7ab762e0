"""The aiohttp internals hatchway relies on (proxy/aiohttp_compat.py) are still there and still
work: each test names the hook, so an aiohttp release that renames one fails here, loudly, not
as a missing nosniff header or a drain that waits for its timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from proxy.aiohttp_compat import (
    HOOKS,
    HookedRequest,
    missing_hooks,
    request_in_progress,
    use_request_class,
)

from .helpers import eventually, exchange


@pytest.mark.parametrize("hook", list(HOOKS))
def test_aiohttp_still_has_the_hook(hook: str) -> None:
    assert HOOKS[hook](), (
        f"aiohttp {aiohttp.__version__} has no {hook}, which hatchway uses: "
        "adapt proxy/aiohttp_compat.py to this release (or pin aiohttp below it)")


def test_missing_hooks_is_empty_on_the_installed_aiohttp() -> None:
    assert missing_hooks() == []


class SeenRequest(HookedRequest):
    def before_prepare(self, response: web.StreamResponse) -> None:
        response.headers["X-Seen"] = "1"


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, web.Server, asyncio.Event, asyncio.Event]]:
    """A server whose requests are SeenRequests, and whose /hold handler waits until told (a
    request stays in progress meanwhile)."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        assert isinstance(request, SeenRequest)  # _make_request(_cls=) made it
        entered.set()
        await release.wait()
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/hold", hold)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    assert runner.server is not None
    use_request_class(runner.server, app, SeenRequest)
    listener = await asyncio.get_running_loop().create_server(runner.server, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1], runner.server, entered, release
    finally:
        release.set()
        listener.close()
        await runner.cleanup()


async def test_the_prepare_hook_sees_aiohttps_own_answer_to_a_malformed_request(
        served: tuple[int, web.Server, asyncio.Event, asyncio.Event]) -> None:
    """Application._make_request(_cls=) and BaseRequest._prepare_hook: the 400 aiohttp writes
    for a request no app handler saw still passes through the request class's hook."""
    port = served[0]
    status, headers, _ = await exchange(port, b"G<script>T / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 400
    assert headers["x-seen"] == "1"


async def test_the_prepare_hook_sees_a_handlers_answer(
        served: tuple[int, web.Server, asyncio.Event, asyncio.Event]) -> None:
    port, _, _, release = served
    release.set()
    status, headers, body = await exchange(
        port, b"GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, headers["x-seen"], body) == (200, "1", b"done")


async def test_request_in_progress_is_true_only_while_a_request_is_served(
        served: tuple[int, web.Server, asyncio.Event, asyncio.Event]) -> None:
    """RequestHandler._request_in_progress: False on a connection between requests, True while
    its handler runs (the drain closes the first kind and waits for the second)."""
    port, server, entered, release = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await eventually(lambda: bool(server.connections))  # accepted before anything is sent
        [conn] = server.connections
        assert request_in_progress(conn) is False
        writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(entered.wait(), 5)
        assert request_in_progress(conn) is True
        release.set()
        await asyncio.wait_for(reader.readuntil(b"done"), 5)
        await eventually(lambda: not request_in_progress(conn))
        assert request_in_progress(conn) is False
    finally:
        writer.close()
