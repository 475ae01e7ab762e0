"""Envoy mode as ``hatchway envoy-config`` sets it up by default (``authorization: jwt``): Envoy
checks the session itself and asks hatchway only where it must. The security properties are
builtin mode's, checked against hatchway running as ``hatchway serve`` and a real Envoy:
only a valid access token reaches a workspace, only its own user's, without the credential,
and requests still count as activity for idle culling.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from launcher.clock import ManualClock
from launcher.demo import make_app as demo_app
from launcher.routes import Route
from proxy.envoy.activity import EnvoyActivityPoller
from proxy.envoy.config import bootstrap_for_settings
from proxy.sessions.devissuer import KEY_FILE

from ..conftest import GatewayUnderTest
from ..helpers import exchange, free_port
from .conftest import PROXY, EnvoyProcess, eventually


@dataclass
class Stack:
    gw: GatewayUnderTest
    port: int
    http: aiohttp.ClientSession

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def claims(self, user: str, **changes: Any) -> dict[str, Any]:
        """A Fence access token's claims for ``user``, as the dev issuer mints them."""
        now = int(time.time())
        claims = {"pur": "access", "iss": self.gw.gateway.sessions.issuer,
                  "aud": ["gen3"], "sub": "1", "iat": now, "exp": now + 600,
                  "jti": uuid.uuid4().hex, "scope": ["user"], "azp": "test",
                  "context": {"user": {"name": user}}}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], key: Any = None, **headers: Any) -> str:
        """Sign with the gateway's own dev key (a token the issuer could have minted)."""
        if key is None:
            pem = (Path(self.gw.gateway.settings.state_dir) / KEY_FILE).read_bytes()
            key = serialization.load_pem_private_key(pem, password=None)
        assert self.gw.issuer is not None
        return jwt.encode(claims, key, algorithm="RS256",
                          headers={"kid": self.gw.issuer.kid, **headers})

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        async with self.http.get(self.url(path), headers=headers,
                                 allow_redirects=False) as resp:
            body = await resp.read()
            try:
                return resp.status, json.loads(body)
            except ValueError:
                return resp.status, body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def stack(start_gateway: Callable[..., Any], aiohttp_server: Any,
                tmp_path: Path) -> AsyncIterator[Stack]:
    """hatchway in Envoy mode (dev sessions, jwt authorization by default), a stock Envoy on the
    bootstrap ``hatchway envoy-config`` writes, and alice's and bob's demo workspaces, each
    under its own base path so an answer shows whose workspace gave it."""
    async with _stack(start_gateway, aiohttp_server, tmp_path) as s:
        yield s


async def _start(start_gateway: Callable[..., Any], tmp_path: Path,
                 **overrides: Any) -> tuple[GatewayUnderTest, dict[str, Any]]:
    envoy = {"listen_host": "127.0.0.1", "listen_port": free_port(),
             "admin_port": free_port(), "dynamic_dir": str(tmp_path / "envoy-dynamic"),
             "activity_poll_seconds": 0.1}
    gw = await start_gateway(mode="envoy", envoy=envoy, **overrides)
    return gw, envoy


class _stack:  # noqa: N801 - used as a context manager, reads as one
    def __init__(self, start_gateway: Callable[..., Any], aiohttp_server: Any,
                 tmp_path: Path, users: tuple[str, ...] = ("alice", "bob"),
                 **overrides: Any) -> None:
        self.args = (start_gateway, aiohttp_server, tmp_path, users, overrides)

    async def __aenter__(self) -> Stack:
        start_gateway, aiohttp_server, tmp_path, users, overrides = self.args
        gw, envoy = await _start(start_gateway, tmp_path, **overrides)
        settings = dataclasses.replace(gw.gateway.settings, port=gw.server.port)
        bootstrap = tmp_path / "bootstrap.yaml"
        bootstrap.write_text(bootstrap_for_settings(settings), encoding="utf-8")
        self.envoy = EnvoyProcess(bootstrap, envoy["admin_port"], tmp_path / "envoy.log")
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        await self.envoy.start(self.http)
        s = Stack(gw, envoy["listen_port"], self.http)
        for user in users:
            server = await aiohttp_server(demo_app(f"/{user}/"), host="127.0.0.1")
            gw.gateway.routes.set(user, Route("127.0.0.1", server.port, f"/{user}/",
                                              source="test"))
        for user in users:
            async def reached(user: str = user) -> bool:  # route and cluster both applied
                return (await s.get(PROXY + "headers", bearer(gw.token(user))))[0] in (200, 403)
            await eventually(reached)
        return s

    async def __aexit__(self, *exc: object) -> None:
        await self.envoy.stop()
        await self.http.close()


