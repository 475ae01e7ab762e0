"""Envoy mode with 10,000 workspaces in its route table: hatchway as ``hatchway serve`` runs it
(jwt authorization), a real Envoy on the files it writes, and four upstreams that answer which
of them was reached and with which path. Every user's route rewrites to a path naming that
user, and users are spread over the upstreams, so an answer says whose route and cluster
carried the request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from launcher.routes import Route

from ..helpers import eventually, exchange
from .conftest import PROXY
from .test_envoy_jwt import Stack, _stack, bearer

USERS = [f"user{i:05d}" for i in range(10_000)]
SAMPLE = [USERS[0], USERS[1], USERS[4_999], USERS[5_000], USERS[7_777], USERS[-1]]
UPSTREAMS = 4


def _echo(index: int) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"upstream": index, "path": request.path,
                                  "remote_user": request.headers.get("remote_user")})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def _upstream_of(user: str) -> int:
    return int(user.removeprefix("user")) % UPSTREAMS


@pytest.fixture
async def crowd(start_gateway: Callable[..., Any], aiohttp_server: Any,
                tmp_path: Path) -> AsyncIterator[Stack]:
    async with _stack(start_gateway, aiohttp_server, tmp_path, users=()) as s:
        ports = [(await aiohttp_server(_echo(i), host="127.0.0.1")).port
                 for i in range(UPSTREAMS)]
        for user in USERS:
            s.gw.gateway.routes.set(user, Route("127.0.0.1", ports[_upstream_of(user)],
                                                f"/{user}/", source="test"))

        async def all_routed() -> bool:
            status, _ = await s.get(PROXY + "x", bearer(s.gw.token(USERS[-1])))
            return status == 200
        await eventually(all_routed, within=60)
        yield s


async def test_each_of_ten_thousand_users_reaches_only_their_own_upstream(crowd: Stack) -> None:
    for user in SAMPLE:
        status, body = await crowd.get(PROXY + "x?y=1", bearer(crowd.gw.token(user)))
        assert status == 200, (user, body)
        assert body == {"upstream": _upstream_of(user), "path": f"/{user}/x",
                        "remote_user": user}


async def test_session_cookie_picks_its_users_route_among_ten_thousand(crowd: Stack) -> None:
    for user in SAMPLE:
        status, body = await crowd.get(PROXY + "x",
                                       {"Cookie": f"access_token={crowd.gw.token(user)}"})
        assert (status, body["path"], body["upstream"]) == (200, f"/{user}/x",
                                                            _upstream_of(user))


# Every header the route lookup reads, in each spelling a client might try, naming the victim.
SPOOF = ("x-hatchway-verified-user: {victim}\r\nx-hatchway-verified-purpose: access\r\n"
         "x_hatchway_verified_user: {victim}\r\nx_hatchway_verified_purpose: access\r\n"
         "remote_user: {victim}\r\nRemote-User: {victim}\r\nREMOTE_USER: {victim}\r\n")


async def test_a_client_naming_another_user_still_reaches_its_own(crowd: Stack) -> None:
    """The attacker's exact bytes: a valid token for one user, and the headers the route
    lookup reads naming another user, before and after the token."""
    attacker, victim = USERS[1], USERS[5_000]
    spoof = SPOOF.format(victim=victim)
    request = (f"GET {PROXY}x HTTP/1.1\r\nHost: 127.0.0.1\r\n{spoof}"
               f"Authorization: Bearer {crowd.gw.token(attacker)}\r\n{spoof}"
               "Connection: close\r\n\r\n")
    status, _, body = await exchange(crowd.port, request)
    assert status == 200
    assert json.loads(body) == {"upstream": _upstream_of(attacker), "path": f"/{attacker}/x",
                                "remote_user": attacker}


async def test_a_client_without_a_session_naming_a_user_reaches_no_one(crowd: Stack) -> None:
    request = (f"GET {PROXY}x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"{SPOOF.format(victim=USERS[5_000])}Connection: close\r\n\r\n")
    status, _, body = await exchange(crowd.port, request)
    assert status == 401
    assert b"upstream" not in body
