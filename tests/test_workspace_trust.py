"""A workspace cannot pose as a trusted peer. Local workspaces share the host's network: a
process in alice's workspace can send from 127.0.0.2 (``curl --interface``) or 127.0.0.1 (the
address of a revproxy on the same host). Its ``REMOTE_USER: bob`` must not make it bob on any
listener, in the proxy or the API; a peer that is no workspace (root here: the test itself, as
revproxy or reaper) from the same address still is the user it names.

The attacker is a real process running as the uid alice's real, launched workspace runs as
(``setpriv``), sending its exact bytes over a raw socket; once, it is alice's workspace itself,
launched as any workspace is (sandbox and all). These run as root (this machine and CI do):
that is where hatchway gives each workspace a uid of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.errors import ConfigError
from launcher.owners import Owners
from proxy.api.devlogin import DEV_ISSUER
from proxy.gateway import GATEWAY
from proxy.serve.app import build_app
from proxy.serve.server import start
from proxy.sessions import local_peers
from proxy.sessions.trusted import TrustedPeers, parse_networks, trusted_peers
from proxy.settings import Settings

from .conftest import PROXY, GatewayUnderTest
from .helpers import (
    API,
    HATCHWAY,
    auth,
    clean_env,
    exchange,
    free_port,
    launch,
    option_id,
    status_becomes,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workspace uids need root")
SOURCES = [pytest.param("127.0.0.2", id="from-127.0.0.2"),
           pytest.param("127.0.0.1", id="from-127.0.0.1")]
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

# The attacker: connect from argv[2] to 127.0.0.1:argv[1], send argv[3] (else stdin), print
# the answer.
_ATTACK = """
import socket, sys
s = socket.socket()
s.bind((sys.argv[2], 0))
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[3].encode() if len(sys.argv) > 3 else sys.stdin.buffer.read())
answer = b""
while chunk := s.recv(65536):
    answer += chunk
sys.stdout.buffer.write(answer)
"""


async def exchange_as(uid: int, port: int, request: str, *, source: str) -> tuple[int, bytes]:
    """``request`` (``\\n`` line ends) sent by a process running as ``uid``; (status, body)."""
    proc = await asyncio.create_subprocess_exec(
        "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
        PYTHON, "-c", _ATTACK, str(port), source, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(
        proc.communicate(request.replace("\n", "\r\n").encode() + b"\r\n"), 20)
    assert proc.returncode == 0, err.decode()
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class Scene:
    """A gateway trusting ``source``, bob's workspace routed, and alice's workspace running
    as its own uid."""

    def __init__(self, gw: GatewayUnderTest, source: str, alice_uid: int) -> None:
        self.gw, self.source, self.alice_uid = gw, source, alice_uid

    async def as_alice(self, port: int, request: str) -> tuple[int, bytes]:
        return await exchange_as(self.alice_uid, port, request, source=self.source)

    async def as_root(self, port: int, request: str) -> tuple[int, bytes]:
        status, _, body = await exchange(port, request.replace("\n", "\r\n") + "\r\n",
                                         source=self.source)
        return status, body


async def _scene(start_gateway: Callable[..., Any], demo_workspace: Callable[[], Any],
                 client: aiohttp.ClientSession, source: str, **settings: Any) -> Scene:
    gw: GatewayUnderTest = await start_gateway(trusted_proxies=[source], ambassador_port=0,
                                               **settings)
    gw.publish("bob", await demo_workspace())
    await launch(client, gw, user="alice")
    await status_becomes(client, gw, "Running", user="alice")
    state = gw.gateway.settings
    alice = Owners(Path(state.state_dir), state.local.first_uid).claim("alice")
    assert alice.uid >= state.local.first_uid
    return Scene(gw, source, alice.uid)


@pytest.fixture(params=SOURCES)
async def scene(request: pytest.FixtureRequest, start_gateway: Callable[..., Any],
                demo_workspace: Callable[[], Any], client: aiohttp.ClientSession) -> Scene:
    return await _scene(start_gateway, demo_workspace, client, request.param)


def _proxy_get(user: str, extra: str = "") -> str:
    return (f"GET {PROXY}headers HTTP/1.1\nHost: x\nREMOTE_USER: {user}\n{extra}"
            "Connection: close\n")


# -- the proxy, on every listener ---------------------------------------------------------------

async def test_a_workspace_sending_remote_user_from_a_trusted_address_is_not_that_user(
        scene: Scene) -> None:
    status, body = await scene.as_alice(scene.gw.server.port, _proxy_get("bob"))
    assert status == 401 and b"bob" not in body


@pytest.mark.parametrize("source", SOURCES)
async def test_the_aiohttp_path_does_not_believe_a_workspaces_remote_user_either(
        start_gateway: Callable[..., Any], demo_workspace: Callable[[], Any],
        client: aiohttp.ClientSession, source: str) -> None:
    scene = await _scene(start_gateway, demo_workspace, client, source, fast_path=False)
    status, body = await scene.as_alice(scene.gw.server.port, _proxy_get("bob"))
    assert status == 401 and b"bob" not in body


async def test_a_workspace_cannot_use_the_ambassador_listener_by_header(scene: Scene) -> None:
    port = scene.gw.server.ambassador_port
    assert port is not None
    status, body = await scene.as_alice(
        port, "GET /headers HTTP/1.1\nHost: x\nREMOTE_USER: bob\nConnection: close\n")
    assert status == 401 and b"bob" not in body


async def test_a_workspaces_remote_user_does_not_outrank_its_own_token(scene: Scene) -> None:
    token = scene.gw.token("alice")
    status, body = await scene.as_alice(
        scene.gw.server.port, _proxy_get("bob", f"Authorization: Bearer {token}\n"))
    assert status == 200
    assert b'"REMOTE_USER": "alice"' in body and b"bob" not in body


async def test_envoys_check_does_not_believe_a_workspaces_remote_user(
        start_gateway: Callable[..., Any], demo_workspace: Callable[[], Any]) -> None:
    """Envoy mode: a workspace asking hatchway's ext_authz check itself, as Envoy would."""
    gw: GatewayUnderTest = await start_gateway(mode="envoy", trusted_proxies=["127.0.0.1"])
    gw.publish("bob", await demo_workspace())
    settings = gw.gateway.settings
    alice = Owners(Path(settings.state_dir), settings.local.first_uid).claim("alice")
    status, _ = await exchange_as(
        alice.uid, gw.server.port, f"GET /lw-workspace/_ext_authz{PROXY}headers HTTP/1.1\n"
        "Host: x\nREMOTE_USER: bob\nConnection: close\n", source="127.0.0.1")
    assert status == 401


