"""One request is one user on every path: the fast path, the aiohttp handlers (proxy and API),
HTTP/1.0 and Envoy's ext_authz check all read the session credential by one rule
(``proxy.sessions.tokens.session_token``), and a request carrying two different session tokens, in
any two places (Bearer and cookie included), is refused with 400 everywhere. The same token
twice is one user. The attacker's bytes go over raw sockets."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from launcher.routes import Route

from .conftest import PROXY, GatewayUnderTest
from .helpers import exchange


@pytest.fixture(params=["fast", "aiohttp"])
async def gateway(request: pytest.FixtureRequest,
                  start_gateway: Callable[..., Any]) -> GatewayUnderTest:
    """The gateway with its fast path, and with every request served by aiohttp."""
    gw: GatewayUnderTest = await start_gateway(fast_path=request.param == "fast")
    return gw


@pytest.fixture
async def recorded(gateway: GatewayUnderTest, recording_upstream: Callable[[], Any]
                   ) -> dict[str, list[web.Request]]:
    """alice's and bob's workspaces, each recording what reaches it."""
    seen = {}
    for user in ("alice", "bob"):
        server, seen[user] = await recording_upstream()
        gateway.publish(user, server)
    return seen


def request(path: str, credentials: str, version: str = "1.1") -> str:
    return (f"GET {path} HTTP/{version}\r\nHost: gw\r\n{credentials}"
            "Connection: close\r\n\r\n")


TWO_TOKENS = {
    "two_cookies_in_one_header": "Cookie: access_token={alice}; access_token={bob}\r\n",
    "two_cookie_headers": "Cookie: access_token={alice}\r\nCookie: access_token={bob}\r\n",
    "spaced_second_cookie": "Cookie: access_token={alice}; theme=1;access_token = {bob}\r\n",
    "two_bearer_headers": ("Authorization: Bearer {alice}\r\n"
                           "Authorization: Bearer {bob}\r\n"),
    # issue 21 item 4: this pair was served as alice (the header outranked the cookie)
    "bearer_and_cookie": ("Authorization: Bearer {alice}\r\n"
                          "Cookie: access_token={bob}\r\n"),
    "bearer_and_cookie_in_a_second_header": ("Authorization: Bearer {alice}\r\n"
                                             "Cookie: theme=1\r\n"
                                             "Cookie: access_token={bob}\r\n"),
    "lowercase_bearer_and_cookie": ("Authorization: bearer {alice}\r\n"
                                    "Cookie: access_token={bob}\r\n"),
}


def credentials(gw: GatewayUnderTest, case: str) -> str:
    return TWO_TOKENS[case].format(alice=gw.token("alice"), bob=gw.token("bob"))


@pytest.mark.parametrize("case", sorted(TWO_TOKENS))
async def test_two_session_tokens_are_refused_by_the_proxy(
        gateway: GatewayUnderTest, recorded: dict[str, list[web.Request]], case: str) -> None:
    status, headers, body = await exchange(
        gateway.server.port, request(PROXY + "x", credentials(gateway, case)))
    assert status == 400
    assert "two different session tokens" in json.loads(body)["error"]
    assert recorded == {"alice": [], "bob": []}


@pytest.mark.parametrize("case", sorted(TWO_TOKENS))
async def test_two_session_tokens_are_refused_over_http10(
        gw: GatewayUnderTest, recording_upstream: Callable[[], Any], case: str) -> None:
    server, seen = await recording_upstream()
    gw.publish("alice", server)
    gw.publish("bob", server)
    status, _, _ = await exchange(gw.server.port,
                                  request(PROXY + "x", credentials(gw, case), "1.0"))
    assert status == 400
    assert seen == []


@pytest.mark.parametrize("case", sorted(TWO_TOKENS))
async def test_two_session_tokens_are_refused_by_the_api(
        gateway: GatewayUnderTest, case: str) -> None:
    for path in ("/lw-workspace/options", "/lw-workspace/status"):
        status, _, body = await exchange(gateway.server.port,
                                         request(path, credentials(gateway, case)))
        assert status == 400, path
        assert "two different session tokens" in json.loads(body)["error"]


@pytest.mark.parametrize("case", sorted(TWO_TOKENS))
async def test_two_session_tokens_are_refused_by_the_ext_authz_check(
        start_gateway: Callable[..., Any], case: str) -> None:
    gw = await start_gateway(mode="envoy")
    status, headers, _ = await exchange(
        gw.server.port, request("/lw-workspace/_ext_authz" + PROXY + "x", credentials(gw, case)))
    assert status == 400
    assert "remote_user" not in headers


async def test_the_same_token_twice_is_one_user(
        gateway: GatewayUnderTest, recorded: dict[str, list[web.Request]]) -> None:
    token = gateway.token("alice")
    status, _, body = await exchange(gateway.server.port, request(
        PROXY + "x", f"Cookie: access_token={token}; theme=1; access_token={token}\r\n"))
    assert (status, body) == (200, b"reached")
    assert [r.headers["REMOTE_USER"] for r in recorded["alice"]] == ["alice"]
    assert recorded["bob"] == []


async def test_the_same_token_as_bearer_and_cookie_is_one_user(
        gateway: GatewayUnderTest, recorded: dict[str, list[web.Request]]) -> None:
    """A script in a signed-in browser may send its cookie and the same token as Bearer."""
    token = gateway.token("alice")
    both = f"Authorization: Bearer {token}\r\nCookie: access_token={token}\r\n"
    status, _, body = await exchange(gateway.server.port, request(PROXY + "x", both))
    assert (status, body) == (200, b"reached")
    assert [r.headers["REMOTE_USER"] for r in recorded["alice"]] == ["alice"]
    assert recorded["bob"] == []


async def test_the_same_token_as_bearer_and_cookie_is_one_user_in_the_ext_authz_check(
        start_gateway: Callable[..., Any]) -> None:
    gw = await start_gateway(mode="envoy")
    gw.gateway.routes.set("alice", Route("127.0.0.1", 9, "/", source="test"))
    token = gw.token("alice")
    both = f"Authorization: Bearer {token}\r\nCookie: access_token={token}\r\n"
    status, headers, _ = await exchange(
        gw.server.port, request("/lw-workspace/_ext_authz" + PROXY + "x", both))
    assert (status, headers["remote_user"]) == (200, "alice")