def seen_headers(body: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in body["headers"].items()}


# -- who gets through ----------------------------------------------------------------------

async def test_access_token_reaches_its_users_workspace(stack: Stack) -> None:
    status, body = await stack.get(PROXY + "headers?x=1", bearer(stack.gw.token("alice")))
    assert status == 200
    assert body["path"] == "/alice/headers?x=1"
    assert seen_headers(body)["remote_user"] == "alice"


async def test_session_cookie_reaches_its_users_workspace(stack: Stack) -> None:
    status, body = await stack.get(PROXY + "headers",
                                   {"Cookie": f"access_token={stack.gw.token('bob')}"})
    assert (status, body["path"]) == (200, "/bob/headers")


@pytest.mark.parametrize("header", ["remote_user", "REMOTE_USER", "Remote-User",
                                    "X-Forwarded-User", "x-hatchway-verified-user",
                                    "x_hatchway_verified_user"])
async def test_client_sent_identity_header_cannot_reach_another_workspace(
        stack: Stack, header: str) -> None:
    status, body = await stack.get(PROXY + "headers",
                                   {**bearer(stack.gw.token("alice")), header: "bob"})
    assert (status, body["path"]) == (200, "/alice/headers")
    assert seen_headers(body)["remote_user"] == "alice"


@pytest.mark.parametrize("claims", [
    {"remote_user": "alice", "REMOTE_USER": "alice"},
    {"x-hatchway-verified-user": "alice", "x-hatchway-verified-purpose": "access"},
])
async def test_identity_headers_without_a_token_are_refused(stack: Stack,
                                                            claims: dict[str, str]) -> None:
    """The verified-claim headers are Envoy's to set: a client's copies are gone before the
    route is picked (else the route that skips hatchway's check would be chosen on them)."""
    status, body = await stack.get(PROXY + "headers", claims)
    assert status == 401
    assert body["error"].startswith("no session")


async def test_token_for_a_user_without_workspace_reaches_no_one(stack: Stack) -> None:
    status, body = await stack.get(PROXY + "headers",
                                   {**bearer(stack.gw.token("carol")), "remote_user": "alice"})
    assert status == 404
    assert "launch one" in body["error"]


@pytest.mark.parametrize("name", ["Alice", "alice ", "alice,bob", "bob\u200b"])
async def test_user_claim_must_equal_the_route_user_exactly(stack: Stack, name: str) -> None:
    token = stack.sign(stack.claims(name))
    status, _ = await stack.get(PROXY + "headers", bearer(token))
    # admitted as that name, which has no workspace; or (edge whitespace, invisible
    # characters) refused outright as a user name no one may have: never alice's or bob's
    assert status in (401, 403, 404)


async def test_token_naming_no_user_is_refused(stack: Stack) -> None:
    token = stack.sign(stack.claims("alice", context=None, sub="alice"))
    status, body = await stack.get(PROXY + "headers", bearer(token))
    assert (status, body["error"]) == (401, "token names no user")


@pytest.mark.parametrize("purpose", ["refresh", "api_key", None])
async def test_token_that_is_not_an_access_token_is_refused(stack: Stack,
                                                            purpose: str | None) -> None:
    token = stack.sign(stack.claims("alice", pur=purpose))
    status, body = await stack.get(PROXY + "headers", bearer(token))
    assert (status, body["error"]) == (401, "not an access token")


async def test_expired_token_is_refused(stack: Stack) -> None:
    past = int(time.time()) - 3600
    token = stack.sign(stack.claims("alice", iat=past - 600, exp=past))
    status, body = await stack.get(PROXY + "headers", bearer(token))
    assert (status, body["error"]) == (401, "session expired")


async def test_token_without_expiry_is_refused(stack: Stack) -> None:
    token = stack.sign(stack.claims("alice", exp=None))
    status, _ = await stack.get(PROXY + "headers", bearer(token))
    assert status == 401


