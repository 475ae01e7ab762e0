"""The proxy's fast path (proxy.relay.fast): keep-alive both ways, pipelining, handoff to aiohttp
mid-connection, request-smuggling attempts, the WebSocket byte splice, and what the browser sees
when a workspace dies. Every test talks to a gateway started by proxy.serve.server.start, as
``hatchway serve`` starts it, over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy

from launcher.routes import Route
from proxy.relay.fast.head import parse_request_head, session_cookie_out, upstream_request_head
from proxy.relay.headers import REQUEST_RULES, upstream_request_headers

from .conftest import PROXY, GatewayUnderTest

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[int], Any]]:
    """Raw keep-alive connections to the gateway, closed at the end."""
    opened: list[asyncio.StreamWriter] = []

    async def open_one(port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened.append(writer)
        return reader, writer

    yield open_one
    for writer in opened:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response off a keep-alive connection (Content-Length or chunked body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:-2])}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
    else:
        body = await reader.read()
    return status, headers, body


def get(path: str, token: str, extra: str = "") -> bytes:
    return (f"GET {PROXY}{path} HTTP/1.1\r\nHost: gw\r\nCookie: access_token={token}\r\n"
            f"{extra}\r\n").encode()


async def counting_upstream(aiohttp_server: Any) -> tuple[Any, list[int]]:
    """An upstream that answers with the request path and records each request's client port."""
    ports: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        ports.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        return web.Response(text=request.raw_path)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return await aiohttp_server(app, host="127.0.0.1"), ports


async def test_keep_alive_reuses_browser_and_workspace_connections(
        gw: GatewayUnderTest, aiohttp_server: Any, connect: Any) -> None:
    server, ports = await counting_upstream(aiohttp_server)
    gw.publish("alice", server)
    reader, writer = await connect(gw.server.port)
    token = gw.token("alice")
    for i in range(50):
        writer.write(get(f"n{i}", token))
        status, _, body = await read_response(reader)
        assert (status, body) == (200, f"{PROXY}n{i}".encode())
    assert len(ports) == 50 and len(set(ports)) == 1


async def test_a_repeated_request_follows_its_users_route(
        gw: GatewayUnderTest, aiohttp_server: Any, connect: Any) -> None:
    """The same head again on one connection is read once, but admitted every time: when the
    user's route moves, is not ready or is gone, the next identical request follows it."""
    first, first_ports = await counting_upstream(aiohttp_server)
    second, second_ports = await counting_upstream(aiohttp_server)
    gw.publish("alice", first)
    reader, writer = await connect(gw.server.port)
    request = get("n", gw.token("alice"))
    writer.write(request)
    assert (await read_response(reader))[0] == 200
    gw.publish("alice", second)
    writer.write(request)
    assert (await read_response(reader))[0] == 200
    assert (len(first_ports), len(second_ports)) == (1, 1)
    gw.gateway.routes.set("alice", Route("127.0.0.1", second.port, PROXY, ready=False))
    writer.write(request)
    assert (await read_response(reader))[0] == 503
    assert len(second_ports) == 1


async def test_a_repeated_request_is_refused_once_the_route_is_gone(
        gw: GatewayUnderTest, aiohttp_server: Any, connect: Any) -> None:
    server, ports = await counting_upstream(aiohttp_server)
    gw.publish("alice", server)
    reader, writer = await connect(gw.server.port)
    request = get("n", gw.token("alice"))
    writer.write(request)
    assert (await read_response(reader))[0] == 200
    gw.gateway.routes.remove("alice")
    writer.write(request)
    assert (await read_response(reader))[0] == 404
    assert len(ports) == 1


async def test_pipelined_requests_are_answered_in_order(
        two_workspaces: GatewayUnderTest, connect: Any) -> None:
    reader, writer = await connect(two_workspaces.server.port)
    token = two_workspaces.token("alice")
    writer.write(b"".join(get(f"headers?n={i}", token) for i in range(5)))
    for i in range(5):
        status, _, body = await read_response(reader)
        assert status == 200
        assert json.loads(body)["path"] == f"{PROXY}headers?n={i}"


async def test_pipelined_body_then_request(two_workspaces: GatewayUnderTest,
                                           connect: Any) -> None:
    reader, writer = await connect(two_workspaces.server.port)
    token = two_workspaces.token("alice")
    upload = (f"POST {PROXY}upload HTTP/1.1\r\nHost: gw\r\nCookie: access_token={token}\r\n"
              "Content-Length: 5\r\n\r\nhello").encode()
    writer.write(upload + get("headers", token))
    status, _, body = await read_response(reader)
    assert status == 200 and json.loads(body)["bytes"] == 5
    status, _, body = await read_response(reader)
    assert status == 200 and json.loads(body)["path"] == PROXY + "headers"


