"""No user name can break Envoy's routing (issue 21 item 5): every value hatchway writes into
Envoy's config reads back as itself (``proxy.envoy.syntax``), checked through a real Envoy in
both authorization modes with names a Fence token may carry; a name Envoy cannot carry is left
out for that user alone; and when Envoy refuses a route file anyway, ``/status`` and ``/_ready``
say so instead of Running.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.demo import make_app as demo_app
from launcher.routes import Route
from proxy.sessions.tokens import acceptable_user_name

from ..conftest import GatewayUnderTest
from ..helpers import auth, get_json, launch, status_becomes
from .conftest import PROXY, eventually, running_envoy
from .test_envoy_jwt import Stack, _stack, bearer, seen_headers

HOSTILE = [
    # Envoy's formatter: "%" starts a command in a header value it adds
    "a%2eb", "%", "%%", "100%", "%REQ(authorization)%", "%DOWNSTREAM_REMOTE_ADDRESS%",
    # Envoy's YAML reader: booleans and nulls PyYAML writes plain, indicators, quotes
    "y", "n", "Y", "N", "yes", "off", "null", "~", "1e3", "0o17", ".inf", "- x", "? x",
    "a: b", "a #b", "#x", "!x", "&x", "*x", "|x", ">x", "@x", "`x", "{x}", "[x]", "x,y",
    'o"brien', "o'brien", "back\\slash", "<b>&amp;",
    # beyond ASCII, and long
    "ü", "日本語", "😀", "Ωmega%", "x" * 3000,
]


def test_every_hostile_name_is_one_a_token_may_carry() -> None:
    assert all(acceptable_user_name(name) for name in HOSTILE)


async def _publish(gw: GatewayUnderTest, aiohttp_server: Any, names: list[str]) -> None:
    """A demo workspace per name, each under its own base path, published as a backend does."""
    for i, name in enumerate(names):
        server = await aiohttp_server(demo_app(f"/w{i}/"), host="127.0.0.1")
        gw.gateway.routes.set(name, Route("127.0.0.1", server.port, f"/w{i}/", source="test"))


@pytest.fixture
async def hostile(start_gateway: Callable[..., Any], aiohttp_server: Any,
                  tmp_path: Path) -> AsyncIterator[Stack]:
    """jwt mode (Envoy checks the session itself), alice and bob routed first."""
    async with _stack(start_gateway, aiohttp_server, tmp_path) as s:
        await _publish(s.gw, aiohttp_server, HOSTILE)
        yield s


async def test_hostile_names_reach_their_own_workspace_through_envoy(hostile: Stack) -> None:
    for i, name in enumerate(HOSTILE):
        token = hostile.sign(hostile.claims(name))

        async def reached(token: str = token, i: int = i) -> bool:
            status, body = await hostile.get(PROXY + "headers", bearer(token))
            return status == 200 and body["path"] == f"/w{i}/headers"
        await eventually(reached)
        _, body = await hostile.get(PROXY + "headers", bearer(token))
        assert seen_headers(body)["remote_user"] == name, name


async def test_routes_published_after_hostile_names_still_reach_envoy(
        hostile: Stack, aiohttp_server: Any) -> None:
    """The issue's symptom: after ``a%2eb`` Envoy refused every later route file, so every
    later launch got Envoy's 404."""
    await _publish(hostile.gw, aiohttp_server, ["carol"])

    async def reached() -> bool:
        status, body = await hostile.get(PROXY + "headers", bearer(hostile.gw.token("carol")))
        return status == 200 and body["path"] == "/w0/headers"
    await eventually(reached)
    status, body = await hostile.get(PROXY + "headers", bearer(hostile.gw.token("alice")))
    assert (status, body["path"]) == (200, "/alice/headers")