async def test_alices_own_workspace_sending_remote_user_from_loopback_is_not_bob(
        make_settings: Callable[..., Settings], demo_workspace: Callable[[], Any],
        client: aiohttp.ClientSession, tmp_path: Path) -> None:
    """The attack as alice would run it: a workspace option of hers whose command is it."""
    port = free_port()
    request = f"GET {PROXY}headers HTTP/1.1\r\nHost: x\r\nREMOTE_USER: bob\r\n" \
              "Connection: close\r\n\r\n"
    attack = {"name": "Attack", "command": [sys.executable, "-c", _ATTACK, str(port),
                                            "127.0.0.1", request]}
    config = tmp_path / "hatchery.json"
    config.write_text(json.dumps({"containers": [attack]}))
    app = build_app(make_settings(hatchery_config=str(config), trusted_proxies=["127.0.0.1"]))
    running = await start(app, "127.0.0.1", port)
    try:
        gw = GatewayUnderTest(running, app[GATEWAY], app.get(DEV_ISSUER))
        gw.publish("bob", await demo_workspace())
        await launch(client, gw, "Attack", user="alice")
        await status_becomes(client, gw, "Stopped", user="alice")
        log = gw.gateway.backend.log_path("alice").read_bytes()  # type: ignore[attr-defined]
    finally:
        await running.close()
    answer = log[log.find(b"HTTP/1.1 "):]  # after the backend's "--- launching" line
    assert answer.startswith(b"HTTP/1.1 401 "), log[-600:]
    assert b'"REMOTE_USER": "bob"' not in answer


# -- the API ------------------------------------------------------------------------------------

async def test_a_workspace_cannot_launch_as_another_user(
        scene: Scene, client: aiohttp.ClientSession) -> None:
    oid = await option_id(client, scene.gw, "Demo")
    status, _ = await scene.as_alice(
        scene.gw.server.port,
        f"POST {API}launch?id={oid} HTTP/1.1\nHost: x\nREMOTE_USER: carol\n"
        "Content-Length: 0\nConnection: close\n")
    assert status == 401
    async with client.get(scene.gw.url(API + "status"), headers=auth(scene.gw, "carol")) as r:
        assert (await r.json())["status"] == "Not Found"


async def test_a_workspace_cannot_terminate_another_users_workspace(
        scene: Scene, client: aiohttp.ClientSession) -> None:
    await launch(client, scene.gw, user="carol")
    await status_becomes(client, scene.gw, "Running", user="carol")
    status, _ = await scene.as_alice(
        scene.gw.server.port,
        f"POST {API}terminate HTTP/1.1\nHost: x\nREMOTE_USER: carol\nContent-Length: 0\n"
        "Connection: close\n")
    assert status == 401
    async with client.get(scene.gw.url(API + "status"), headers=auth(scene.gw, "carol")) as r:
        assert (await r.json())["status"] == "Running"


# -- a peer that is no workspace, from the same address -----------------------------------------

async def test_a_peer_that_is_no_workspace_is_still_the_user_it_names(scene: Scene) -> None:
    status, body = await scene.as_root(scene.gw.server.port, _proxy_get("bob"))
    assert status == 200 and b'"REMOTE_USER": "bob"' in body


async def test_a_peer_that_is_no_workspace_still_uses_the_ambassador_listener(
        scene: Scene) -> None:
    port = scene.gw.server.ambassador_port
    assert port is not None
    status, body = await scene.as_root(
        port, "GET /headers HTTP/1.1\nHost: x\nREMOTE_USER: bob\nConnection: close\n")
    assert status == 200 and b'"REMOTE_USER": "bob"' in body