async def test_api_request_after_proxied_one_on_same_connection(
        two_workspaces: GatewayUnderTest, connect: Any) -> None:
    reader, writer = await connect(two_workspaces.server.port)
    token = two_workspaces.token("alice")
    writer.write(get("headers", token))
    status, _, body = await read_response(reader)
    assert status == 200 and json.loads(body)["headers"]["REMOTE_USER"] == "alice"
    writer.write(f"GET /lw-workspace/status HTTP/1.1\r\nHost: gw\r\n"
                 f"Cookie: access_token={token}\r\n\r\n".encode())
    status, _, body = await read_response(reader)
    assert status == 200 and "status" in json.loads(body)
    writer.write(get("headers", token))  # aiohttp serves the connection now, proxy included
    status, _, body = await read_response(reader)
    assert status == 200 and json.loads(body)["headers"]["REMOTE_USER"] == "alice"


async def test_an_untrusted_peers_remote_user_header_stays_on_the_fast_path(
        two_workspaces: GatewayUnderTest, connect: Any) -> None:
    """With no trusted peer REMOTE_USER is only a header to drop: the fast path serves the
    request (the connection is still its own) and the token decides who the user is."""
    fast_path = two_workspaces.server.fast_path
    assert fast_path is not None
    reader, writer = await connect(two_workspaces.server.port)
    token = two_workspaces.token("alice")
    for _ in range(2):
        writer.write(get("headers", token, "REMOTE_USER: bob\r\nremote_user: bob\r\n"))
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["headers"]["REMOTE_USER"] == "alice"
    assert len(fast_path.fronts) == 1


async def test_refusal_mid_connection_is_answered_by_aiohttp(
        two_workspaces: GatewayUnderTest, connect: Any) -> None:
    reader, writer = await connect(two_workspaces.server.port)
    writer.write(get("headers", two_workspaces.token("alice")))
    assert (await read_response(reader))[0] == 200
    writer.write(get("headers", "not-a-token"))
    status, headers, body = await read_response(reader)
    assert status == 401 and "error" in json.loads(body)


