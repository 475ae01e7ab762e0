"""Envoy mode answers users exactly as builtin mode does where no workspace serves them: the
same status, content type, ``Retry-After``/``Location`` and body, a page for a browser
navigating and JSON for a script or a tab's XHR.

Each test runs both modes side by side, each started as ``hatchway serve`` starts it (the
envoy one behind a real Envoy on the bootstrap ``hatchway envoy-config`` writes), puts the same
user in the same state through the same interfaces, and asks both the same request.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.routes import Route

from ..conftest import GatewayUnderTest
from ..helpers import API, launch, status_becomes
from .conftest import PROXY, envoy_in_front, envoy_overrides

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ACCEPTS = {"browser": BROWSER, "json": "application/json", "xhr": "*/*"}
STAMP = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d UTC")  # when it stopped (minute resolution)


@dataclass
class Answer:
    status: int
    content_type: str
    retry_after: str | None
    location: str | None
    body: bytes


@dataclass
class Mode:
    gw: GatewayUnderTest
    origin: str  # where browsers go: hatchway itself, or the Envoy in front of it

    async def ask(self, user: str | None, accept: str) -> Answer:
        headers = {"Accept": accept}
        if user is not None:
            headers["Cookie"] = f"access_token={self.gw.token(user)}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http, \
                http.get(self.origin + PROXY + "lab?reset", headers=headers,
                         allow_redirects=False) as resp:
            return Answer(resp.status, resp.headers.get("Content-Type", ""),
                          resp.headers.get("Retry-After"), resp.headers.get("Location"),
                          STAMP.sub(b"<when>", await resp.read()))


@pytest.fixture(params=["jwt", "ext_authz"])
async def modes(request: pytest.FixtureRequest, start_gateway: Callable[..., Any],
                tmp_path: Path) -> AsyncIterator[tuple[Mode, Mode]]:
    """(builtin, envoy), the envoy one under each of Envoy mode's two authorization set-ups."""
    builtin = await start_gateway(state_dir=str(tmp_path / "builtin"))
    gw = await start_gateway(state_dir=str(tmp_path / "envoy"), mode="envoy",
                             envoy=envoy_overrides(tmp_path, authorization=request.param))
    async with AsyncExitStack() as stack:
        origin = await stack.enter_async_context(envoy_in_front(gw, tmp_path))
        yield Mode(builtin, builtin.base), Mode(gw, origin)


async def same_answers(modes: tuple[Mode, Mode], user: str | None) -> dict[str, Answer]:
    builtin, envoy = modes
    answers = {}
    for kind, accept in ACCEPTS.items():
        expected, got = await builtin.ask(user, accept), await envoy.ask(user, accept)
        assert got == expected, kind
        answers[kind] = got
    return answers


async def test_no_session_browser_is_sent_to_sign_in_scripts_get_401(
        modes: tuple[Mode, Mode]) -> None:
    answers = await same_answers(modes, None)
    assert answers["browser"].status == 302
    assert answers["browser"].location == API + "login?redirect=" + PROXY + "lab?reset"
    assert answers["json"].status == answers["xhr"].status == 401


async def test_no_workspace_is_a_page_for_browsers_and_json_for_scripts(
        modes: tuple[Mode, Mode]) -> None:
    answers = await same_answers(modes, "carol")
    page = answers["browser"]
    assert (page.status, page.content_type) == (404, "text/html; charset=utf-8")
    assert "no workspace — launch one" in page.body.decode()
    assert b"\\u" not in page.body  # the issue saw a literal \u2014 in the browser
    assert answers["json"].status == 404
    assert answers["json"].content_type == "application/json; charset=utf-8"


async def test_stopped_workspace_is_410_with_retry_after_in_both_shapes(
        modes: tuple[Mode, Mode]) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        for mode in modes:  # launched and terminated through each mode's own API
            await launch(client, mode.gw)
            await status_becomes(client, mode.gw, "Running")
            async with client.post(mode.gw.url(API + "terminate"),
                                   headers={"Authorization": f"Bearer {mode.gw.token('alice')}"}
                                   ) as resp:
                assert resp.status == 200
    answers = await same_answers(modes, "alice")
    for kind, answer in answers.items():
        assert (answer.status, answer.retry_after) == (410, "60"), kind
    assert answers["browser"].content_type == "text/html; charset=utf-8"
    assert "Your workspace has stopped" in answers["browser"].body.decode()
    assert answers["json"].content_type == "application/json; charset=utf-8"


async def test_launching_workspace_is_503_with_retry_after_in_both_shapes(
        modes: tuple[Mode, Mode]) -> None:
    for mode in modes:  # as a backend publishes a workspace that is not ready yet
        mode.gw.gateway.routes.set("dave", Route("127.0.0.1", 9, "/", ready=False,
                                                 source="test"))
    envoy = modes[1].gw.gateway.envoy
    assert envoy is not None and await envoy.wait_applied("dave")  # as /status waits
    answers = await same_answers(modes, "dave")
    for kind, answer in answers.items():
        assert (answer.status, answer.retry_after) == (503, "2"), kind
    assert answers["browser"].content_type == "text/html; charset=utf-8"
