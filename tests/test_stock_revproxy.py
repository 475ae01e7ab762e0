"""hatchway behind Gen3's stock revproxy: the real Debian nginx running gen3-helm's own server
block, hatchery-service, ambassador-service and Arborist locations (tests/fixtures/revproxy/,
every substitution listed there), an Arborist answering ``/auth/proxy`` as Arborist does
(tests/arborist_contract.py), and a real hatchway trusting only nginx's address.

As the Helm chart (deploy/helm/hatchway) wires it: ``hatchery-service`` is hatchway's main port,
``ambassador-service`` its ``ambassador_port`` listener. Everything goes over loopback.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from .arborist_contract import ArboristContract, Grant
from .conftest import PROXY, GatewayUnderTest
from .helpers import JWKSServer, eventually, exchange, free_port, listening, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(
    not Path(NGINX).is_file(), reason=f"no nginx at {NGINX} (make debs installs nginx-light)")

FIXTURES = Path(__file__).parent / "fixtures" / "revproxy"
REPO = Path(__file__).resolve().parents[1]
HOST = "commons.example.org"
ISSUER = f"https://{HOST}/user"
WORKSPACE = Grant("/workspace", "jupyterhub", "access")  # what the /gen3-authz location asks


# -- nginx, as revproxy runs it -----------------------------------------------------------------

def render(dest: Path, values: dict[str, str], *, gen3_conf: dict[str, str] | None = None) -> Path:
    """The fixture config with its placeholders filled in, under ``dest``; ``gen3_conf``
    replaces the files included from gen3.conf/ (name → text), as an operator would."""
    conf_dir = dest / "gen3.conf"
    conf_dir.mkdir(parents=True)
    files = {p.name: p.read_text() for p in sorted((FIXTURES / "gen3.conf").glob("*.conf"))}
    if gen3_conf is not None:
        files = {**{k: v for k, v in files.items() if k == "arborist-service.conf"},
                 **gen3_conf}
    for name, text in files.items():
        (conf_dir / name).write_text(fill(text, values))
    main = dest / "nginx.conf"
    main.write_text(fill((FIXTURES / "nginx.conf").read_text(), values))
    return main


def fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, f"placeholders left unfilled: {left}"
    return text


def nginx_command(conf: Path, *extra: str) -> list[str]:
    return [NGINX, "-p", str(conf.parent), "-c", str(conf), "-e", "stderr", *extra]


@contextmanager
def nginx_running(conf: Path, port: int) -> Iterator[Path]:
    """nginx in the foreground until the block ends; yields its stderr file."""
    err = conf.parent / "stderr.txt"
    with err.open("wb") as stderr, (conf.parent / "access.log").open("wb") as stdout:
        proc = subprocess.Popen(nginx_command(conf, "-g", "daemon off;"),
                                stdout=stdout, stderr=stderr)
    try:
        def listens() -> bool:
            assert proc.poll() is None, f"nginx exited: {err.read_text()}"
            return listening("127.0.0.1", port)
        wait_until(listens, 10, interval=0.05,
                   failure=lambda: f"nginx never listened: {err.read_text()}")
        yield err
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the commons: nginx → (Arborist, hatchway) ----------------------------------------------------

@dataclass
class Commons:
    port: int  # nginx
    gw: GatewayUnderTest  # hatchway behind it
    arborist: ArboristContract
    key: Any  # Fence's signing key (kid rsa-1 in the JWKS)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, user: str, **claims: Any) -> str:
        """A Fence access token, claims as Fence writes them."""
        now = int(time.time())
        body = {"pur": "access", "iss": ISSUER, "aud": ["gen3", "openid", "user"], "sub": "7",
                "iat": now, "exp": now + 1200, "jti": uuid.uuid4().hex, "azp": "",
                "scope": ["openid", "user", "data"], "context": {"user": {"name": user}},
                **claims}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": "rsa-1"})

    def browser(self, user: str) -> dict[str, str]:
        """What a signed-in browser sends: the commons' Host and Fence's cookie."""
        return {"Host": HOST, "Cookie": f"access_token={self.token(user)}"}


@pytest.fixture
async def commons(tmp_path: Path, aiohttp_server: Any, start_gateway: Callable[..., Any],
                  jwks_server: JWKSServer, rsa_key: Any) -> AsyncIterator[Commons]:
    arborist = ArboristContract(jwks_server.url)
    for user in ("alice", "bob", "victim"):
        arborist.grant(user, WORKSPACE)
    arborist_server = await aiohttp_server(arborist.app(), host="127.0.0.1")
    arborist.url = str(arborist_server.make_url(""))
    gw: GatewayUnderTest = await start_gateway(
        sessions={"mode": "jwks", "jwks_url": jwks_server.url, "issuer": ISSUER},
        authz={"mode": "arborist", "arborist_url": arborist.url},
        trusted_proxies=["127.0.0.1"], ambassador_port=0)
    port = free_port()
    conf = render(tmp_path / "nginx", {
        "USER": getpass.getuser(), "TMP": str(tmp_path / "nginx"), "PORT": str(port),
        "HATCHERY_PORT": str(gw.server.port), "AMBASSADOR_PORT": str(gw.server.ambassador_port),
        "ARBORIST_PORT": str(arborist_server.port)})
    with nginx_running(conf, port):
        yield Commons(port, gw, arborist, rsa_key)


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def raw(port: int, head: str, *, head_only: bool = False
              ) -> tuple[int, dict[str, str], bytes]:
    """The exact bytes to nginx; returns (status, headers, body). ``head_only``: read the
    answer's head and stop (for a connection nginx keeps open)."""
    return await exchange(port, head.replace("\n", "\r\n") + "\r\n", head_only=head_only)