SMUGGLING = {
    "content_length_and_chunked": "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
    "chunked_and_content_length": "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
    "duplicate_content_length": "Content-Length: 0\r\nContent-Length: 44\r\n",
    "obs_fold": "X-Fold: a\r\n Transfer-Encoding: chunked\r\n",
    "chunked_not_last": "Transfer-Encoding: chunked, identity\r\n",
    "space_before_colon": "Transfer-Encoding : chunked\r\n",
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
async def test_smuggling_attempt_is_400_and_reaches_nothing(
        gw: GatewayUnderTest, recording_upstream: Any, connect: Any, case: str) -> None:
    server, seen = await recording_upstream()
    gw.publish("alice", server)
    reader, writer = await connect(gw.server.port)
    smuggled = f"GET {PROXY}smuggled HTTP/1.1\r\nHost: gw\r\n\r\n"
    writer.write((f"POST {PROXY}x HTTP/1.1\r\nHost: gw\r\n"
                  f"Cookie: access_token={gw.token('alice')}\r\n{SMUGGLING[case]}\r\n"
                  f"0\r\n\r\n{smuggled}").encode())
    status, _, _ = await read_response(reader)
    assert status == 400
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, nothing more answered
    assert seen == []


async def test_malformed_chunk_closes_without_a_second_request(
        gw: GatewayUnderTest, recording_upstream: Any, connect: Any) -> None:
    server, seen = await recording_upstream()
    gw.publish("alice", server)
    reader, writer = await connect(gw.server.port)
    writer.write((f"POST {PROXY}x HTTP/1.1\r\nHost: gw\r\n"
                  f"Cookie: access_token={gw.token('alice')}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n"
                  f"5\r\nhello\r\n0x0\r\n\r\nGET {PROXY}smuggled HTTP/1.1\r\n\r\n").encode())
    status, _, _ = await read_response(reader)
    assert status == 400
    assert await asyncio.wait_for(reader.read(), 10) == b""
    await asyncio.sleep(0.2)
    assert [r.path for r in seen if r.path.endswith("smuggled")] == []


async def test_chunked_upload_with_extension_and_trailer(two_workspaces: GatewayUnderTest,
                                                         connect: Any) -> None:
    reader, writer = await connect(two_workspaces.server.port)
    token = two_workspaces.token("alice")
    writer.write((f"POST {PROXY}upload HTTP/1.1\r\nHost: gw\r\nCookie: access_token={token}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n5;name=v\r\nhello\r\n").encode())
    await asyncio.sleep(0.05)  # the rest in a later read
    writer.write(b"6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n" + get("headers", token))
    status, _, body = await read_response(reader)
    assert status == 200 and json.loads(body)["bytes"] == 11
    status, _, body = await read_response(reader)
    assert status == 200 and json.loads(body)["path"] == PROXY + "headers"


async def test_expect_100_continue_is_passed_through(two_workspaces: GatewayUnderTest,
                                                     connect: Any) -> None:
    reader, writer = await connect(two_workspaces.server.port)
    token = two_workspaces.token("alice")
    writer.write((f"POST {PROXY}upload HTTP/1.1\r\nHost: gw\r\nCookie: access_token={token}\r\n"
                  "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n").encode())
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim.startswith(b"HTTP/1.1 100")
    writer.write(b"hello")
    status, _, body = await read_response(reader)
    assert status == 200 and json.loads(body)["bytes"] == 5


async def test_head_request_gets_no_body_and_connection_continues(
        two_workspaces: GatewayUnderTest, connect: Any) -> None:
    reader, writer = await connect(two_workspaces.server.port)
    token = two_workspaces.token("alice")
    writer.write(get("headers", token).replace(b"GET ", b"HEAD ", 1) + get("headers", token))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: " in head
    status, _, body = await read_response(reader)  # the very next bytes: the GET's answer
    assert status == 200 and json.loads(body)["method"] == "GET"


async def slamming_upstream(answer: bytes) -> asyncio.base_events.Server:
    """Reads a request head, writes ``answer``, then drops the connection."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.transport.abort()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
], ids=["content_length", "chunked"])
async def test_workspace_dying_mid_response_closes_browser_connection(
        gw: GatewayUnderTest, client: aiohttp.ClientSession, answer: bytes) -> None:
    upstream = await slamming_upstream(answer)
    gw.gateway.routes.set("alice", Route("127.0.0.1", upstream.sockets[0].getsockname()[1],
                                         PROXY))
    try:
        async with client.get(gw.url(PROXY + "x"), cookies=gw.cookies("alice")) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(resp.read(), 10)
    finally:
        upstream.close()


async def test_dropped_pooled_connection_is_retried_on_a_fresh_one(
        gw: GatewayUnderTest, connect: Any) -> None:
    """The workspace closes an idle keep-alive connection just as the next request goes out
    (the second request on each connection is dropped unanswered)."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    gw.gateway.routes.set("alice", Route("127.0.0.1", server.sockets[0].getsockname()[1], PROXY))
    reader, writer = await connect(gw.server.port)
    token = gw.token("alice")
    try:
        for _ in range(3):
            writer.write(get("x", token))
            assert (await read_response(reader))[::2] == (200, b"ok")
    finally:
        server.close()
    assert connections == 3


@pytest.fixture
async def ws_closer(gw: GatewayUnderTest, aiohttp_server: Any) -> asyncio.Future[Any]:
    """alice's workspace: a WebSocket that closes with 4001 on "bye" and reports the close
    code it receives."""
    got: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoclose=False, protocols=("v1",))
        await ws.prepare(request)
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT and msg.data == "bye":
                await ws.close(code=4001, message=b"kernel restarted")
                return ws
            if msg.type is WSMsgType.CLOSE:
                got.set_result((msg.data, msg.extra))
                await ws.close(code=msg.data, message=msg.extra.encode())
                return ws

    app = web.Application()
    app.router.add_get(PROXY + "ws", handler)
    gw.publish("alice", await aiohttp_server(app, host="127.0.0.1"))
    return got


async def test_splice_passes_workspace_close_code_4001(gw: GatewayUnderTest, ws_closer: Any,
                                                       client: aiohttp.ClientSession) -> None:
    async with client.ws_connect(gw.url(PROXY + "ws"), protocols=("v1",),
                                 headers=gw.cookie_header("alice")) as ws:
        assert ws.protocol == "v1"
        await ws.send_str("bye")
        msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4001, "kernel restarted")


async def test_splice_passes_browser_close_code_4001(gw: GatewayUnderTest, ws_closer: Any,
                                                     client: aiohttp.ClientSession) -> None:
    ws = await client.ws_connect(gw.url(PROXY + "ws"), headers=gw.cookie_header("alice"))
    await ws.close(code=4001, message=b"tab closed")
    assert await asyncio.wait_for(ws_closer, 5) == (4001, "tab closed")
    assert ws.close_code == 4001


