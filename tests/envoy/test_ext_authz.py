"""hatchway's answer to Envoy's ext_authz check: the built-in proxy's session check, judged on
the client's original request, and the session credential kept from the workspace."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from launcher.routes import Route

from ..conftest import GatewayUnderTest
from ..helpers import API, auth, exchange, launch, status_becomes
from .conftest import EXT_AUTHZ_PREFIX, PROXY, eventually, running_envoy

CHECK = EXT_AUTHZ_PREFIX + PROXY + "tree?x=1"


async def envoy_gateway(start_gateway: Callable[..., Any], **overrides: Any
                        ) -> GatewayUnderTest:
    """hatchway in Envoy mode with a workspace published for alice and bob, as a backend
    does (the check answers a user with none itself: see the tests at the end)."""
    gw: GatewayUnderTest = await start_gateway(mode="envoy", **overrides)
    for user in ("alice", "bob"):
        gw.gateway.routes.set(user, Route("127.0.0.1", 9, "/", source="test"))
    return gw


async def check(gw: GatewayUnderTest, headers: dict[str, str],
                path: str = CHECK) -> aiohttp.ClientResponse:
    """Send a check as Envoy does: the original method and path behind the check's prefix."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(gw.url(path), headers=headers, allow_redirects=False) as resp:
            await resp.read()
            return resp


async def test_valid_session_is_admitted_with_the_user_header(
        start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway)
    resp = await check(gw, {"Authorization": f"Bearer {gw.token('alice')}"})
    assert resp.status == 200
    assert resp.headers["remote_user"] == "alice"
    assert resp.content_length == 0


@pytest.mark.parametrize("spelling", ["user_header", "user-header"])
async def test_the_answer_carries_the_configured_user_header(
        start_gateway: Callable[..., Any], spelling: str) -> None:
    """Envoy routes on ``envoy.user_header``: the check must set that header, however the
    operator spelled the key, or every request misses its route."""
    gw = await envoy_gateway(start_gateway, envoy={spelling: "x-user"})
    resp = await check(gw, {"Authorization": f"Bearer {gw.token('alice')}"})
    assert resp.status == 200
    assert resp.headers["x-user"] == "alice"
    assert "remote_user" not in resp.headers


async def test_bearer_session_token_is_marked_for_removal(
        start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway)
    resp = await check(gw, {"Authorization": f"Bearer {gw.token('alice')}"})
    assert resp.headers["x-envoy-auth-headers-to-remove"] == "authorization"


async def test_session_cookie_is_taken_out_of_the_forwarded_cookies(
        start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway)
    resp = await check(gw, {"Cookie": f"_xsrf=abc; access_token={gw.token('alice')}; theme=1"})
    assert resp.status == 200
    assert resp.headers["Cookie"] == "_xsrf=abc; theme=1"
    assert "x-envoy-auth-headers-to-remove" not in resp.headers


async def test_no_session_answers_401_json(start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway)
    resp = await check(gw, {"remote_user": "alice"})
    assert resp.status == 401
    assert resp.content_type == "application/json"
    assert "remote_user" not in resp.headers


async def test_forged_token_answers_401(start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway)
    token = gw.token("alice")
    resp = await check(gw, {"Authorization": f"Bearer {token[:-4]}AAAA"})
    assert resp.status == 401


async def test_browser_without_session_goes_to_login_and_back_to_its_url(
        start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway)
    resp = await check(gw, {"Accept": "text/html"})
    assert resp.status == 302
    location = urlsplit(resp.headers["Location"])
    assert location.path == "/lw-workspace/login"
    assert parse_qs(location.query)["redirect"] == [PROXY + "tree?x=1"]


async def test_login_redirect_never_points_off_site(start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway)
    resp = await check(gw, {"Accept": "text/html"},
                       path=EXT_AUTHZ_PREFIX + "//evil.example/lw-workspace/proxy/")
    redirect = parse_qs(urlsplit(resp.headers["Location"]).query)["redirect"]
    assert redirect == ["/evil.example/lw-workspace/proxy/"]  # a path here, not a host


async def test_login_redirect_is_on_the_public_url(start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway, public_url="https://commons.example.org",
                             sessions={"login_url": "https://commons.example.org/login"})
    resp = await check(gw, {"Accept": "text/html", "Host": "evil.example",
                            "X-Forwarded-Proto": "http"})
    assert resp.status == 302
    redirect = parse_qs(urlsplit(resp.headers["Location"]).query)["redirect"]
    assert redirect == ["https://commons.example.org" + PROXY + "tree?x=1"]


async def test_login_redirect_never_names_the_client_host(
        start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway,
                             sessions={"login_url": "https://commons.example.org/login"})
    resp = await check(gw, {"Accept": "text/html", "Host": "evil.example",
                            "X-Forwarded-Proto": "https"})
    assert resp.status == 302
    redirect = parse_qs(urlsplit(resp.headers["Location"]).query)["redirect"]
    assert redirect == [PROXY + "tree?x=1"]  # a path: the client chose that Host


async def test_user_refused_by_authorization_gets_403(start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway, authz={"mode": "allowlist", "users": ["bob"]})
    resp = await check(gw, {"Authorization": f"Bearer {gw.token('alice')}"})
    assert resp.status == 403
    assert "remote_user" not in resp.headers


async def test_admitted_check_counts_as_activity(start_gateway: Callable[..., Any]) -> None:
    gw = await envoy_gateway(start_gateway)
    assert gw.gateway.activity.last_ms("alice") == 0
    await check(gw, {"Authorization": f"Bearer {gw.token('alice')}"})
    assert gw.gateway.activity.last_ms("alice") > 0