@pytest.mark.parametrize(("changes", "reason"), [
    ({"aud": ["fence"]}, "token audience not accepted"),
    ({"iss": "https://other.example/user"}, "token issuer not accepted"),
])
async def test_token_for_another_audience_or_issuer_is_refused(
        stack: Stack, changes: dict[str, Any], reason: str) -> None:
    token = stack.sign(stack.claims("alice", **changes))
    status, body = await stack.get(PROXY + "headers", bearer(token))
    assert (status, body["error"]) == (401, reason)


async def test_token_signed_by_another_key_under_the_same_kid_is_refused(stack: Stack) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = stack.sign(stack.claims("alice"), key=other)
    status, body = await stack.get(PROXY + "headers", bearer(token))
    assert (status, body["error"]) == (401, "token signature invalid")


async def test_unsigned_token_is_refused(stack: Stack) -> None:
    def b64(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    assert stack.gw.issuer is not None
    token = f"{b64({'alg': 'none', 'kid': stack.gw.issuer.kid})}.{b64(stack.claims('alice'))}."
    status, _ = await stack.get(PROXY + "headers", bearer(token))
    assert status == 401


async def test_browser_without_session_is_sent_to_sign_in(stack: Stack) -> None:
    status, _ = await stack.get(PROXY + "tree", {"Accept": "text/html"})
    assert status == 302


async def test_user_refused_by_the_allowlist_gets_403_even_with_a_workspace(
        start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path) -> None:
    async with _stack(start_gateway, aiohttp_server, tmp_path, users=("alice",),
                      authz={"mode": "allowlist", "users": ["bob"]}) as s:
        status, body = await s.get(PROXY + "headers", bearer(s.gw.token("alice")))
        assert status == 403
        assert "may not use workspaces" in body["error"]


async def test_allowlisted_user_is_admitted(
        start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path) -> None:
    async with _stack(start_gateway, aiohttp_server, tmp_path, users=("alice",),
                      authz={"mode": "allowlist", "users": ["alice"]}) as s:
        status, body = await s.get(PROXY + "headers", bearer(s.gw.token("alice")))
        assert (status, body["path"]) == (200, "/alice/headers")


# -- one request, one token ------------------------------------------------------------------

def raw_get(path: str, credentials: str) -> str:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{credentials}Connection: close\r\n\r\n"


async def test_claims_of_two_tokens_are_never_merged(stack: Stack) -> None:
    """Issue 21 item 6, the attacker's bytes: a token with ``pur=access`` and no user name, and
    one naming bob without ``pur``; each alone is refused, and jwt_authn verified both and
    wrote each one's claim header, so together they reached bob's workspace."""
    purpose_only = stack.sign(stack.claims("ignored", context=None))
    name_only = stack.sign(stack.claims("bob", pur=None))
    for token in (purpose_only, name_only):
        assert (await stack.get(PROXY + "headers", bearer(token)))[0] == 401
    status, _, body = await exchange(stack.port, raw_get(
        PROXY + "headers",
        f"Authorization: Bearer {purpose_only}\r\nCookie: access_token={name_only}\r\n"))
    assert status == 400
    assert "two different session tokens" in json.loads(body)["error"]


@pytest.mark.parametrize("credentials", [
    "Authorization: Bearer {alice}\r\nCookie: access_token={bob}\r\n",
    "Authorization: Bearer {bob}\r\nCookie: theme=1; access_token={alice}\r\n",
    "Cookie: access_token={alice}\r\nCookie: access_token={bob}\r\n",
    "Cookie: access_token={alice}; access_token={bob}\r\n",
])
async def test_two_users_tokens_in_one_request_are_refused(stack: Stack,
                                                           credentials: str) -> None:
    """As on the builtin path (tests/test_session_cookies.py), whichever token Envoy or the
    workspace would have read: 400, and no workspace is reached."""
    alice, bob = stack.gw.token("alice"), stack.gw.token("bob")
    status, headers, body = await exchange(
        stack.port, raw_get(PROXY + "headers", credentials.format(alice=alice, bob=bob)))
    assert status == 400
    assert "two different session tokens" in json.loads(body)["error"]
    assert headers["content-type"] == "application/json; charset=utf-8"


async def test_two_authorization_headers_reach_no_workspace(stack: Stack) -> None:
    """Envoy joins them into one value (``Bearer a,Bearer b``), which is no token at all to
    hatchway's check (builtin mode, seeing two headers, says 400)."""
    alice, bob = stack.gw.token("alice"), stack.gw.token("bob")
    status, _, body = await exchange(stack.port, raw_get(
        PROXY + "headers", f"Authorization: Bearer {alice}\r\nAuthorization: Bearer {bob}\r\n"))
    assert status == 401
    assert json.loads(body)["error"] == "malformed token"


async def test_two_tokens_are_refused_with_the_page_for_a_browser(stack: Stack) -> None:
    alice, bob = stack.gw.token("alice"), stack.gw.token("bob")
    status, headers, body = await exchange(stack.port, raw_get(
        PROXY + "tree", f"Accept: text/html\r\nAuthorization: Bearer {alice}\r\n"
                        f"Cookie: access_token={bob}\r\n"))
    assert (status, headers["content-type"]) == (400, "text/html; charset=utf-8")
    assert b"two different session tokens" in body


async def test_the_same_token_as_bearer_and_cookie_is_one_user(stack: Stack) -> None:
    token = stack.gw.token("alice")
    status, body = await stack.get(PROXY + "headers", {**bearer(token),
                                                       "Cookie": f"access_token={token}"})
    assert (status, body["path"]) == (200, "/alice/headers")
    seen = seen_headers(body)
    assert seen["remote_user"] == "alice"
    assert token not in json.dumps(seen)  # neither copy of the credential reaches it


async def checks_asked(stack: Stack) -> int:
    """How many times Envoy has asked hatchway's check so far (its ext_authz counters)."""
    admin = f"http://127.0.0.1:{stack.gw.gateway.settings.envoy.admin_port}/stats"
    async with stack.http.get(admin, params={"filter": r"\.ext_authz\.", "format": "json"}
                              ) as resp:
        stats = (await resp.json())["stats"]
    return sum(int(s.get("value", 0)) for s in stats if "value" in s)


@pytest.mark.parametrize("credential", ["Authorization: Bearer {token}",
                                        "Cookie: theme=1; access_token={token}"])
async def test_one_token_is_verified_by_envoy_without_asking_hatchway(
        stack: Stack, credential: str) -> None:
    """The one-token rules leave the fast lane to every request with one credential."""
    name, _, value = credential.format(token=stack.gw.token("alice")).partition(": ")
    before = await checks_asked(stack)
    status, body = await stack.get(PROXY + "headers", {name: value})
    assert (status, body["path"]) == (200, "/alice/headers")
    assert await checks_asked(stack) == before


async def test_a_token_outside_the_bearer_scheme_is_not_verified(stack: Stack) -> None:
    """jwt_authn's own extractor finds ``Bearer `` anywhere in the header; the one token it
    may verify is the one hatchway's rule picks, so a token hidden after another scheme is no
    credential (as in builtin mode), and cannot join a cookie's claims."""
    alice = stack.gw.token("alice")
    status, _ = await stack.get(PROXY + "headers",
                                {"Authorization": f"Basic eA== Bearer {alice}"})
    assert status == 401


# -- what the workspace sees -----------------------------------------------------------------

async def test_session_cookie_is_not_forwarded_but_other_cookies_are(stack: Stack) -> None:
    token = stack.gw.token("alice")
    status, body = await stack.get(PROXY + "headers",
                                   {"Cookie": f"_xsrf=abc; access_token={token}; theme=1"})
    assert status == 200
    assert seen_headers(body)["cookie"] == "_xsrf=abc; theme=1"


@pytest.mark.parametrize("cookie", ["access_token={t}", " access_token = {t} ", "access_token"])
async def test_session_cookie_alone_is_not_forwarded(stack: Stack, cookie: str) -> None:
    """The credential strip drops the session cookie when it is the only cookie (its short
    path: one Cookie header, no Authorization), however spaced, and a bare name too."""
    token = stack.gw.token("alice")
    headers = {"Cookie": cookie.format(t=token)}
    if "{t}" not in cookie:
        headers["Authorization"] = f"Bearer {token}"
    status, body = await stack.get(PROXY + "headers", headers)
    assert status == 200
    assert "cookie" not in seen_headers(body)


async def test_bearer_token_is_not_forwarded(stack: Stack) -> None:
    status, body = await stack.get(PROXY + "headers", bearer(stack.gw.token("alice")))
    assert status == 200
    seen = seen_headers(body)
    assert "authorization" not in seen


async def test_session_cookie_in_a_second_cookie_header_is_not_forwarded(stack: Stack) -> None:
    """Raw bytes: two Cookie header lines, the session cookie in both."""
    token = stack.gw.token("alice")
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.port)
    try:
        writer.write((f"GET {PROXY}headers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Cookie: access_token={token}\r\n"
                      f"Cookie: theme=1; access_token={token}\r\n"
                      "Connection: close\r\n\r\n").encode())
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 200")
    seen = seen_headers(json.loads(data.partition(b"\r\n\r\n")[2]))
    assert token not in json.dumps(seen)
    assert seen["cookie"] == "theme=1"


