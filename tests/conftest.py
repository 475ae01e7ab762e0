"""Shared fixtures: a real gateway on 127.0.0.1 with dev sessions, and real demo workspaces.

Routes for hand-started workspaces are published through the route table's public interface,
exactly as a backend publishes them; nothing under test is patched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from launcher.clock import REAL, Clock, ManualClock
from launcher.demo import make_app as demo_app
from launcher.routes import Route
from proxy.api.devlogin import DEV_ISSUER
from proxy.gateway import GATEWAY, Gateway
from proxy.serve.app import build_app
from proxy.serve.server import Running, start
from proxy.sessions.devissuer import DevIssuer
from proxy.settings import Settings, load_settings

from .cluster import podnetwork
from .cluster.controlplane import ControlPlane, ControlPlaneError
from .helpers import JWKSServer, aws_env, exchange, moto_server, public_jwk

PROXY = "/lw-workspace/proxy/"


@dataclass
class GatewayUnderTest:
    server: Running
    gateway: Gateway
    issuer: DevIssuer | None  # None when the gateway checks Fence tokens (jwks mode)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def token(self, user: str, **kw: Any) -> str:
        assert self.issuer is not None, "dev tokens need a dev-mode gateway"
        return self.issuer.mint(user, **kw)

    def cookies(self, user: str) -> dict[str, str]:
        return {"access_token": self.token(user)}

    def cookie_header(self, user: str) -> dict[str, str]:
        """For clients that take no ``cookies=`` (WebSocket connects)."""
        return {"Cookie": f"access_token={self.token(user)}"}

    def publish(self, user: str, server: TestServer | Running, rewrite: str = PROXY) -> None:
        assert server.port is not None
        self.gateway.routes.set(user, Route("127.0.0.1", server.port, rewrite, source="test"))


def pytest_configure(config: pytest.Config) -> None:
    """The session's own network namespace, with the test node's pod address
    (tests/cluster/podnetwork.py); first, before anything opens a socket or a thread."""
    podnetwork.enter_private_network()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """One real etcd + kube-apiserver for the whole session (tests/cluster/controlplane.py);
    tests keep apart by namespace. Missing binaries fail the test with the make command that
    builds them: CI builds them, so a skip would only hide a broken build."""
    try:
        plane = ControlPlane().start()
    except ControlPlaneError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield plane
    plane.stop()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {"state_dir": str(tmp_path / "state"),
                                "local": {"stop_grace_seconds": 2.0}}
        base.update(overrides)
        return load_settings([], environ={}, overrides=base)
    return make


@pytest.fixture
async def start_gateway(
    make_settings: Callable[..., Settings]
) -> AsyncIterator[Callable[..., Any]]:
    """Start gateways exactly as ``hatchway serve`` does (proxy.serve.server.start), on the real
    clock or the ``clock`` given."""
    started: list[Running] = []

    async def start_one(clock: Clock = REAL, **overrides: Any) -> GatewayUnderTest:
        app = build_app(make_settings(**overrides), clock=clock)
        running = await start(app, "127.0.0.1", 0)
        started.append(running)
        return GatewayUnderTest(running, app[GATEWAY], app.get(DEV_ISSUER))

    yield start_one
    for running in started:
        await running.close()


@pytest.fixture
def clock() -> ManualClock:
    """Time that moves only when the test says: ``clock.advance(seconds)``."""
    return ManualClock()


@pytest.fixture
async def gw(start_gateway: Callable[..., Any]) -> GatewayUnderTest:
    return await start_gateway()


@pytest.fixture
async def demo_workspace(aiohttp_server: Any) -> Callable[[], Any]:
    """Start a real demo workspace (the one the local backend launches) on a free port."""
    async def start() -> TestServer:
        return await aiohttp_server(demo_app(PROXY), host="127.0.0.1")
    return start


@pytest.fixture
async def two_workspaces(gw: GatewayUnderTest,
                         demo_workspace: Callable[[], Any]) -> GatewayUnderTest:
    """alice's and bob's workspaces both running and routed."""
    gw.publish("alice", await demo_workspace())
    gw.publish("bob", await demo_workspace())
    return gw


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


async def raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request exactly as written (no client normalises the path) and read the answer;
    returns (status, body)."""
    status, _, answer = await exchange(port, head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    return status, answer


@pytest.fixture
def recording_upstream(aiohttp_server: Any) -> Callable[[], Any]:
    """An upstream that records every request it receives (to prove none got through)."""
    async def start() -> tuple[TestServer, list[web.Request]]:
        seen: list[web.Request] = []

        async def record(request: web.Request) -> web.Response:
            seen.append(request)
            return web.Response(text="reached")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        return await aiohttp_server(app, host="127.0.0.1"), seen
    return start


# -- a real JWKS server on loopback and its keys (tests/test_sessions.py, test_health.py) --
@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key_2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def jwks_server(aiohttp_server: Any, rsa_key: Any, ec_key: Any) -> JWKSServer:
    state = JWKSServer(doc={"keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1"),
                                     {"kty": "oct", "kid": "hmac-1", "k": "c2VjcmV0"}]})

    async def jwks(request: web.Request) -> web.Response:
        state.requests += 1
        if state.status != 200:
            return web.Response(status=state.status, text="broken")
        return web.json_response(state.doc)

    app = web.Application()
    app.router.add_get("/user/.well-known/jwks", jwks)
    server = await aiohttp_server(app, host="127.0.0.1")
    state.url = str(server.make_url("/user/.well-known/jwks"))
    return state


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's DynamoDB server (a real HTTP DynamoDB on 127.0.0.1), one per test module."""
    with moto_server() as url:
        yield url


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials for moto, so no profile of this machine's leaks in (a module that
    talks to DynamoDB uses it for every test: ``pytest.mark.usefixtures``)."""
    for name, value in aws_env(tmp_path / "none").items():
        monkeypatch.setenv(name, value)