async def test_behind_envoy_the_workspace_sees_the_user_but_not_the_session(
        start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path) -> None:
    gw = await start_gateway(mode="envoy")
    async with running_envoy(tmp_path, gw.server.port, gw.gateway.routes,
                             aiohttp_server) as stack:
        await stack.workspace("alice")
        cookies = {"Cookie": f"access_token={gw.token('alice')}; theme=1"}

        async def reached() -> bool:
            async with stack.http.get(stack.url(PROXY + "headers"), headers=cookies) as resp:
                return resp.status == 200
        await eventually(reached)
        async with stack.http.get(stack.url(PROXY + "headers"), headers=cookies) as resp:
            seen = {k.lower(): v for k, v in (await resp.json())["headers"].items()}
        assert seen["remote_user"] == "alice"
        assert seen["cookie"] == "theme=1"
        bearer = {"Authorization": f"Bearer {gw.token('alice')}"}
        async with stack.http.get(stack.url(PROXY + "headers"), headers=bearer) as resp:
            seen = {k.lower(): v for k, v in (await resp.json())["headers"].items()}
        assert "authorization" not in seen


async def test_behind_envoy_a_browser_without_session_is_sent_to_login(
        start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path) -> None:
    gw = await start_gateway(mode="envoy")
    async with running_envoy(tmp_path, gw.server.port, gw.gateway.routes,
                             aiohttp_server) as stack:
        async with stack.http.get(stack.url(PROXY + "tree"), headers={"Accept": "text/html"},
                                  allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"].startswith("/lw-workspace/login?redirect=")


@pytest.mark.parametrize("credentials", [
    "Cookie: access_token={alice}; access_token={bob}\r\n",
    # issue 21 item 4: served as alice before (the Bearer header outranked the cookie)
    "Authorization: Bearer {alice}\r\nCookie: access_token={bob}\r\n",
])
async def test_behind_envoy_two_session_tokens_are_refused_and_reach_no_workspace(
        start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path,
        credentials: str) -> None:
    """One request, two users' tokens: Envoy's check answers 400, whichever token Envoy or
    the workspace would have read."""
    gw = await start_gateway(mode="envoy")
    async with running_envoy(tmp_path, gw.server.port, gw.gateway.routes,
                             aiohttp_server) as stack:
        await stack.workspace("alice")
        await stack.workspace("bob")
        alice = {"Cookie": f"access_token={gw.token('alice')}"}

        async def reached() -> bool:
            async with stack.http.get(stack.url(PROXY + "headers"), headers=alice) as resp:
                return resp.status == 200
        await eventually(reached)
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
        writer.write((f"GET {PROXY}headers HTTP/1.1\r\nHost: gw\r\n"
                      + credentials.format(alice=gw.token("alice"), bob=gw.token("bob"))
                      + "Connection: close\r\n\r\n").encode())
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"two different session tokens" in answer
        assert b"REMOTE_USER" not in answer.upper()


async def test_behind_envoy_two_cookie_headers_are_no_session(
        start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path) -> None:
    """Envoy hands the check two Cookie headers joined by "," (``access_token=a,access_token=b``):
    one malformed token to hatchway, so 401 where builtin mode, seeing two headers, says 400."""
    gw = await start_gateway(mode="envoy")
    async with running_envoy(tmp_path, gw.server.port, gw.gateway.routes,
                             aiohttp_server) as stack:
        await stack.workspace("alice")
        await stack.until(PROXY + "headers", 200, gw.token("alice"))
        status, _, body = await exchange(stack.port, (
            f"GET {PROXY}headers HTTP/1.1\r\nHost: gw\r\n"
            f"Cookie: access_token={gw.token('alice')}\r\n"
            f"Cookie: access_token={gw.token('bob')}\r\nConnection: close\r\n\r\n"))
        assert (status, body) == (401, b'{"error": "malformed token"}')


async def test_user_without_workspace_gets_builtin_modes_404_from_the_check(
        start_gateway: Callable[..., Any]) -> None:
    """Envoy passes a refusal through as it is: a browser gets the page, not Envoy's JSON."""
    gw = await start_gateway(mode="envoy")
    resp = await check(gw, {"Authorization": f"Bearer {gw.token('carol')}",
                            "Accept": "text/html"})
    assert (resp.status, resp.content_type) == (404, "text/html")
    assert "remote_user" not in resp.headers


async def test_user_whose_workspace_was_stopped_gets_410_from_the_check(
        start_gateway: Callable[..., Any]) -> None:
    gw = await start_gateway(mode="envoy")
    async with aiohttp.ClientSession() as client:
        await launch(client, gw)
        await status_becomes(client, gw, "Running")
        async with client.post(gw.url(API + "terminate"), headers=auth(gw)) as resp:
            assert resp.status == 200
    resp = await check(gw, {"Authorization": f"Bearer {gw.token('alice')}"})
    assert (resp.status, resp.headers["Retry-After"]) == (410, "60")


async def test_launching_user_is_admitted_for_envoys_own_503(
        start_gateway: Callable[..., Any]) -> None:
    """A 5xx from the check would reach the client as Envoy's empty 503."""
    gw = await start_gateway(mode="envoy")
    gw.gateway.routes.set("alice", Route("127.0.0.1", 9, "/", ready=False, source="test"))
    resp = await check(gw, {"Authorization": f"Bearer {gw.token('alice')}"})
    assert (resp.status, resp.headers["remote_user"]) == (200, "alice")
