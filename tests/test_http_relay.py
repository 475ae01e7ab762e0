"""The HTTP relay streams both ways without buffering, keeps chunked and SSE responses
incremental, rewrites headers as a proxy must, and answers precisely when it cannot relay."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from launcher.routes import Route

from .conftest import PROXY, GatewayUnderTest, raw_request

MiB = 1024 * 1024
GiB = 1024 * MiB
# Everything that may sit between a fast writer and a slow reader: kernel socket buffers on the
# two legs (loopback autotunes them up to a few MiB each) and aiohttp's per-stream buffers.
IN_FLIGHT_BOUND = 24 * MiB


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _slow_reader_upstream(aiohttp_server: Any, received: list[int]) -> Any:
    """Reads uploads in small steps, pausing, so a buffering relay would pile the body up."""
    async def upload(request: web.Request) -> web.Response:
        total = 0
        digest = hashlib.sha256()
        while chunk := await request.content.read(256 * 1024):
            total += len(chunk)
            received[0] = total
            digest.update(chunk)
            await asyncio.sleep(0.0005)
        return web.json_response({"bytes": total, "sha256": digest.hexdigest()})

    app = web.Application(client_max_size=0)
    app.router.add_post(PROXY + "upload", upload)
    return await aiohttp_server(app, host="127.0.0.1")


async def test_large_upload_streams_with_bounded_buffering(gw: GatewayUnderTest, aiohttp_server,
                                                          client: aiohttp.ClientSession) -> None:
    received = [0]
    gw.publish("alice", await _slow_reader_upstream(aiohttp_server, received))
    sent = 0
    max_in_flight = 0
    block = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256()

    async def body():  # type: ignore[no-untyped-def]
        nonlocal sent, max_in_flight
        for _ in range(GiB // len(block)):
            max_in_flight = max(max_in_flight, sent - received[0])
            digest.update(block)
            sent += len(block)
            yield block

    async with client.post(gw.url(PROXY + "upload"), data=body(),
                           cookies=gw.cookies("alice")) as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert answer == {"bytes": GiB, "sha256": digest.hexdigest()}
    assert max_in_flight < IN_FLIGHT_BOUND


async def test_large_download_streams_with_bounded_buffering(
        gw: GatewayUnderTest, aiohttp_server, client: aiohttp.ClientSession) -> None:
    produced = [0]
    block = b"x" * MiB

    async def download(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = GiB
        await resp.prepare(request)
        for _ in range(GiB // MiB):
            await resp.write(block)  # waits while the relay does not read
            produced[0] += MiB
        return resp

    app = web.Application()
    app.router.add_get(PROXY + "big", download)
    gw.publish("alice", await aiohttp_server(app, host="127.0.0.1"))
    consumed = 0
    max_ahead = 0
    async with client.get(gw.url(PROXY + "big"), cookies=gw.cookies("alice")) as resp:
        assert resp.status == 200
        assert resp.content_length == GiB
        async for chunk in resp.content.iter_chunked(256 * 1024):
            consumed += len(chunk)
            max_ahead = max(max_ahead, produced[0] - consumed)
            await asyncio.sleep(0.0003)
    assert consumed == GiB
    assert max_ahead < IN_FLIGHT_BOUND


async def test_chunked_response_arrives_chunk_by_chunk(two_workspaces: GatewayUnderTest,
                                                       client: aiohttp.ClientSession) -> None:
    async with client.get(two_workspaces.url(PROXY + "stream?n=5&size=10&delay_ms=200"),
                          cookies=two_workspaces.cookies("alice")) as resp:
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        loop = asyncio.get_running_loop()
        first = await resp.content.readany()
        t_first = loop.time()
        rest = await resp.read()
        t_last = loop.time()
    assert len(first) == 10 and len(first) + len(rest) == 50
    assert t_last - t_first > 0.5  # the first chunk came before the stream ended


async def test_server_sent_events_arrive_event_by_event(two_workspaces: GatewayUnderTest,
                                                        client: aiohttp.ClientSession) -> None:
    events: list[str] = []
    async with client.get(two_workspaces.url(PROXY + "sse?n=3"),
                          cookies=two_workspaces.cookies("alice")) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for line in resp.content:
            if line.startswith(b"data:"):
                events.append(line.decode().strip())
                if len(events) == 1:
                    # the first event is here while the workspace is still producing the rest
                    assert not resp.content.at_eof()
    assert len(events) == 3


async def test_hop_by_hop_headers_are_not_forwarded(two_workspaces: GatewayUnderTest) -> None:
    token = two_workspaces.token("alice")
    status, body = await raw_request(
        two_workspaces.server.port,
        f"GET {PROXY}headers HTTP/1.1\nHost: gw.example\nCookie: access_token={token}\n"
        "Connection: close, X-Secret-Hop\nX-Secret-Hop: 1\nKeep-Alive: timeout=5\n"
        "TE: trailers\nProxy-Authorization: Basic Zm9v\nX-Kept: yes\n")
    assert status == 200
    seen = {k.lower() for k in json.loads(body)["headers"]}
    assert "x-kept" in seen
    assert not seen & {"x-secret-hop", "keep-alive", "te", "proxy-authorization"}


async def test_forwarded_headers_are_set(two_workspaces: GatewayUnderTest,
                                         client: aiohttp.ClientSession) -> None:
    async with client.get(two_workspaces.url(PROXY + "headers"),
                          cookies=two_workspaces.cookies("alice"),
                          headers={"X-Forwarded-For": "203.0.113.9"}) as resp:
        headers = (await resp.json())["headers"]
    assert headers["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-Host"] == f"127.0.0.1:{two_workspaces.server.port}"
    assert headers["X-Forwarded-Prefix"] == "/lw-workspace/proxy"
    assert headers["Host"] == f"127.0.0.1:{two_workspaces.server.port}"


async def test_workspace_sees_hatchery_path_rewrite(two_workspaces: GatewayUnderTest,
                                                   client: aiohttp.ClientSession) -> None:
    async with client.get(URL(two_workspaces.url(PROXY + "headers?a=1&b=%2F"), encoded=True),
                          cookies=two_workspaces.cookies("alice")) as resp:
        assert (await resp.json())["path"] == PROXY + "headers?a=1&b=%2F"


async def test_refused_connection_is_502(gw: GatewayUnderTest,
                                         client: aiohttp.ClientSession) -> None:
    gw.gateway.routes.set("alice", Route("127.0.0.1", _free_port(), PROXY))
    async with client.get(gw.url(PROXY), cookies=gw.cookies("alice")) as resp:
        assert resp.status == 502
        assert "did not answer" in (await resp.json())["error"]


async def test_reset_before_answer_is_502(gw: GatewayUnderTest,
                                          client: aiohttp.ClientSession) -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.transport.abort()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gw.gateway.routes.set("alice", Route("127.0.0.1", port, PROXY))
    try:
        async with client.get(gw.url(PROXY), cookies=gw.cookies("alice")) as resp:
            assert resp.status == 502
    finally:
        server.close()


async def test_launching_workspace_is_503_with_retry_after(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    gw.gateway.routes.set("alice", Route("127.0.0.1", _free_port(), PROXY, ready=False))
    async with client.get(gw.url(PROXY), cookies=gw.cookies("alice")) as resp:
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) > 0


async def test_no_workspace_is_404_json_for_api_clients(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(gw.url(PROXY + "x"), cookies=gw.cookies("alice")) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "no workspace — launch one"


async def test_no_workspace_is_404_page_for_browsers(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(gw.url(PROXY), cookies=gw.cookies("alice"),
                          headers={"Accept": "text/html,*/*"}) as resp:
        assert resp.status == 404
        text = await resp.text()
    assert "launch one" in text and 'href="/lw-workspace/"' in text


async def test_browser_without_session_is_sent_to_login(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(gw.url(PROXY + "lab?x=1&y=2"), allow_redirects=False,
                          headers={"Accept": "text/html"}) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith("/lw-workspace/login?redirect=")
    target = URL(location).query["redirect"]
    assert target == PROXY + "lab?x=1&y=2"


async def test_chunked_upload_passes_through(two_workspaces: GatewayUnderTest,
                                             client: aiohttp.ClientSession) -> None:
    async def parts():  # type: ignore[no-untyped-def]
        for i in range(10):
            yield bytes([i]) * 1000

    async with client.post(two_workspaces.url(PROXY + "upload"), data=parts(),
                           cookies=two_workspaces.cookies("alice")) as resp:
        answer = await resp.json()
    expected = b"".join(bytes([i]) * 1000 for i in range(10))
    assert answer["bytes"] == len(expected)
    assert answer["sha256"] == hashlib.sha256(expected).hexdigest()