async def test_splice_keeps_the_workspaces_extension_negotiation(
        two_workspaces: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    """Bytes pass untouched, so permessage-deflate is negotiated end to end."""
    async with client.ws_connect(two_workspaces.url(PROXY + "echo"), compress=15,
                                 headers=two_workspaces.cookie_header("alice")) as ws:
        assert ws.compress == 15
        await ws.send_str("z" * 10_000)
        assert await ws.receive_str(timeout=5) == "z" * 10_000


async def test_fast_path_can_be_turned_off(start_gateway: Any, demo_workspace: Any,
                                           client: aiohttp.ClientSession) -> None:
    gw = await start_gateway(fast_path=False)
    gw.publish("alice", await demo_workspace())
    assert gw.server.fast_path is None
    async with client.get(gw.url(PROXY + "headers"), cookies=gw.cookies("alice")) as resp:
        assert (await resp.json())["headers"]["REMOTE_USER"] == "alice"


HEADER_SETS = [
    [("Host", "gw"), ("Cookie", "a=1; access_token=TOK; b=2"), ("Accept", "*/*")],
    [("Host", "gw"), ("REMOTE_USER", "bob"), ("remote_user", "bob"), ("X_Forwarded_User", "b"),
     ("X-Auth-Request-User", "b"), ("X-Gen3-User", "b")],
    [("Host", "gw"), ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("X-Kept", "2"),
     ("Keep-Alive", "timeout=5"), ("TE", "trailers"), ("Proxy-Authorization", "x")],
    [("Host", "gw"), ("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-For", "10.0.0.1"),
     ("Forwarded", "for=1.2.3.4"), ("X-Real-IP", "1.2.3.4"), ("X-Forwarded-Host", "evil")],
    [("Host", "gw"), ("Authorization", "Bearer TOK"), ("Cookie", "access_token=TOK")],
    [("Host", "gw"), ("Authorization", "Basic other"), ("Cookie", "_xsrf=1; access_token=TOK"),
     ("Content-Length", "0")],
    [("Host", "gw"), ("X_Forwarded_For", "6.6.6.6"), ("X_Real_IP", "6.6.6.6"),
     ("x_forwarded-host", "evil"), ("X-Forwarded-For", "10.0.0.1")],
]


def both_rewrites(headers: list[tuple[str, str]]) -> tuple[list[tuple[str, ...]],
                                                          list[tuple[str, str]]]:
    """The headers the fast path's byte writer and the aiohttp relay send for one request."""
    raw = "".join(f"{k}: {v}\r\n" for k, v in headers)
    req = parse_request_head(f"GET /p HTTP/1.1\r\n{raw}\r\n".encode())
    assert req is not None
    out = upstream_request_head(
        req, b"/p", user=b"alice", client_ip=b"127.0.0.1", prefix=b"/lw-workspace/proxy",
        session_token=b"TOK", cookie_out=session_cookie_out(req.cookie, "access_token")
        if req.cookie is not None else None, cookie_name="access_token", websocket=False)
    fast = [tuple(line.split(": ", 1)) for line in out.decode().split("\r\n")[1:-2]]
    expected = upstream_request_headers(
        CIMultiDictProxy(CIMultiDict(headers)), user="alice", client_ip="127.0.0.1",
        scheme="http", prefix="/lw-workspace/proxy/", session_token="TOK",
        cookie_name="access_token")
    return fast, list(expected.items())


@pytest.mark.parametrize("headers", HEADER_SETS, ids=range(len(HEADER_SETS)))
def test_head_rewrite_matches_the_aiohttp_relays_rules(headers: list[tuple[str, str]]) -> None:
    """The fast path's byte-level rewrite and relay.headers.upstream_request_headers agree."""
    fast, expected = both_rewrites(headers)
    assert fast == expected


# every name the rule table knows, except those that frame the message or make it an upgrade
RULE_NAMES = sorted(set(REQUEST_RULES) - {"host", "transfer-encoding", "connection", "upgrade"})


@pytest.mark.parametrize("name", RULE_NAMES)
def test_both_relays_follow_the_rule_table_for_every_name_in_it(name: str) -> None:
    """One table (relay.headers.REQUEST_RULES), two writers: each of its names, in its own and
    its "_" spelling, comes out of both alike."""
    underscored = [(name.replace("-", "_"), "w")] if "-" in name else []
    fast, expected = both_rewrites([("Host", "gw"), (name.title(), "v"), *underscored])
    assert fast == expected


# -- which path answered ---------------------------------------------------------------------

async def relay_counts(gw: GatewayUnderTest) -> tuple[int, int]:
    """(requests the fast path relayed, connections it handed to aiohttp)."""
    fast = gw.gateway.fast_path
    assert fast is not None, "the fast path is off"
    return fast.relayed, fast.handed_off


async def test_status_shows_which_path_answered(gw: GatewayUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url("/lw-workspace/_status")) as resp:
            body = await resp.json()
    # this very request went to aiohttp (not under the proxy prefix)
    assert body["fast_path"] == {"relayed": 0, "handed_off": 1}


async def test_a_plain_authorized_get_is_relayed_by_the_fast_path(
        gw: GatewayUnderTest, aiohttp_server: Any, connect: Any) -> None:
    upstream, _ = await counting_upstream(aiohttp_server)
    gw.publish("alice", upstream)
    before = await relay_counts(gw)
    reader, writer = await connect(gw.server.port)
    writer.write(get("tree", gw.token("alice")))
    status, _, body = await read_response(reader)
    assert (status, body) == (200, PROXY.encode() + b"tree")
    relayed, handed = await relay_counts(gw)
    assert (relayed - before[0], handed - before[1]) == (1, 0)


async def test_a_request_without_a_session_is_handed_to_aiohttp(
        gw: GatewayUnderTest, connect: Any) -> None:
    before = await relay_counts(gw)
    reader, writer = await connect(gw.server.port)
    writer.write(f"GET {PROXY}tree HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    status, _, _ = await read_response(reader)
    assert status == 401
    relayed, handed = await relay_counts(gw)
    assert (relayed - before[0], handed - before[1]) == (0, 1)


# -- both paths treat heads alike ------------------------------------------------------------

WORKSPACE_ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Connection: keep-alive, X-Hop\r\n"
    b"X-Hop: per-connection\r\n"
    b"Keep-Alive: timeout=5\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"Upgrade: h2c\r\n"
    b"X-Kept: yes\r\n"
    b"Set-Cookie: a=1\r\n"
    b"Set-Cookie: b=2\r\n"
    b"Content-Length: 2\r\n\r\nok")
# this hop's own framing, and what aiohttp adds to every answer it writes
FRAMING = {"content-length", "transfer-encoding", "connection", "date", "server"}


async def recording_workspace(requests: list[bytes]) -> asyncio.base_events.Server:
    """A workspace that records each request head and answers WORKSPACE_ANSWER, byte for byte."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                requests.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(WORKSPACE_ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
    return await asyncio.start_server(serve, "127.0.0.1", 0)


def header_lines(head: bytes, skip: set[str]) -> list[tuple[str, str]]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    pairs = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines
                                                            if line)]
    return sorted(p for p in pairs if p[0] not in skip)


async def through(start_gateway: Any, fast_path: bool) -> tuple[bytes, bytes, tuple[int, int]]:
    """One request with hop-by-hop headers and a session cookie through a gateway (a client's
    REMOTE_USER is always aiohttp's: test_trusted_identity); returns the head the workspace
    got, the head the browser got, and the fast path's counters."""
    requests: list[bytes] = []
    workspace = await recording_workspace(requests)
    port = workspace.sockets[0].getsockname()[1]
    try:
        gw = await start_gateway(fast_path=fast_path)
        gw.gateway.routes.set("alice", Route("127.0.0.1", port, PROXY, source="test"))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
        writer.write(get("tree", gw.token("alice"),
                         "Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n"
                         "X-Kept: yes\r\n"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        counts = await relay_counts(gw) if fast_path else (0, 0)
        return requests[0], head, counts
    finally:
        workspace.close()


async def test_response_heads_are_the_same_on_both_paths(start_gateway: Any) -> None:
    _, fast, counts = await through(start_gateway, fast_path=True)
    _, slow, _ = await through(start_gateway, fast_path=False)
    assert counts[0] == 1, "the fast path did not answer"
    assert header_lines(fast, FRAMING) == header_lines(slow, FRAMING)
    names = {name for name, _ in header_lines(fast, set())}
    assert not names & {"x-hop", "keep-alive", "proxy-connection", "upgrade"}
    assert {"x-kept", "set-cookie"} <= names


async def test_request_heads_reach_the_workspace_alike_on_both_paths(
        start_gateway: Any) -> None:
    fast, _, counts = await through(start_gateway, fast_path=True)
    slow, _, _ = await through(start_gateway, fast_path=False)
    assert counts[0] == 1, "the fast path did not answer"
    assert header_lines(fast, FRAMING) == header_lines(slow, FRAMING)
    names = {name for name, _ in header_lines(fast, set())}
    assert ("remote_user", "alice") in header_lines(fast, set())
    assert not names & {"cookie", "x-secret", "keep-alive"}  # session and hop-by-hop: gone
