"""The built-in demo workspace: what a newcomer sees, and the endpoints the proxy's tests use."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from yarl import URL

from launcher.clock import ManualClock
from launcher.demo import make_app, pattern

from .helpers import eventually

BASE = "/lw-workspace/proxy/"


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> TestClient[Any, Any]:
    return await aiohttp_client(make_app(BASE))


async def test_page_greets_the_remote_user_escaped(client: TestClient[Any, Any]) -> None:
    resp = await client.get(BASE, headers={"REMOTE_USER": "<alice>"})
    text = await resp.text()
    assert resp.status == 200 and "hatchway demo workspace" in text
    assert "&lt;alice&gt;" in text and "<alice>" not in text


async def test_base_url_without_slash_redirects_to_it(client: TestClient[Any, Any]) -> None:
    resp = await client.get(BASE.rstrip("/"), allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == BASE


async def test_echo_returns_text_and_binary(client: TestClient[Any, Any]) -> None:
    async with client.ws_connect(BASE + "echo") as ws:
        await ws.send_str("héllo")
        assert await ws.receive_str() == "héllo"
        await ws.send_bytes(b"\x00\xff" * 1000)
        assert await ws.receive_bytes() == b"\x00\xff" * 1000


async def test_echo_closes_with_requested_code_and_reason(client: TestClient[Any, Any]) -> None:
    async with client.ws_connect(BASE + "echo") as ws:
        await ws.send_str("close:4001:see you")
        msg = await ws.receive()
        assert msg.type == WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (4001, "see you")


@pytest.mark.parametrize("offered, chosen", [(["chat"], "chat"), (["nope", "echo.v1"], "echo.v1"),
                                             (["nope"], None)])
async def test_echo_picks_a_subprotocol_the_client_offers(
        client: TestClient[Any, Any], offered: list[str], chosen: str | None) -> None:
    async with client.ws_connect(BASE + "echo", protocols=offered) as ws:
        assert ws.protocol == chosen


async def test_echo_answers_ping_with_pong(client: TestClient[Any, Any]) -> None:
    async with client.ws_connect(BASE + "echo", autoping=False) as ws:
        await ws.ping(b"are you there")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (WSMsgType.PONG, b"are you there")


async def test_status_counts_open_websockets(client: TestClient[Any, Any]) -> None:
    async with client.ws_connect(BASE + "echo"):
        body = await (await client.get(BASE + "api/status")).json()
        assert body["connections"] == 1 and body["kernels"] == 0

    async def closed() -> bool:
        return bool((await (await client.get(BASE + "api/status")).json())["connections"] == 0)
    await eventually(closed)
    assert (await (await client.get(BASE + "api/status")).json())["connections"] == 0


async def test_requests_but_not_status_polls_count_as_activity(
        aiohttp_client: AiohttpClient) -> None:
    clock = ManualClock()
    client = await aiohttp_client(make_app(BASE, clock=clock))
    first = await (await client.get(BASE + "api/status")).json()
    clock.advance(1)
    polled = await (await client.get(BASE + "api/status")).json()
    assert polled["last_activity"] == first["last_activity"]
    await client.get(BASE + "headers")
    touched = await (await client.get(BASE + "api/status")).json()
    assert touched["last_activity"] > first["last_activity"] >= first["started"]


async def test_headers_mirrors_raw_path_and_repeated_headers(client: TestClient[Any, Any]) -> None:
    raw = BASE + "headers?a=%2F&b=%20"
    url = URL(f"http://{client.host}:{client.port}{raw}", encoded=True)  # not requoted
    resp = await client.session.get(
        url, headers=[("X-Twice", "1"), ("X-Twice", "2"), ("REMOTE_USER", "bob")])
    body = await resp.json()
    assert body["path"] == raw
    assert ["X-Twice", "1"] in body["header_list"] and ["X-Twice", "2"] in body["header_list"]
    assert body["headers"]["REMOTE_USER"] == "bob"


async def test_stream_sends_n_chunks_of_size(client: TestClient[Any, Any]) -> None:
    resp = await client.get(BASE + "stream?n=5&size=100")
    assert resp.headers["Transfer-Encoding"] == "chunked"
    body = await resp.read()
    assert len(body) == 500 and body.startswith(b"0:xx") and b"4:" in body


async def test_sse_sends_n_events_spaced_apart(client: TestClient[Any, Any]) -> None:
    loop = asyncio.get_running_loop()
    resp = await client.get(BASE + "sse?n=3")
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    arrivals = []
    async for line in resp.content:
        if line.startswith(b"data:"):
            arrivals.append((loop.time(), json.loads(line[5:])["n"]))
    assert [n for _, n in arrivals] == [0, 1, 2]
    assert arrivals[2][0] - arrivals[0][0] >= 0.09


async def test_bytes_streams_the_fixed_pattern(client: TestClient[Any, Any]) -> None:
    size = 3 * 65536 + 7
    resp = await client.get(BASE + f"bytes?size={size}")
    expected = hashlib.sha256(b"".join(pattern(size))).hexdigest()
    assert resp.content_length == size
    assert hashlib.sha256(await resp.read()).hexdigest() == expected


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_upload_reports_size_and_sha256_of_streamed_body(
        client: TestClient[Any, Any], method: str) -> None:
    chunks = [bytes([i]) * 100_000 for i in range(20)]

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    resp = await client.request(method, BASE + "upload", data=body())
    assert await resp.json() == {"bytes": 2_000_000,
                                 "sha256": hashlib.sha256(b"".join(chunks)).hexdigest()}


async def test_bad_query_gets_a_clear_400(client: TestClient[Any, Any]) -> None:
    resp = await client.get(BASE + "stream?n=lots")
    assert resp.status == 400 and "'n' must be an integer" in await resp.text()


async def test_module_announces_ready_and_exits_cleanly_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.demo", "--port", "0", "--base-url", "lw/x",
        stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert "ready on http://127.0.0.1:" in line and line.rstrip().endswith("/lw/x/")
        url = line.split("ready on ", 1)[1].strip()
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url + "echo") as ws:
                proc.send_signal(signal.SIGTERM)
                msg = await ws.receive(timeout=5)
                assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