async def demo_option(commons: Commons, browser: aiohttp.ClientSession, user: str) -> str:
    async with browser.get(commons.base + "/lw-workspace/options",
                           headers=commons.browser(user)) as r:
        assert r.status == 200, await r.text()
        return str(next(o["id"] for o in await r.json() if "Demo" in o["name"]))


async def launch(commons: Commons, browser: aiohttp.ClientSession, user: str) -> None:
    oid = await demo_option(commons, browser, user)
    async with browser.post(commons.base + f"/lw-workspace/launch?id={oid}",
                            headers=commons.browser(user)) as r:
        assert (r.status, await r.text()) == (200, "Success")


async def status(commons: Commons, browser: aiohttp.ClientSession, user: str) -> str:
    async with browser.get(commons.base + "/lw-workspace/status",
                           headers=commons.browser(user)) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["status"])


async def running(commons: Commons, browser: aiohttp.ClientSession, user: str,
                  within: float = 30) -> None:
    await launch(commons, browser, user)

    async def is_running() -> bool:
        return await status(commons, browser, user) == "Running"
    await eventually(is_running, within, interval=0.2)


# -- a signed-in user, through nginx ------------------------------------------------------------

async def test_options_are_listed_through_the_hatchery_location(
        commons: Commons, browser: aiohttp.ClientSession) -> None:
    async with browser.get(commons.base + "/lw-workspace/options",
                           headers=commons.browser("alice")) as r:
        assert r.status == 200
        options = await r.json()
    assert any("Demo" in o["name"] for o in options)
    assert all({"name", "id", "cpu-limit", "memory-limit"} <= o.keys() for o in options)


async def test_launch_succeeds_through_the_hatchery_location(
        commons: Commons, browser: aiohttp.ClientSession) -> None:
    await launch(commons, browser, "alice")


async def test_a_launched_workspace_goes_running(
        commons: Commons, browser: aiohttp.ClientSession) -> None:
    await running(commons, browser, "alice")


async def test_the_ambassador_location_reaches_the_users_own_workspace(
        commons: Commons, browser: aiohttp.ClientSession) -> None:
    await running(commons, browser, "alice")
    async with browser.get(commons.base + PROXY + "headers?x=1",
                           headers=commons.browser("alice")) as r:
        assert r.status == 200, await r.text()
        seen = await r.json()
    assert seen["headers"]["REMOTE_USER"] == "alice"
    assert seen["path"] == PROXY + "headers?x=1"



async def test_a_users_traffic_through_nginx_is_the_users_activity(
        commons: Commons, browser: aiohttp.ClientSession,
        demo_workspace: Callable[[], Any]) -> None:
    """The culler reads it: a workspace in use behind revproxy must not look idle."""
    commons.gw.publish("alice", await demo_workspace())
    assert commons.gw.gateway.activity.last_ms("alice") == 0
    async with browser.get(commons.base + PROXY + "headers",
                           headers=commons.browser("alice")) as r:
        assert r.status == 200
    assert commons.gw.gateway.activity.last_ms("alice") > 0

async def test_a_websocket_reaches_the_users_own_workspace(
        commons: Commons, browser: aiohttp.ClientSession) -> None:
    await running(commons, browser, "alice")
    headers = {**commons.browser("alice"), "Origin": f"https://{HOST}"}
    async with browser.ws_connect(commons.base + PROXY + "echo", headers=headers) as ws:
        await ws.send_str("ping through nginx")
        assert (await ws.receive_str(timeout=10)) == "ping through nginx"
        await ws.send_bytes(b"\x00\x01" * 5000)
        assert (await ws.receive_bytes(timeout=10)) == b"\x00\x01" * 5000