async def test_a_cookie_in_a_second_line_after_the_session_cookie_is_forwarded(
        stack: Stack) -> None:
    """Raw bytes: the first Cookie line is the session cookie alone, which on its own is the
    shape whose route drops the whole Cookie header; a second line makes it another shape
    (Envoy's route matchers see each line on its own), so theme=1 still arrives."""
    token = stack.gw.token("alice")
    status, _, body = await exchange(stack.port, raw_get(
        PROXY + "headers", f"Cookie: access_token={token}\r\nCookie: theme=1\r\n"))
    assert status == 200
    seen = seen_headers(json.loads(body))
    assert token not in json.dumps(seen)
    assert seen["cookie"] == "theme=1"


# -- WebSockets --------------------------------------------------------------------------------

async def test_websocket_from_the_page_own_origin_echoes(stack: Stack) -> None:
    cookie = {"Cookie": f"access_token={stack.gw.token('alice')}"}
    async with stack.http.ws_connect(stack.url(PROXY + "echo"), headers=cookie,
                                     origin=stack.origin) as ws:
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "hello"


async def test_websocket_with_a_bearer_token_and_no_origin_echoes(stack: Stack) -> None:
    async with stack.http.ws_connect(stack.url(PROXY + "echo"),
                                     headers=bearer(stack.gw.token("alice"))) as ws:
        await ws.send_str("hi")
        assert (await ws.receive(timeout=5)).data == "hi"