async def test_a_peer_that_is_no_workspace_still_terminates_by_remote_user(
        scene: Scene, client: aiohttp.ClientSession) -> None:
    """The hatchery-reaper's call, from the trusted address."""
    status, body = await scene.as_root(
        scene.gw.server.port, f"POST {API}terminate HTTP/1.1\nHost: x\nREMOTE_USER: alice\n"
                              "Content-Length: 0\nConnection: close\n")
    assert (status, body) == (200, b"Terminated workspace")


# -- one connection, one decision ----------------------------------------------------------------

Accepted = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def accepted() -> AsyncIterator[tuple[int, asyncio.Queue[Accepted]]]:
    """A listener on 127.0.0.1 and the connections it accepts (their transports are what
    TrustedPeers judges; their readers see the peer's FIN)."""
    queue: asyncio.Queue[Accepted] = asyncio.Queue()

    async def keep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue.put_nowait((reader, writer))

    server = await asyncio.start_server(keep, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], queue
    server.close()


async def _connect(port: int, source: str) -> socket.socket:
    peer = socket.socket()
    peer.bind((source, 0))
    await asyncio.to_thread(peer.connect, ("127.0.0.1", port))
    return peer


def _peers(source: str) -> TrustedPeers:
    return TrustedPeers(parse_networks([source]), first_workspace_uid=1_000_000_000)


async def test_a_peer_that_left_before_it_was_asked_is_not_trusted(
        accepted: tuple[int, asyncio.Queue[Accepted]]) -> None:
    """After its owner closes it, the kernel keeps the socket's remains (FIN_WAIT2,
    TIME_WAIT) with uid 0: that must not read as root."""
    port, connections = accepted
    peer = await _connect(port, "127.0.0.2")
    reader, connection = await asyncio.wait_for(connections.get(), 5)
    peer.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # its FIN is here: it has left
    assert not _peers("127.0.0.2").trusts(connection.transport)
    connection.close()


async def test_a_connected_root_peer_is_trusted_once_for_its_connection(
        accepted: tuple[int, asyncio.Queue[Accepted]]) -> None:
    port, connections = accepted
    peer = await _connect(port, "127.0.0.2")
    reader, connection = await asyncio.wait_for(connections.get(), 5)
    peers = _peers("127.0.0.2")
    assert peers.trusts(connection.transport)
    peer.close()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # its FIN is here: it has left
    assert peers.trusts(connection.transport)  # decided on the connection's first question
    connection.close()


def test_another_hosts_peer_is_trusted_by_its_address() -> None:
    """No socket of this host has the address pair, and the address is no local one."""
    assert not local_peers.address_is_local("192.0.2.77")
    assert local_peers.owner_uid(("192.0.2.77", 40000), ("127.0.0.1", 80)) is None


# -- start-up ----------------------------------------------------------------------------------

@pytest.mark.parametrize("trusted", ["127.0.0.1", "127.0.0.0/8", "::1"])
def test_trusting_this_hosts_address_is_refused_when_workspaces_share_hatchways_uid(
        trusted: str) -> None:
    with pytest.raises(ConfigError, match=r"trusted_proxies\[0\].*run hatchway as root"):
        trusted_peers([trusted], isolation="shared", first_workspace_uid=1_000_000_000)


def test_trusting_a_network_holding_a_host_address_is_refused_when_workspaces_share_its_uid(
        ) -> None:
    mine = next((n for n in local_peers.local_networks()
                 if n.version == 4 and not n.is_loopback), None)
    if mine is None:
        pytest.skip("this host has no address beside loopback")
    with pytest.raises(ConfigError, match=r"trusted_proxies\[1\]"):
        trusted_peers(["203.0.113.0/24", str(mine.supernet(new_prefix=16))],
                      isolation="shared", first_workspace_uid=1_000_000_000)


def test_other_hosts_addresses_are_trusted_when_workspaces_share_hatchways_uid() -> None:
    peers = trusted_peers(["203.0.113.7"], isolation="shared", first_workspace_uid=1)
    assert peers and peers.first_workspace_uid is None


def test_pods_are_trusted_by_address() -> None:
    peers = trusted_peers(["127.0.0.1"], isolation="pods", first_workspace_uid=1)
    assert peers and peers.first_workspace_uid is None


def test_hatchway_not_root_refuses_to_start_trusting_loopback() -> None:
    """The real command, as an unprivileged user: its workspaces would run as its own uid."""
    home = Path(tempfile.mkdtemp(prefix="hatchway-nonroot-"))
    try:
        home.chmod(0o755)
        config = home / "hatchway.yaml"
        config.write_text(f"trusted_proxies: ['127.0.0.1']\nstate_dir: {home / 'state'}\n")
        (home / "state").mkdir()
        os.chown(home / "state", 65534, 65534)
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *HATCHWAY,
             "serve", "--port", str(free_port()), "--config", str(config)],
            env={**clean_env(), "HOME": str(home)}, capture_output=True, text=True,
            timeout=60)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert proc.returncode == 2, proc.stderr
    assert "trusted_proxies[0]" in proc.stderr and "run hatchway as root" in proc.stderr
