"""Identity as Gen3 delivers it: ``REMOTE_USER`` from the stock revproxy (prefix stripped) and
from the hatchery-reaper (``REMOTE_USER`` alone), believed only from ``trusted_proxies``.

The trusted peer is 127.0.0.2, the untrusted one 127.0.0.1: the client socket is bound to
that source address, so the gateway sees a real peer address, as it would a pod's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from launcher.errors import ConfigError
from launcher.names import hatchery_user
from proxy.settings import load_settings

from .conftest import PROXY, GatewayUnderTest
from .helpers import exchange

TRUSTED, UNTRUSTED = "127.0.0.2", "127.0.0.1"


@pytest.fixture
async def from_addr() -> AsyncIterator[Callable[[str], aiohttp.ClientSession]]:
    """Clients whose connections leave from a given loopback address."""
    sessions: list[aiohttp.ClientSession] = []

    def make(addr: str) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(addr, 0), force_close=True),
            cookie_jar=aiohttp.DummyCookieJar())
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
async def gen3(start_gateway: Callable[..., Any], demo_workspace: Callable[[], Any]
               ) -> GatewayUnderTest:
    """A gateway trusting 127.0.0.2, with the ambassador listener, alice's workspace routed."""
    gw: GatewayUnderTest = await start_gateway(trusted_proxies=[f"{TRUSTED}/32"],
                                               ambassador_port=0)
    gw.publish("alice", await demo_workspace())
    return gw


def ambassador(gw: GatewayUnderTest, path: str) -> str:
    return f"http://127.0.0.1:{gw.server.ambassador_port}{path}"


async def raw(port: int, source: str, head: str) -> tuple[int, bytes]:
    """The exact bytes, from ``source``; returns (status, body)."""
    status, _, body = await exchange(port, head.replace("\n", "\r\n") + "\r\n", source=source)
    return status, body


# -- the hatchery-reaper's calls -------------------------------------------------------------

@pytest.mark.parametrize("path", ["/status", "/lw-workspace/status"])
async def test_a_trusted_peers_remote_user_is_the_user(
        gen3: GatewayUnderTest, from_addr: Callable[[str], aiohttp.ClientSession],
        path: str) -> None:
    async with from_addr(TRUSTED).get(gen3.url(path), headers={"REMOTE_USER": "alice"}) as r:
        assert r.status == 200
        assert (await r.json())["status"] == "Not Found"  # the local backend launched nothing


async def test_the_reaper_reads_paymodels_as_from_hatchery(
        gen3: GatewayUnderTest, from_addr: Callable[[str], aiohttp.ClientSession]) -> None:
    async with from_addr(TRUSTED).get(gen3.url("/paymodels"),
                                      headers={"REMOTE_USER": "alice"}) as r:
        assert (r.status, await r.text()) == (404, "Current paymodel not set\n")


async def test_the_reaper_reads_the_workspaces_api_status_through_the_ambassador_listener(
        gen3: GatewayUnderTest, from_addr: Callable[[str], aiohttp.ClientSession]) -> None:
    async with from_addr(TRUSTED).get(ambassador(gen3, "/api/status"),
                                      headers={"REMOTE_USER": "alice"}) as r:
        assert r.status == 200
        assert "last_activity" in await r.json()


async def test_the_reapers_calls_are_not_the_users_activity(
        gen3: GatewayUnderTest, from_addr: Callable[[str], aiohttp.ClientSession]) -> None:
    async with from_addr(TRUSTED).get(ambassador(gen3, "/api/status"),
                                      headers={"REMOTE_USER": "alice"}) as r:
        assert r.status == 200
    assert gen3.gateway.activity.last_ms("alice") == 0


async def test_the_reaper_terminates_with_remote_user_alone(
        start_gateway: Callable[..., Any],
        from_addr: Callable[[str], aiohttp.ClientSession]) -> None:
    gw: GatewayUnderTest = await start_gateway(trusted_proxies=[f"{TRUSTED}/32"])
    reaper = from_addr(TRUSTED)
    async with reaper.get(gw.url("/options"), headers={"REMOTE_USER": "carol"}) as r:
        oid = next(o["id"] for o in await r.json() if "Demo" in o["name"])
    async with reaper.post(gw.url(f"/launch?id={oid}"), headers={"REMOTE_USER": "carol"}) as r:
        assert (r.status, await r.text()) == (200, "Success")
    async with reaper.post(gw.url("/terminate"), headers={"REMOTE_USER": "carol"}) as r:
        assert (r.status, await r.text()) == (200, "Terminated workspace")


# -- the revproxy's browser traffic ----------------------------------------------------------

async def test_the_ambassador_listener_relays_the_stripped_path_to_the_users_workspace(
        gen3: GatewayUnderTest, from_addr: Callable[[str], aiohttp.ClientSession]) -> None:
    async with from_addr(TRUSTED).get(ambassador(gen3, "/headers?x=1"),
                                      headers={"REMOTE_USER": "alice"}) as r:
        body = await r.json()
    assert body["path"] == PROXY + "headers?x=1"
    assert body["headers"]["REMOTE_USER"] == "alice"


