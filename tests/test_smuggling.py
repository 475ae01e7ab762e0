"""Message framing the gateway must not let anyone bend: framing headers named in
``Connection``, request trailers, forwarding headers spelt with underscores, and workspace answers
one path refuses but the other relayed. Every attack is the attacker's exact bytes over a raw
socket, on the fast path and on the aiohttp path (``fast_path=False``, or HTTP/1.0, which the
fast path hands to aiohttp), against a gateway started as ``hatchway serve`` starts it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from launcher.routes import Route

from .conftest import PROXY, GatewayUnderTest

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nreached"


@dataclass
class Wire:
    """A workspace that records the raw bytes it receives and answers ``answer`` to each
    message (a message ends where the bytes received so far end in a blank line)."""

    answer: bytes = OK
    received: bytearray = field(default_factory=bytearray)
    server: asyncio.base_events.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received += data
                if self.received.endswith(b"\r\n\r\n"):
                    writer.write(self.answer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def wire() -> AsyncIterator[Callable[..., Any]]:
    started: list[Wire] = []

    async def start(answer: bytes = OK) -> Wire:
        w = Wire(answer)
        w.server = await asyncio.start_server(w.handle, "127.0.0.1", 0)
        started.append(w)
        return w

    yield start
    for w in started:
        assert w.server is not None
        w.server.close()


@pytest.fixture(params=["fast", "aiohttp"])
async def gateway(request: pytest.FixtureRequest,
                  start_gateway: Callable[..., Any]) -> GatewayUnderTest:
    """The gateway with its fast path, and with every request served by aiohttp."""
    gw: GatewayUnderTest = await start_gateway(fast_path=request.param == "fast")
    return gw


def route_to(gw: GatewayUnderTest, user: str, w: Wire) -> None:
    gw.gateway.routes.set(user, Route("127.0.0.1", w.port, PROXY, source="test"))


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a fresh connection and read one answer (framed by Content-Length, or
    until the gateway closes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (line.partition(":") for line in lines[1:-2])}
        if "content-length" in headers:
            body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        else:
            body = await asyncio.wait_for(reader.read(), 10)
        return int(lines[0].split(" ")[1]), headers, body
    finally:
        writer.close()


# -- framing headers named in Connection (requests) -----------------------------------------

SMUGGLED = (f"GET {PROXY}smuggled HTTP/1.1\r\nHost: gw\r\nREMOTE_USER: bob\r\n"
            "Content-Length: 0\r\n\r\n")
FRAMING_IN_CONNECTION = {
    "content_length": ("Content-Length: %d\r\nConnection: Content-Length\r\n", SMUGGLED),
    "content_length_among_others": (
        "Content-Length: %d\r\nConnection: keep-alive, content-length\r\n", SMUGGLED),
    "transfer_encoding": ("Transfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n",
                          "0\r\n\r\n"),
    "host": ("Content-Length: %d\r\nConnection: Host\r\n", ""),
}


@pytest.mark.parametrize("case", sorted(FRAMING_IN_CONNECTION))
async def test_request_naming_a_framing_header_in_connection_is_refused(
        gateway: GatewayUnderTest, wire: Callable[..., Any], case: str) -> None:
    w = await wire()
    route_to(gateway, "alice", w)
    headers, body = FRAMING_IN_CONNECTION[case]
    if "%d" in headers:
        headers %= len(body)
    raw = (f"POST {PROXY}x HTTP/1.1\r\nHost: gw\r\n"
           f"Cookie: access_token={gateway.token('alice')}\r\n{headers}\r\n{body}").encode()
    status, _, answer = await exchange(gateway.server.port, raw)
    assert status == 400 and b"Connection" in answer
    assert w.received == b""


async def test_http10_request_naming_content_length_in_connection_is_refused(
        gw: GatewayUnderTest, wire: Callable[..., Any]) -> None:
    w = await wire()
    route_to(gw, "alice", w)
    raw = (f"POST {PROXY}x HTTP/1.0\r\nHost: gw\r\nCookie: access_token={gw.token('alice')}\r\n"
           f"Content-Length: {len(SMUGGLED)}\r\nConnection: Content-Length\r\n\r\n"
           f"{SMUGGLED}").encode()
    assert (await exchange(gw.server.port, raw))[0] == 400
    assert w.received == b""


# -- framing headers named in Connection (responses) ----------------------------------------

async def test_response_naming_content_length_in_connection_is_not_relayed(
        gateway: GatewayUnderTest, wire: Callable[..., Any]) -> None:
    """Relayed unframed on a kept-alive connection, the next answer would read as the tail
    of this body."""
    w = await wire(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Content-Length\r\n"
                   b"\r\nhello")
    route_to(gateway, "alice", w)
    raw = (f"GET {PROXY}x HTTP/1.1\r\nHost: gw\r\n"
           f"Cookie: access_token={gateway.token('alice')}\r\n\r\n").encode()
    status, headers, _ = await exchange(gateway.server.port, raw)
    assert status == 502 and "content-length" in headers


# -- answers the fast path refuses are refused by the aiohttp path too ----------------------

BROKEN_ANSWERS = {
    "space_before_colon": b"HTTP/1.1 200 OK\r\nContent-Length : 83\r\n\r\n" + b"x" * 83,
    "switching_protocols_to_plain_get": (b"HTTP/1.1 101 Switching Protocols\r\n"
                                         b"Upgrade: evil\r\nConnection: Upgrade\r\n\r\nbytes"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_ANSWERS))
async def test_broken_answer_is_502_on_every_path(
        gateway: GatewayUnderTest, wire: Callable[..., Any], case: str) -> None:
    w = await wire(BROKEN_ANSWERS[case])
    route_to(gateway, "alice", w)
    raw = (f"GET {PROXY}x HTTP/1.1\r\nHost: gw\r\n"
           f"Cookie: access_token={gateway.token('alice')}\r\n\r\n").encode()
    status, _, _ = await exchange(gateway.server.port, raw)
    assert status == 502
    assert w.received.count(b"GET ") == 1  # and the request went out once


@pytest.mark.parametrize("case", sorted(BROKEN_ANSWERS))
async def test_broken_answer_to_http10_is_502(
        gw: GatewayUnderTest, wire: Callable[..., Any], case: str) -> None:
    w = await wire(BROKEN_ANSWERS[case])
    route_to(gw, "alice", w)
    raw = (f"GET {PROXY}x HTTP/1.0\r\nHost: gw\r\n"
           f"Cookie: access_token={gw.token('alice')}\r\n\r\n").encode()
    assert (await exchange(gw.server.port, raw))[0] == 502


async def test_answer_with_bare_lf_line_ends_is_502_on_the_fast_path(
        gw: GatewayUnderTest, wire: Callable[..., Any]) -> None:
    """(aiohttp's client reads these leniently and cannot be told otherwise: see the note in
    proxy.relay.fallback.http.)"""
    w = await wire(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    route_to(gw, "alice", w)
    raw = (f"GET {PROXY}x HTTP/1.1\r\nHost: gw\r\n"
           f"Cookie: access_token={gw.token('alice')}\r\n\r\n").encode()
    assert (await exchange(gw.server.port, raw))[0] == 502
    assert w.received.count(b"GET ") == 1


# -- what never reaches a workspace ---------------------------------------------------------

async def test_request_trailers_do_not_reach_the_workspace(
        gateway: GatewayUnderTest, wire: Callable[..., Any]) -> None:
    w = await wire()
    route_to(gateway, "alice", w)
    raw = (f"POST {PROXY}x HTTP/1.1\r\nHost: gw\r\n"
           f"Cookie: access_token={gateway.token('alice')}\r\n"
           "Transfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n0\r\nREMOTE_USER: bob\r\nX-Checksum: 1\r\n\r\n").encode()
    status, _, body = await exchange(gateway.server.port, raw)
    assert (status, body) == (200, b"reached")
    assert b"hello" in w.received
    assert b"bob" not in w.received and b"X-Checksum" not in w.received


UNDERSCORE_FORWARDING = ("X_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n"
                         "X_Forwarded_Host: evil.example\r\nX_Forwarded_Proto: https\r\n"
                         "x_forwarded-prefix: /evil\r\nX-Real_IP: 6.6.6.6\r\n")


async def test_underscore_spellings_of_forwarding_headers_are_dropped(
        gateway: GatewayUnderTest, wire: Callable[..., Any]) -> None:
    w = await wire()
    route_to(gateway, "alice", w)
    raw = (f"GET {PROXY}x HTTP/1.1\r\nHost: gw\r\n"
           f"Cookie: access_token={gateway.token('alice')}\r\n{UNDERSCORE_FORWARDING}\r\n")
    status, _, _ = await exchange(gateway.server.port, raw.encode())
    assert status == 200
    received = bytes(w.received).lower()
    assert b"6.6.6.6" not in received and b"evil" not in received
    assert b"\r\nx-forwarded-for: 127.0.0.1\r\n" in received


# -- X-Content-Type-Options on the gateway's own answers ------------------------------------

async def test_malformed_request_answer_is_nosniff(gateway: GatewayUnderTest) -> None:
    """aiohttp's own 400 is text/plain and quotes the request: never let it be sniffed."""
    status, headers, _ = await exchange(gateway.server.port,
                                        b"G<script>T / HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert status == 400
    assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/lw-workspace/options?id=nope", "/nowhere",
                                  PROXY + "x", "/lw-workspace/launch"])