async def test_terminate_succeeds_through_the_hatchery_location(
        commons: Commons, browser: aiohttp.ClientSession) -> None:
    await running(commons, browser, "alice")
    async with browser.post(commons.base + "/lw-workspace/terminate",
                            headers=commons.browser("alice")) as r:
        assert (r.status, await r.text()) == (200, "Terminated workspace")
    async def gone() -> bool:
        return await status(commons, browser, "alice") == "Not Found"
    await eventually(gone, 20, interval=0.2)


# -- attackers, over a raw socket to nginx --------------------------------------------------------

SPELLINGS = ["REMOTE_USER", "remote_user", "Remote_User", "Remote-User", "REMOTE-USER",
             "remote-user"]


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_a_clients_remote_user_never_reaches_another_users_workspace(
        commons: Commons, demo_workspace: Callable[[], Any], spelling: str) -> None:
    """alice's token and a REMOTE_USER header naming bob: nginx and hatchway act for alice."""
    commons.gw.publish("alice", await demo_workspace())
    commons.gw.publish("bob", await demo_workspace())
    status_code, _, body = await raw(commons.port, (
        f"GET {PROXY}headers HTTP/1.1\nHost: {HOST}\n{spelling}: bob\n"
        f"Cookie: access_token={commons.token('alice')}\nConnection: close\n"))
    assert status_code == 200, body
    seen = json.loads(body)
    assert seen["headers"]["REMOTE_USER"] == "alice"
    assert "bob" not in json.dumps(seen["header_list"])


async def test_a_clients_remote_user_never_makes_the_api_act_for_another_user(
        commons: Commons, browser: aiohttp.ClientSession) -> None:
    await running(commons, browser, "victim")
    for spelling in SPELLINGS:
        status_code, _, body = await raw(commons.port, (
            f"GET /lw-workspace/status HTTP/1.1\nHost: {HOST}\n{spelling}: victim\n"
            f"Cookie: access_token={commons.token('alice')}\nConnection: close\n"))
        assert status_code == 200, (spelling, body)
        assert json.loads(body)["status"] == "Not Found", spelling  # alice's, not victim's


@pytest.mark.parametrize("path", ["/lw-workspace/status", PROXY + "headers"])
async def test_a_remote_user_header_without_a_token_is_answered_by_nginx_alone(
        commons: Commons, demo_workspace: Callable[[], Any], path: str) -> None:
    commons.gw.publish("victim", await demo_workspace())
    status_code, headers, body = await raw(commons.port, (
        f"GET {path} HTTP/1.1\nHost: {HOST}\nREMOTE_USER: victim\nRemote-User: victim\n"
        "Connection: close\n"))
    # Arborist's 401 for a request without Authorization, answered by nginx itself
    assert commons.arborist.asked[-1]["authorization"] == ""
    assert status_code == 401, body
    assert b"victim" not in body and b"<center>nginx</center>" in body


async def test_a_user_without_workspace_access_is_sent_to_no_workspace_access(
        commons: Commons, demo_workspace: Callable[[], Any]) -> None:
    commons.gw.publish("mallory", await demo_workspace())
    status_code, headers, _ = await raw(commons.port, (
        f"GET {PROXY}headers HTTP/1.1\nHost: {HOST}\n"
        f"Cookie: access_token={commons.token('mallory')}\nConnection: close\n"))
    assert (status_code, headers["location"]) == (302, f"https://{HOST}/no-workspace-access")
    assert commons.arborist.asked[-1]["authorization"].startswith("bearer ")  # the cookie's



async def test_a_scripts_lowercase_bearer_header_is_its_identity_through_nginx(
        commons: Commons, demo_workspace: Callable[[], Any]) -> None:
    """Scripts send ``Authorization`` themselves; nginx forwards it as sent and Arborist trims
    ``Bearer `` or ``bearer ``."""
    commons.gw.publish("bob", await demo_workspace())
    status_code, _, body = await raw(commons.port, (
        f"GET {PROXY}headers HTTP/1.1\nHost: {HOST}\n"
        f"Authorization: bearer {commons.token('bob')}\nConnection: close\n"))
    assert status_code == 200, body
    assert json.loads(body)["headers"]["REMOTE_USER"] == "bob"



