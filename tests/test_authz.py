"""Authorization against a small Arborist-like server on 127.0.0.1 that records what it is asked."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from launcher.clock import ManualClock
from proxy.admission.authz import AllowAll, Allowlist, Arborist, AuthzUnavailable, build_authorizer
from proxy.sessions.tokens import Identity
from proxy.settings import AuthzSettings

ALICE = Identity(user="alice", token="token-alice", expires_at=time.time() + 1200)
BOB = Identity(user="bob", token="token-bob", expires_at=time.time() + 1200)


@dataclass
class FakeArborist:
    """Policy: tokens in ``workspace_users`` may access /workspace; tokens in ``launchers``
    may launch anything. ``status`` other than 200 makes every answer that status."""

    workspace_users: set[str] = field(default_factory=lambda: {"token-alice"})
    launchers: set[str] = field(default_factory=lambda: {"token-alice"})
    status: int = 200
    answer: Any = None  # overrides the /auth/request body when set
    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
async def arborist(aiohttp_server: Any) -> FakeArborist:
    state = FakeArborist()

    def bearer(request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    async def auth_proxy(request: web.Request) -> web.Response:
        state.seen.append({"path": request.path, "query": dict(request.query),
                           "token": bearer(request)})
        if state.status != 200:
            return web.Response(status=state.status)
        allowed = bearer(request) in state.workspace_users
        return web.Response(status=200 if allowed else 403, text="")

    async def auth_request(request: web.Request) -> web.Response:
        body = await request.json()
        state.seen.append({"path": request.path, "body": body, "token": bearer(request)})
        if state.status != 200:
            return web.Response(status=state.status)
        if state.answer is not None:
            return web.json_response(state.answer)
        return web.json_response({"auth": body["user"]["token"] in state.launchers})

    app = web.Application()
    app.router.add_get("/auth/proxy", auth_proxy)
    app.router.add_post("/auth/request", auth_request)
    server = await aiohttp_server(app, host="127.0.0.1")
    state.url = str(server.make_url("/"))
    return state


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def arborist_client(url: str, http: aiohttp.ClientSession, **kwargs: Any) -> Arborist:
    return Arborist(url, lambda: http, timeout_seconds=2.0, **kwargs)


async def test_gateway_asks_arborist_for_workspace_access(
        arborist: FakeArborist, http: aiohttp.ClientSession) -> None:
    assert await arborist_client(arborist.url, http).may_use_workspaces(ALICE) is True
    assert arborist.seen == [{
        "path": "/auth/proxy", "token": "token-alice",
        "query": {"resource": "/workspace", "service": "jupyterhub", "method": "access"},
    }]


async def test_gateway_denies_when_arborist_says_403(
        arborist: FakeArborist, http: aiohttp.ClientSession) -> None:
    assert await arborist_client(arborist.url, http).may_use_workspaces(BOB) is False


async def test_gateway_denies_when_arborist_says_401(
        arborist: FakeArborist, http: aiohttp.ClientSession) -> None:
    arborist.status = 401
    assert await arborist_client(arborist.url, http).may_use_workspaces(ALICE) is False


async def test_configured_resource_and_service_are_asked_for(
        arborist: FakeArborist, http: aiohttp.ClientSession) -> None:
    client = arborist_client(arborist.url, http, resource="/workspace/vip", service="hatchway")
    await client.may_use_workspaces(ALICE)
    assert arborist.seen[0]["query"] == {"resource": "/workspace/vip", "service": "hatchway",
                                         "method": "access"}


async def test_launch_request_has_hatcherys_exact_body(
        arborist: FakeArborist, http: aiohttp.ClientSession) -> None:
    paths = ["/workspace/gpu", "/programs/tutorial"]
    assert await arborist_client(arborist.url, http).may_launch(ALICE, paths) is True
    assert arborist.seen == [{
        "path": "/auth/request", "token": "token-alice",
        "body": {"user": {"token": "token-alice"}, "requests": [
            {"resource": "/workspace/gpu",
             "action": {"service": "jupyterhub", "method": "launch"}},
            {"resource": "/programs/tutorial",
             "action": {"service": "jupyterhub", "method": "launch"}},
        ]},
    }]


async def test_launch_denied_when_arborist_answers_auth_false(
        arborist: FakeArborist, http: aiohttp.ClientSession) -> None:
    assert await arborist_client(arborist.url, http).may_launch(BOB, ["/workspace/gpu"]) is False


async def test_unguarded_option_is_allowed_without_asking(
        arborist: FakeArborist, http: aiohttp.ClientSession) -> None:
    assert await arborist_client(arborist.url, http).may_launch(BOB, []) is True
    assert arborist.seen == []


async def test_decisions_are_cached_per_token_and_question(
        arborist: FakeArborist, http: aiohttp.ClientSession) -> None:
    client = arborist_client(arborist.url, http)
    for _ in range(3):
        assert await client.may_use_workspaces(ALICE) is True
        assert await client.may_use_workspaces(BOB) is False
        assert await client.may_launch(ALICE, ["/a"]) is True
    assert len(arborist.seen) == 3
    await client.may_launch(ALICE, ["/b"])
    assert len(arborist.seen) == 4


async def test_cached_decision_expires(arborist: FakeArborist, http: aiohttp.ClientSession,
                                       clock: ManualClock) -> None:
    client = arborist_client(arborist.url, http, cache_seconds=0.2, clock=clock)
    assert await client.may_use_workspaces(ALICE) is True
    arborist.workspace_users.clear()  # access revoked in Arborist
    assert await client.may_use_workspaces(ALICE) is True
    clock.advance(0.25)
    assert await client.may_use_workspaces(ALICE) is False
    assert len(arborist.seen) == 2


async def test_arborist_error_is_unavailable_and_not_cached(
        arborist: FakeArborist, http: aiohttp.ClientSession) -> None:
    client = arborist_client(arborist.url, http)
    arborist.status = 500
    with pytest.raises(AuthzUnavailable):
        await client.may_use_workspaces(ALICE)
    with pytest.raises(AuthzUnavailable):
        await client.may_launch(ALICE, ["/a"])
    arborist.status = 200
    assert await client.may_use_workspaces(ALICE) is True
    assert await client.may_launch(ALICE, ["/a"]) is True
    assert len(arborist.seen) == 4


@pytest.mark.parametrize("answer", [{"auth": "yes"}, {}, ["auth"]])
async def test_launch_answer_without_boolean_auth_is_unavailable(
        answer: Any, arborist: FakeArborist, http: aiohttp.ClientSession) -> None:
    arborist.answer = answer
    with pytest.raises(AuthzUnavailable):
        await arborist_client(arborist.url, http).may_launch(ALICE, ["/a"])


async def test_arborist_down_is_unavailable(http: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = arborist_client(f"http://127.0.0.1:{port}", http)
    with pytest.raises(AuthzUnavailable):
        await client.may_use_workspaces(ALICE)
    with pytest.raises(AuthzUnavailable):
        await client.may_launch(ALICE, ["/a"])


async def test_allowlist_admits_only_listed_users() -> None:
    allowlist = Allowlist(["alice"])
    assert await allowlist.may_use_workspaces(ALICE) is True
    assert await allowlist.may_use_workspaces(BOB) is False
    assert await allowlist.may_launch(ALICE, ["/workspace/gpu"]) is True
    assert await allowlist.may_launch(BOB, []) is False


async def test_allow_all_allows_everyone() -> None:
    assert await AllowAll().may_use_workspaces(BOB) is True
    assert await AllowAll().may_launch(BOB, ["/workspace/gpu"]) is True


async def test_build_authorizer_follows_authz_mode(arborist: FakeArborist,
                                                   http: aiohttp.ClientSession) -> None:
    assert isinstance(build_authorizer(AuthzSettings(), lambda: http), AllowAll)
    allowlist = build_authorizer(AuthzSettings(mode="allowlist", users=["bob"]), lambda: http)
    assert await allowlist.may_use_workspaces(BOB) is True
    built = build_authorizer(AuthzSettings(mode="arborist", arborist_url=arborist.url,
                                           resource="/ws"), lambda: http)
    assert await built.may_use_workspaces(ALICE) is True
    assert arborist.seen[0]["query"]["resource"] == "/ws"
