"""After Terminate, an open tab's requests get "workspace stopped": 410 with Retry-After, a
page for a browser navigating and JSON for its XHRs, so front-ends stop hammering; a user who
never had a workspace still gets the 404 "no workspace"."""

from __future__ import annotations

import aiohttp

from .conftest import PROXY, GatewayUnderTest
from .helpers import API, auth, launch, status_becomes

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def _terminated(gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    await launch(client, gw)
    await status_becomes(client, gw, "Running")
    async with client.post(gw.url(API + "terminate"), headers=auth(gw)) as resp:
        assert resp.status == 200


async def test_a_browser_sees_a_workspace_stopped_page(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    await _terminated(gw, client)
    async with client.get(gw.url(PROXY + "lab"), headers={**auth(gw), **BROWSER}) as resp:
        assert resp.status == 410
        assert resp.headers["Retry-After"] == "60"
        page = await resp.text()
    assert "Your workspace has stopped" in page and 'href="/lw-workspace/"' in page


async def test_an_xhr_gets_json_and_retry_after(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    await _terminated(gw, client)
    async with client.get(gw.url(PROXY + "api/contents?content=1"), headers=auth(gw)) as resp:
        assert resp.status == 410
        assert resp.headers["Retry-After"] == "60"
        body = await resp.json()
    assert body["reason"] == "user" and body["error"].startswith("workspace stopped")


async def test_a_user_who_never_launched_still_gets_404(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(gw.url(PROXY + "lab"), headers=auth(gw, "carol")) as resp:
        assert resp.status == 404


async def test_a_relaunch_forgets_the_stop(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    await _terminated(gw, client)
    await launch(client, gw)
    async with client.get(gw.url(PROXY + "api/status"), headers=auth(gw)) as resp:
        assert resp.status in (200, 503)  # launching or running, never "stopped"


async def test_the_favicon_is_served(gw: GatewayUnderTest, client: aiohttp.ClientSession
                                     ) -> None:
    async with client.get(gw.url("/lw-workspace/favicon.ico")) as resp:
        assert resp.status == 200
        assert resp.content_type == "image/x-icon"
        assert (await resp.read())[:4] == b"\x00\x00\x01\x00"