async def test_a_large_cookie_header_passes_nginx_and_hatchway(
        commons: Commons, browser: aiohttp.ClientSession) -> None:
    """revproxy takes header lines up to 128 KiB (large_client_header_buffers); a browser
    carrying 30 KB of a commons' cookies must still reach the API."""
    headers = commons.browser("alice")
    headers["Cookie"] += "; " + "; ".join(f"c{i}={'x' * 1000}" for i in range(30))
    async with browser.get(commons.base + "/lw-workspace/status", headers=headers) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["status"] == "Not Found"


async def test_a_cross_site_websocket_is_refused_and_nginx_redirects_the_refusal(
        commons: Commons, demo_workspace: Callable[[], Any]) -> None:
    """hatchway's 403 (foreign Origin) meets ``error_page 403 = @errorworkspace``."""
    commons.gw.publish("alice", await demo_workspace())
    status_code, headers, _ = await raw(commons.port, (
        f"GET {PROXY}echo HTTP/1.1\nHost: {HOST}\nOrigin: https://evil.example\n"
        "Upgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Version: 13\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
        f"Cookie: access_token={commons.token('alice')}\n"), head_only=True)
    assert (status_code, headers["location"]) == (302, f"https://{HOST}/no-workspace-access")

# -- hatchway's own pages behind the hatchery location -------------------------------------------

async def test_the_launch_page_is_served_at_the_hatchery_locations_root(
        commons: Commons, browser: aiohttp.ClientSession) -> None:
    """``/lw-workspace/`` reaches hatchway as ``/`` (Hatchery answers its home page there)."""
    async with browser.get(commons.base + "/lw-workspace/", headers=commons.browser("alice"),
                           allow_redirects=False) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "text/html"
        assert '"user": "alice"' in await r.text()


async def test_the_launch_pages_progress_stream_flows_through_nginx(
        commons: Commons, browser: aiohttp.ClientSession) -> None:
    async with browser.get(commons.base + "/lw-workspace/progress",
                           headers=commons.browser("alice")) as r:
        assert (r.status, r.content_type) == (200, "text/event-stream")
        first = await asyncio.wait_for(r.content.readline(), 10)
    assert first.startswith(b"data: ") and b"launch one first" in first


# -- the Envoy-mode variant ----------------------------------------------------------------------

def test_the_envoy_mode_locations_load_in_the_stock_server_block(tmp_path: Path) -> None:
    """deploy/envoy/revproxy-workspace.conf in place of the hatchery and ambassador locations,
    as its header says, inside revproxy's own server block."""
    envoy_conf = (REPO / "deploy" / "envoy" / "revproxy-workspace.conf").read_text()
    conf = render(tmp_path / "nginx", {
        "USER": getpass.getuser(), "TMP": str(tmp_path / "nginx"), "PORT": str(free_port()),
        "ARBORIST_PORT": str(free_port())}, gen3_conf={"revproxy-workspace.conf": envoy_conf})
    done = subprocess.run(nginx_command(conf, "-t"), capture_output=True, text=True,
                          timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


async def test_the_envoy_mode_api_location_never_carries_a_clients_remote_user(
        commons: Commons, browser: aiohttp.ClientSession, tmp_path: Path) -> None:
    """The same file run: its ``/lw-workspace/`` location (to hatchway's main port, prefix
    kept) in the stock server block, hatchway even trusting nginx's address. nginx sends no
    ``REMOTE_USER`` there, so alice's token decides whatever she claims."""
    await running(commons, browser, "victim")  # through the stock locations
    envoy_conf = ((REPO / "deploy" / "envoy" / "revproxy-workspace.conf").read_text()
                  .replace("hatchway-service.$namespace.svc.cluster.local:80",
                           f"127.0.0.1:{commons.gw.server.port}")
                  .replace("hatchway-envoy-service.$namespace.svc.cluster.local:8000",
                           f"127.0.0.1:{free_port()}"))  # no Envoy here: API location only
    port = free_port()
    conf = render(tmp_path / "envoy-nginx", {
        "USER": getpass.getuser(), "TMP": str(tmp_path / "envoy-nginx"), "PORT": str(port),
        "ARBORIST_PORT": str(free_port())}, gen3_conf={"revproxy-workspace.conf": envoy_conf})
    token = commons.token("alice")
    with nginx_running(conf, port):
        for spelling in SPELLINGS:
            status_code, _, body = await raw(port, (
                f"GET /lw-workspace/status HTTP/1.1\nHost: {HOST}\n{spelling}: victim\n"
                f"Cookie: access_token={token}\nConnection: close\n"))
            assert status_code == 200, (spelling, body)
            assert json.loads(body)["status"] == "Not Found", spelling  # alice's
    # hatchway asked Arborist itself, with alice's token (nginx asks nothing here)
    assert {a["authorization"] for a in commons.arborist.asked} >= {f"Bearer {token}"}

