"""The same user journey passes whoever relays the workspace traffic: hatchway itself
(``mode: builtin``) or a real Envoy in front of it (``mode: envoy``).

Both params start hatchway exactly as ``hatchway serve`` does, with the local backend and the
default workspace options; the envoy param also writes the bootstrap as ``hatchway
envoy-config`` does and runs a stock Envoy on it. The journey then talks only to the entry
point a browser would use (hatchway's port, or Envoy's): the API, the workspace over HTTP and
WebSocket, other users, and terminate.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ..conftest import GatewayUnderTest
from .conftest import PROXY, envoy_in_front, envoy_overrides, eventually

API = "/lw-workspace/"
JOURNEY_S = 20  # the whole journey, for each mode


@dataclass
class Entry:
    """Where browsers reach the commons: its origin, and the gateway that mints sessions."""

    origin: str
    gw: GatewayUnderTest

    def url(self, path: str) -> str:
        return self.origin + path

    def browser(self, user: str | None) -> aiohttp.ClientSession:
        """A browser-like client: ``user``'s session cookie (none when ``user`` is None) is
        sent on every request, WebSocket handshakes included."""
        cookies = {"access_token": self.gw.token(user)} if user else None
        return aiohttp.ClientSession(cookies=cookies)


@pytest.fixture(params=["builtin", "envoy"])
async def entry(request: pytest.FixtureRequest, start_gateway: Callable[..., Any],
                tmp_path: Path) -> AsyncIterator[Entry]:
    if request.param == "builtin":
        gw = await start_gateway()
        yield Entry(gw.base, gw)
        return
    gw = await start_gateway(mode="envoy", envoy=envoy_overrides(tmp_path))
    async with envoy_in_front(gw, tmp_path) as origin:
        yield Entry(origin, gw)


async def _status(client: aiohttp.ClientSession, url: str, **kw: Any) -> int:
    async with client.get(url, allow_redirects=False, **kw) as resp:
        await resp.read()
        return resp.status


async def _workspace_status(client: aiohttp.ClientSession, entry: Entry) -> str:
    async with client.get(entry.url(API + "status")) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["status"])


async def test_launch_use_isolate_and_terminate_the_demo_workspace(entry: Entry) -> None:
    started = time.monotonic()
    async with entry.browser("alice") as alice, entry.browser("bob") as bob, \
            entry.browser(None) as nobody:
        # The portal lists the options and launches the demo workspace.
        async with alice.get(entry.url(API + "options")) as resp:
            assert resp.status == 200
            demo = next(o for o in await resp.json() if o["name"].startswith("Demo"))
        async with alice.post(entry.url(f"{API}launch?id={demo['id']}")) as resp:
            assert (resp.status, await resp.text()) == (200, "Success")

        async def running() -> bool:
            return await _workspace_status(alice, entry) == "Running"
        await eventually(running, within=10)

        # Running means reachable: the portal opens the page as soon as status says so.
        async with alice.get(entry.url(PROXY), headers={"Accept": "text/html"}) as resp:
            page = await resp.text()
            assert resp.status == 200, f"status said Running, the proxy answered: {page}"
        assert "hatchway demo workspace" in page
        assert "<code>REMOTE_USER: alice</code>" in page

        # The page's WebSocket, opened from the page's own origin: echo, then close code and
        # reason come back intact.
        async with alice.ws_connect(entry.url(PROXY + "echo"), protocols=["echo.v1"],
                                    origin=entry.origin) as ws:
            await ws.send_str("hello")
            assert (await ws.receive(timeout=5)).data == "hello"
            await ws.send_str("close:4001:bye")
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert (msg.data, msg.extra) == (4001, "bye")
        # A page on another site cannot ride alice's cookie into her workspace.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await alice.ws_connect(entry.url(PROXY + "echo"), origin="http://evil.example")
        assert refused.value.status == 403

        # bob has a session but no workspace; claiming to be alice changes nothing.
        assert await _status(bob, entry.url(PROXY)) == 404
        for header in ("remote_user", "REMOTE_USER"):
            assert await _status(bob, entry.url(PROXY), headers={header: "alice"}) == 404

        # Without a session: scripts get 401, browsers are sent to sign in.
        assert await _status(nobody, entry.url(PROXY)) == 401
        assert await _status(nobody, entry.url(PROXY),
                             headers={"remote_user": "alice", "REMOTE_USER": "alice"}) == 401
        async with nobody.get(entry.url(PROXY), headers={"Accept": "text/html"},
                              allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"].startswith(API + "login?redirect=")

        # Terminate: the API forgets the workspace and the proxy stops reaching it.
        async with alice.post(entry.url(API + "terminate")) as resp:
            assert resp.status == 200, await resp.text()
        assert await _workspace_status(alice, entry) == "Not Found"

        async def gone() -> bool:  # "workspace stopped", in both modes (tests/envoy/test_pages)
            return await _status(alice, entry.url(PROXY)) == 410
        await eventually(gone, within=3)
    assert time.monotonic() - started < JOURNEY_S