async def test_hostile_names_reach_their_own_workspace_in_ext_authz_mode(
        start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path) -> None:
    """hatchway's check admits each name and Envoy routes on the header it answers with."""
    gw = await start_gateway(mode="envoy", envoy={"authorization": "ext_authz"})
    async with running_envoy(tmp_path, gw.server.port, gw.gateway.routes,
                             aiohttp_server) as stack:
        await _publish(gw, aiohttp_server, [*HOSTILE, "carol"])
        for i, name in enumerate([*HOSTILE, "carol"]):
            headers = {"Authorization": f"Bearer {gw.token(name)}"}

            async def reached(headers: dict[str, str] = headers, i: int = i) -> bool:
                async with stack.http.get(stack.url(PROXY + "headers"), headers=headers) as resp:
                    return resp.status == 200 and (await resp.json())["path"] == f"/w{i}/headers"
            await eventually(reached)
            async with stack.http.get(stack.url(PROXY + "headers"), headers=headers) as resp:
                seen = {k.lower(): v for k, v in (await resp.json())["headers"].items()}
            assert seen["remote_user"] == name, name


# -- what Envoy cannot carry -----------------------------------------------------------------

TOO_LONG = "%" * 9000  # 18,000 bytes once escaped: more than Envoy's 16 KiB for a header value


async def test_a_name_envoy_cannot_carry_is_left_out_for_that_user_alone(
        start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path) -> None:
    async with _stack(start_gateway, aiohttp_server, tmp_path, users=("alice",)) as s:
        await _publish(s.gw, aiohttp_server, [TOO_LONG, "carol"])

        async def carol_reached() -> bool:
            status, body = await s.get(PROXY + "headers", bearer(s.gw.token("carol")))
            return status == 200 and body["path"] == "/w1/headers"
        await eventually(carol_reached)
        status, _ = await s.get(PROXY + "headers", bearer(s.sign(s.claims(TOO_LONG))))
        assert status == 404  # no route for this name: never another user's
        writer = s.gw.gateway.envoy
        assert writer is not None and not writer.applied(TOO_LONG)
        assert "more than Envoy's 16384" in writer.route_problem(TOO_LONG)
        assert writer.problem == ""  # Envoy took every file


# -- a route file Envoy refuses ----------------------------------------------------------------

async def _get(client: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with client.get(url, **kw) as resp:
        return resp.status, json.loads(await resp.read())


async def test_a_route_file_envoy_refuses_is_reported_by_status_and_ready(
        start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path) -> None:
    """A route whose rewrite Envoy refuses (a line break, as a Mapping annotation could carry)
    makes Envoy refuse that route file and every later one: a workspace launched meanwhile is
    not Running, ``/_ready`` says why, and both recover once the route is gone."""
    async with _stack(start_gateway, aiohttp_server, tmp_path, users=()) as s:
        gw = s.gw
        ready = gw.url("/_ready")
        gw.gateway.routes.set("mallory", Route("127.0.0.1", 9, "/a\nb/", source="mapping/x"))
        async with aiohttp.ClientSession() as client:
            await launch(client, gw)

            async def said() -> bool:  # once the workspace itself is up
                body = await get_json(client, gw, "status")
                return "Envoy refused" in body.get("message", "")
            await eventually(said, within=15)
            assert (await get_json(client, gw, "status"))["status"] == "Launching"
            status, readiness = await _get(client, ready)
            assert (status, readiness["ready"]) == (200, True)
            assert "Envoy refused" in readiness["degraded"]["envoy"]
            gw.gateway.routes.remove("mallory")
            await status_becomes(client, gw, "Running", within=10)
            assert "degraded" not in (await _get(client, ready))[1]
            status, _ = await _get(client, s.url(PROXY + "api/status"), headers=auth(gw))
            assert status == 200


async def test_status_says_running_once_envoy_routes_the_workspace(
        start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path) -> None:
    """The issue's exact path: ``a%2eb`` launches, then alice; both Running, both routed."""
    async with _stack(start_gateway, aiohttp_server, tmp_path, users=()) as s:
        async with aiohttp.ClientSession() as client:
            for user in ("a%2eb", "alice"):
                await launch(client, s.gw, user=user)
                await status_becomes(client, s.gw, "Running", user=user)
                status, _ = await _get(client, s.url(PROXY + "api/status"),
                                       headers=auth(s.gw, user))
                assert status == 200, user
            assert s.gw.gateway.envoy is not None and s.gw.gateway.envoy.problem == ""