async def test_cross_origin_websocket_is_refused(stack: Stack) -> None:
    cookie = {"Cookie": f"access_token={stack.gw.token('alice')}"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await stack.http.ws_connect(stack.url(PROXY + "echo"), headers=cookie,
                                    origin="http://evil.example")
    assert refused.value.status == 403


# -- activity ----------------------------------------------------------------------------------

@pytest.fixture
async def timed_stack(start_gateway: Callable[..., Any], aiohttp_server: Any, tmp_path: Path,
                      clock: ManualClock) -> AsyncIterator[Stack]:
    """``stack`` on a ManualClock: activity times move only with ``clock.advance``."""
    async with _stack(start_gateway, aiohttp_server, tmp_path, clock=clock) as s:
        yield s


async def counters_read(stack: Stack) -> None:
    """Until the poller has read Envoy's counters twice more: every request so far counted."""
    poller = stack.gw.gateway.envoy_activity
    assert isinstance(poller, EnvoyActivityPoller)
    polls = poller.polls
    await eventually(lambda: poller.polls >= polls + 2)


async def test_request_through_envoy_counts_as_the_users_activity(timed_stack: Stack,
                                                                  clock: ManualClock) -> None:
    stack = timed_stack
    activity = stack.gw.gateway.activity
    await counters_read(stack)  # the warm-up requests' counters read
    before = activity.last_ms("alice")
    clock.advance(1.1)  # past the tracker's one-second clock
    status, _ = await stack.get(PROXY + "headers", bearer(stack.gw.token("alice")))
    assert status == 200

    async def touched() -> bool:
        return activity.last_ms("alice") > before
    await eventually(touched, within=3)


async def test_websocket_messages_count_as_activity(timed_stack: Stack,
                                                    clock: ManualClock) -> None:
    stack = timed_stack
    activity = stack.gw.gateway.activity
    async with stack.http.ws_connect(stack.url(PROXY + "echo"),
                                     headers=bearer(stack.gw.token("bob"))) as ws:
        await counters_read(stack)  # the handshake's counters read
        before = activity.last_ms("bob")
        clock.advance(1.1)
        await ws.send_str("still here")
        await ws.receive(timeout=5)

        async def touched() -> bool:
            return activity.last_ms("bob") > before
        await eventually(touched, within=3)
