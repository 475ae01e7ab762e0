"""A SIGTERM drains ``hatchway serve`` (the real process) without cutting anyone off: readiness
fails first while the listener still accepts, a 100 MiB download in flight completes, each of
100 open WebSockets gets a 1001 close, no request fails, and the process exits 0 in time."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from launcher.demo import make_app as demo_app
from proxy.sessions.devissuer import DevIssuer

from .conftest import PROXY
from .helpers import HATCHWAY, clean_env, eventually, free_port

DOWNLOAD = 100 * 1024 * 1024
SOCKETS = 100
DELAY, WS_GRACE, TIMEOUT = 1.5, 2.0, 20.0


async def _ready_status(http: aiohttp.ClientSession, base: str) -> int:
    async with http.get(base + "/lw-workspace/_ready") as resp:
        return resp.status


async def _until_ready(http: aiohttp.ClientSession, base: str, proc: Any) -> None:
    async def ready() -> bool:
        assert proc.poll() is None, "hatchway serve exited during start-up"
        try:
            return await _ready_status(http, base) == 200
        except aiohttp.ClientConnectionError:
            return False
    await eventually(ready, within=20, interval=0.1)


async def _slow_download(http: aiohttp.ClientSession, url: str, cookies: dict[str, str],
                         started: asyncio.Event) -> int:
    """Read at ~40 MiB/s, so the download spans the drain."""
    got = 0
    async with http.get(url, cookies=cookies) as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_chunked(256 * 1024):
            got += len(chunk)
            started.set()
            await asyncio.sleep(0.006)
    return got


@pytest.fixture(params=[True, False], ids=["fast-path", "aiohttp-relay"])
async def serve(request: Any, tmp_path: Path, aiohttp_server: Any) -> Any:
    workspace = await aiohttp_server(demo_app(PROXY), host="127.0.0.1")
    port = free_port()
    config = tmp_path / "hatchway.yaml"
    config.write_text(yaml.safe_dump({
        "static_routes": {"alice": f"http://127.0.0.1:{workspace.port}{PROXY}"},
        "fast_path": request.param,
        "drain": {"delay_seconds": DELAY, "websocket_grace_seconds": WS_GRACE,
                  "timeout_seconds": TIMEOUT}}))
    state = tmp_path / "state"
    issuer = DevIssuer(state, issuer="hatchway-dev")
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        argv = [*HATCHWAY, "serve", "-c", str(config), "--port", str(port), "--state-dir",
                str(state)]
        proc = subprocess.Popen(argv, cwd=tmp_path, env=clean_env(),  # noqa: ASYNC220
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        yield proc, f"http://127.0.0.1:{port}", {"access_token": issuer.mint("alice")}, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_sigterm_drains_without_failing_a_request(serve: Any) -> None:
    proc, base, cookies, err = serve
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                     connector=aiohttp.TCPConnector(limit=0)) as http:
        await _until_ready(http, base, proc)
        sockets = []
        for _ in range(SOCKETS):
            ws = await http.ws_connect(base + PROXY + "echo", autoclose=False, headers={
                "Cookie": f"access_token={cookies['access_token']}"})
            sockets.append(ws)
        for ws in sockets:
            await ws.send_str("hello")
            assert (await ws.receive(timeout=5)).data == "hello"
        started = asyncio.Event()
        download = asyncio.ensure_future(_slow_download(
            http, f"{base}{PROXY}bytes?size={DOWNLOAD}", cookies, started))
        await asyncio.wait_for(started.wait(), 10)

        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        async def unready() -> bool:
            return await _ready_status(http, base) == 503
        await eventually(unready, within=DELAY)
        # readiness fails first, while the listener still accepts and serves
        assert await _ready_status(http, base) == 503
        async with http.get(base + PROXY + "api/status", cookies=cookies) as resp:
            assert resp.status == 200

        closes = await asyncio.gather(*(ws.receive(timeout=TIMEOUT) for ws in sockets))
        assert [m.type for m in closes] == [aiohttp.WSMsgType.CLOSE] * SOCKETS
        assert {m.data for m in closes} == {1001}
        assert time.monotonic() - signalled >= DELAY + WS_GRACE - 0.5
        for ws in sockets:
            await ws.close()

        assert await asyncio.wait_for(download, TIMEOUT) == DOWNLOAD
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, TIMEOUT)
    assert code == 0, err.read_text()
    assert time.monotonic() - signalled < TIMEOUT, err.read_text()
    assert "Traceback" not in err.read_text()


async def test_the_listener_stops_accepting_after_the_delay(serve: Any) -> None:
    proc, base, cookies, err = serve
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                     connector=aiohttp.TCPConnector(limit=0)) as http:
        await _until_ready(http, base, proc)
        ws = await http.ws_connect(base + PROXY + "echo", autoclose=False,
                                   headers={"Cookie": f"access_token={cookies['access_token']}"})
        proc.send_signal(signal.SIGTERM)

        async def refused() -> bool:
            try:
                async with http.get(base + "/lw-workspace/_status") as resp:
                    await resp.read()
            except aiohttp.ClientConnectionError:
                return True
            return False
        assert await eventually(refused, within=DELAY + 5) >= DELAY - 0.5
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(base + "/lw-workspace/_status") as resp:
                await resp.read()
        msg = await ws.receive(timeout=TIMEOUT)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        await ws.close()
        code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, TIMEOUT)
    assert code == 0, err.read_text()