async def test_gateway_answers_are_nosniff(gateway: GatewayUnderTest, path: str) -> None:
    token = gateway.token("alice")
    raw = (f"GET {path} HTTP/1.1\r\nHost: gw\r\nCookie: access_token={token}\r\n"
           "Connection: close\r\n\r\n").encode()
    status, headers, _ = await exchange(gateway.server.port, raw)
    assert status >= 400
    assert headers["x-content-type-options"] == "nosniff"


async def test_fast_path_final_answer_is_nosniff(gw: GatewayUnderTest,
                                                 wire: Callable[..., Any]) -> None:
    route_to(gw, "alice", await wire())
    raw = (f"POST {PROXY}x HTTP/1.1\r\nHost: gw\r\nCookie: access_token={gw.token('alice')}\r\n"
           "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0x0\r\n\r\n").encode()
    status, headers, _ = await exchange(gw.server.port, raw)
    assert status == 400
    assert headers["x-content-type-options"] == "nosniff"


async def test_workspace_answers_are_relayed_as_the_workspace_made_them(
        gateway: GatewayUnderTest, wire: Callable[..., Any]) -> None:
    route_to(gateway, "alice", await wire())
    raw = (f"GET {PROXY}x HTTP/1.1\r\nHost: gw\r\n"
           f"Cookie: access_token={gateway.token('alice')}\r\n\r\n").encode()
    status, headers, _ = await exchange(gateway.server.port, raw)
    assert status == 200 and "x-content-type-options" not in headers
