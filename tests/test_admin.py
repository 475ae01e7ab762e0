"""The operator's view (``<prefix>/admin/``) on the local backend, through real sockets: Fence
sessions checked by JWKS, the contract Arborist (tests/arborist_contract.py) deciding who holds
the admin grant. An operator sees every workspace and stops any; everyone else gets no data."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest

from .arborist_contract import ArboristContract, Grant
from .conftest import GatewayUnderTest
from .helpers import FENCE_ISSUER, JWKSServer, eventually, exchange, fence_token

API = "/lw-workspace/"
ADMIN = API + "admin/"
OPERATOR = "ops"
HOSTILE = "<img src=x onerror=alert(1)>@example.org"
ADMIN_GRANT = Grant("/services/hatchway/admin", "jupyterhub", "admin")
WORKSPACE = Grant("/workspace", "jupyterhub", "access")


@dataclass
class Commons:
    gw: GatewayUnderTest
    arborist: ArboristContract
    key: Any

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {fence_token(self.key, user)}"}


@pytest.fixture
async def commons(aiohttp_server: Any, start_gateway: Callable[..., Any],
                  jwks_server: JWKSServer, rsa_key: Any) -> Commons:
    arborist = ArboristContract(jwks_server.url)
    for user in ("alice", "bob", HOSTILE, OPERATOR):
        arborist.grant(user, WORKSPACE)
    arborist.grant(OPERATOR, ADMIN_GRANT)
    server = await aiohttp_server(arborist.app(), host="127.0.0.1")
    arborist.url = str(server.make_url(""))
    gw: GatewayUnderTest = await start_gateway(
        sessions={"mode": "jwks", "jwks_url": jwks_server.url, "issuer": FENCE_ISSUER},
        authz={"mode": "arborist", "arborist_url": arborist.url},
        trusted_proxies=["127.0.0.1"])
    return Commons(gw, arborist, rsa_key)


class Portal:
    """The Hatchery API as the portal calls it, for a Fence-token commons."""

    def __init__(self, commons: Commons, http: aiohttp.ClientSession) -> None:
        self.c, self.http = commons, http

    async def launch(self, user: str) -> None:
        gw = self.c.gw
        async with self.http.get(gw.url(API + "options"), headers=self.c.auth(user)) as r:
            oid = next(o["id"] for o in await r.json() if "Demo" in o["name"])
        async with self.http.post(gw.url(f"{API}launch?id={oid}"),
                                  headers=self.c.auth(user)) as r:
            assert (r.status, await r.text()) == (200, "Success")

    async def status(self, user: str) -> str:
        async with self.http.get(self.c.gw.url(API + "status"), headers=self.c.auth(user)) as r:
            return str((await r.json())["status"])


@pytest.fixture
async def running(commons: Commons, client: aiohttp.ClientSession) -> Portal:
    """alice's and bob's demo workspaces, Running."""
    portal = Portal(commons, client)
    for user in ("alice", "bob"):
        await portal.launch(user)
    for user in ("alice", "bob"):
        await eventually(lambda u=user: _is_running(portal, u), within=20, interval=0.1)
    return portal


async def _is_running(portal: Portal, user: str) -> bool:
    return await portal.status(user) == "Running"


async def listing(commons: Commons, http: aiohttp.ClientSession, user: str) -> Any:
    async with http.get(commons.gw.url(ADMIN + "workspaces"), headers=commons.auth(user)) as r:
        return r.status, await r.text()


# -- who may ---------------------------------------------------------------------------------

async def test_an_operator_lists_every_workspace(
        commons: Commons, running: Portal, client: aiohttp.ClientSession) -> None:
    status, text = await listing(commons, client, OPERATOR)
    assert status == 200, text
    rows = json.loads(text)["workspaces"]
    assert [r["user"] for r in rows] == ["alice", "bob"]
    alice = rows[0]
    assert alice["status"] == "Running"
    assert alice["option"]["name"] == "Demo workspace (built-in)"
    assert alice["option"]["offered"] is True and len(alice["option"]["id"]) == 32
    assert 0 <= alice["age_seconds"] < 120 and alice["started_at"] > 0
    assert alice["last_activity"] > 0  # the launch counts
    assert alice["pay_model"] is None and alice["cost_so_far"] is None  # no pay models here


async def test_the_grant_asked_is_admin_on_the_admin_resource(
        commons: Commons, client: aiohttp.ClientSession) -> None:
    await listing(commons, client, OPERATOR)
    assert {"resource": "/services/hatchway/admin", "service": "jupyterhub",
            "method": "admin"} in [dict(_query(a["query"])) for a in commons.arborist.asked]


def _query(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text)


async def test_a_user_without_the_grant_gets_403_and_no_data(
        commons: Commons, running: Portal, client: aiohttp.ClientSession) -> None:
    status, text = await listing(commons, client, "alice")
    assert status == 403
    assert "bob" not in text and "Demo" not in text


async def test_no_session_gets_401(commons: Commons, client: aiohttp.ClientSession) -> None:
    async with client.get(commons.gw.url(ADMIN + "workspaces")) as r:
        assert r.status == 401


async def test_a_trusted_peers_remote_user_alone_is_no_operator(
        commons: Commons, running: Portal) -> None:
    status, _, body = await exchange(commons.gw.server.port, (
        f"GET {ADMIN}workspaces HTTP/1.1\r\nHost: x\r\nREMOTE_USER: {OPERATOR}\r\n"
        "Connection: close\r\n\r\n"))
    assert status == 401 and b"bob" not in body


async def test_a_user_without_the_grant_cannot_stop_anyone(
        commons: Commons, running: Portal, client: aiohttp.ClientSession) -> None:
    async with client.post(commons.gw.url(ADMIN + "workspaces/stop?user=bob"),
                           headers=commons.auth("alice")) as r:
        assert r.status == 403
    assert await running.status("bob") == "Running"


# -- stopping --------------------------------------------------------------------------------

async def test_an_operator_stops_a_workspace_and_the_log_names_who(
        commons: Commons, running: Portal, client: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "hatchway.admin")
    gw = commons.gw
    async with client.post(gw.url(ADMIN + "workspaces/stop?user=bob"),
                           headers={**commons.auth(OPERATOR), "Origin": gw.base}) as r:
        assert (r.status, await r.json()) == (200, {"stopped": "bob"})
    assert await running.status("bob") == "Not Found"
    assert await running.status("alice") == "Running"
    lines = [r for r in caplog.records if getattr(r, "action", "") == "stop"]
    assert [(r.actor, r.target, r.outcome) for r in lines] == [  # type: ignore[attr-defined]
        (OPERATOR, "bob", "stopped")]


async def test_stopping_nobody_is_404(commons: Commons, client: aiohttp.ClientSession) -> None:
    async with client.post(commons.gw.url(ADMIN + "workspaces/stop?user=carol"),
                           headers=commons.auth(OPERATOR)) as r:
        assert r.status == 404


async def test_stopping_needs_post(commons: Commons, running: Portal,
                                   client: aiohttp.ClientSession) -> None:
    async with client.get(commons.gw.url(ADMIN + "workspaces/stop?user=bob"),
                          headers=commons.auth(OPERATOR)) as r:
        assert r.status == 405
    assert await running.status("bob") == "Running"


async def test_a_cross_site_stop_is_refused(commons: Commons, running: Portal) -> None:
    """A page on another site posting with the operator's cookie: the browser's exact bytes."""
    token = fence_token(commons.key, OPERATOR)
    port = commons.gw.server.port
    status, _, _ = await exchange(port, (
        f"POST {ADMIN}workspaces/stop?user=bob HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Origin: https://evil.example\r\nCookie: access_token={token}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"))
    assert status == 403
    assert await running.status("bob") == "Running"


# -- the page --------------------------------------------------------------------------------

async def test_the_page_is_for_operators_only(commons: Commons,
                                              client: aiohttp.ClientSession) -> None:
    async with client.get(commons.gw.url(ADMIN), headers=commons.auth("alice")) as r:
        assert r.status == 403
    async with client.get(commons.gw.url(ADMIN), headers=commons.auth(OPERATOR)) as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert "textContent" in await r.text()