async def test_a_trusted_remote_user_is_html_escaped_as_hatchery_does(
        gen3: GatewayUnderTest, demo_workspace: Callable[[], Any],
        from_addr: Callable[[str], aiohttp.ClientSession]) -> None:
    name = "o'brien&<x>\"q"
    escaped = "o&#39;brien&amp;&lt;x&gt;&#34;q"
    gen3.publish(escaped, await demo_workspace())
    async with from_addr(TRUSTED).get(gen3.url(PROXY + "headers"),
                                      headers={"REMOTE_USER": name}) as r:
        assert (await r.json())["headers"]["REMOTE_USER"] == escaped


def test_hatchery_user_escapes_as_gos_html_escapestring() -> None:
    assert hatchery_user("a<b>&'\"é") == "a&lt;b&gt;&amp;&#39;&#34;é"


async def test_a_trusted_remote_user_outranks_the_forwarded_token_even_on_the_fast_path(
        gen3: GatewayUnderTest, demo_workspace: Callable[[], Any],
        from_addr: Callable[[str], aiohttp.ClientSession]) -> None:
    """The fast path authenticates by token only; it must hand REMOTE_USER requests to
    aiohttp, or a revproxy's user would be read from the token here and the header there."""
    gen3.publish("bob", await demo_workspace())
    headers = {"REMOTE_USER": "bob", "Authorization": f"Bearer {gen3.token('alice')}"}
    async with from_addr(TRUSTED).get(gen3.url(PROXY + "headers"), headers=headers) as r:
        assert (await r.json())["headers"]["REMOTE_USER"] == "bob"


async def test_two_remote_user_headers_from_a_trusted_peer_are_refused(
        gen3: GatewayUnderTest) -> None:
    status, _ = await raw(gen3.server.port, TRUSTED,
                          "GET /status HTTP/1.1\nHost: x\nREMOTE_USER: alice\n"
                          "REMOTE_USER: bob\nConnection: close\n")
    assert status == 400


# -- everyone else ---------------------------------------------------------------------------

async def test_an_untrusted_peers_remote_user_is_no_identity(gen3: GatewayUnderTest) -> None:
    status, body = await raw(gen3.server.port, UNTRUSTED,
                             "GET /lw-workspace/proxy/headers HTTP/1.1\nHost: x\n"
                             "REMOTE_USER: alice\nConnection: close\n")
    assert status == 401 and b"alice" not in body


async def test_an_untrusted_peer_cannot_use_the_ambassador_listener_by_header(
        gen3: GatewayUnderTest) -> None:
    assert gen3.server.ambassador_port is not None
    status, _ = await raw(gen3.server.ambassador_port, UNTRUSTED,
                          "GET /headers HTTP/1.1\nHost: x\nREMOTE_USER: alice\n"
                          "Connection: close\n")
    assert status == 401



SPOOFED_PEER = (f"X-Forwarded-For: {TRUSTED}\nX-Real-IP: {TRUSTED}\nForwarded: for={TRUSTED}\n"
                f"X-Forwarded-Host: {TRUSTED}\n")


@pytest.mark.parametrize("listener", ["main", "ambassador"])
async def test_forwarding_headers_naming_a_trusted_peer_make_no_peer_trusted(
        gen3: GatewayUnderTest, listener: str) -> None:
    """Trust is the TCP peer's address; headers any client can write never stand in for it."""
    port = gen3.server.port if listener == "main" else gen3.server.ambassador_port
    assert port is not None
    status, body = await raw(port, UNTRUSTED,
                             f"GET {PROXY if listener == 'main' else '/'}headers HTTP/1.1\n"
                             f"Host: x\n{SPOOFED_PEER}REMOTE_USER: alice\nConnection: close\n")
    assert status == 401 and b"alice" not in body

async def test_an_untrusted_peers_remote_user_is_stripped_and_its_token_decides(
        gen3: GatewayUnderTest, demo_workspace: Callable[[], Any],
        from_addr: Callable[[str], aiohttp.ClientSession]) -> None:
    gen3.publish("bob", await demo_workspace())
    headers = {"REMOTE_USER": "bob", "Authorization": f"Bearer {gen3.token('alice')}"}
    async with from_addr(UNTRUSTED).get(gen3.url(PROXY + "headers"), headers=headers) as r:
        assert (await r.json())["headers"]["REMOTE_USER"] == "alice"


async def test_no_peer_is_trusted_by_default(
        start_gateway: Callable[..., Any],
        from_addr: Callable[[str], aiohttp.ClientSession]) -> None:
    gw: GatewayUnderTest = await start_gateway()
    async with from_addr(TRUSTED).get(gw.url("/status"), headers={"REMOTE_USER": "alice"}) as r:
        assert r.status == 401


def test_a_wrong_trusted_proxies_entry_stops_start_up() -> None:
    with pytest.raises(ConfigError, match=r"trusted_proxies\[1\]"):
        load_settings([], environ={}, overrides={"trusted_proxies": ["10.0.0.0/8", "pods"]})


async def test_the_stripped_api_answers_session_holders_too(
        gen3: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(gen3.url("/options"), cookies=gen3.cookies("alice")) as r:
        assert r.status == 200 and isinstance(json.loads(await r.text()), list)
