"""What one client, or many, can hold of the gateway: descriptors, memory and time. Each test
is a bounded attack over raw loopback sockets against a gateway started as ``hatchway serve``
starts it, with small limits configured so that the attack crosses them in seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from launcher.routes import Route

from .conftest import PROXY, GatewayUnderTest
from .helpers import eventually

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
FAST = {"header_timeout_seconds": 1.0, "keepalive_timeout_seconds": 2.0,
        "body_timeout_seconds": 1.0}  # sweeps every 0.25 s


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[..., Any]]:
    """Raw connections to the gateway (from a chosen loopback address), closed at the end."""
    opened: list[asyncio.StreamWriter] = []

    async def open_one(port: int, source: str = "127.0.0.1") -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
        opened.append(writer)
        return reader, writer

    yield open_one
    for writer in opened:
        writer.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the gateway sends until it closes; fails if it holds on past ``seconds``."""
    return await asyncio.wait_for(reader.read(), seconds)


async def silent_workspace() -> tuple[asyncio.Server, list[bytes], list[asyncio.Event]]:
    """A workspace that reads request heads, counts them, and never answers. Each
    connection that carried a request has an event, set when the gateway closes it."""
    heads: list[bytes] = []
    closed: list[asyncio.Event] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done: asyncio.Event | None = None
        try:
            while True:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                if done is None:
                    done = asyncio.Event()
                    closed.append(done)
        except (asyncio.IncompleteReadError, ConnectionError):
            if done is not None:
                done.set()
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), heads, closed


def route_alice_to(gw: GatewayUnderTest, server: asyncio.Server) -> None:
    gw.gateway.routes.set("alice", Route("127.0.0.1", server.sockets[0].getsockname()[1],
                                         PROXY))


async def answer_while_trickling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                 chunk: bytes, times: int, within: float) -> bytes:
    """Write ``chunk`` every 0.1 s (``times`` times at most) until the gateway closes; return
    everything it sent (fails if it holds on past ``within`` seconds)."""
    async def trickle() -> None:
        for _ in range(times):
            writer.write(chunk)
            await asyncio.sleep(0.1)

    task = asyncio.ensure_future(trickle())
    try:
        return await closed_within(reader, within)
    finally:
        task.cancel()


def get(path: str, token: str) -> bytes:
    return (f"GET {PROXY}{path} HTTP/1.1\r\nHost: gw\r\nCookie: access_token={token}\r\n"
            "\r\n").encode()


async def test_idle_connections_past_the_cap_are_shed_and_a_user_still_gets_in(
        start_gateway: Any, demo_workspace: Any, sockets: Any) -> None:
    gw: GatewayUnderTest = await start_gateway(limits={"max_connections": 50})
    gw.publish("alice", await demo_workspace())
    idle = [await sockets(gw.server.port) for _ in range(300)]

    def shed() -> int:
        return sum(1 for r, _ in idle if r.at_eof() or r._buffer)  # noqa: SLF001 - read nothing
    await eventually(lambda: shed() >= 250)
    assert gw.server.fast_path is not None
    assert gw.server.fast_path.places.total <= 50
    reader, writer = await sockets(gw.server.port)
    writer.write(get("headers", gw.token("alice")))
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    assert shed() >= 250


async def test_connection_that_sends_nothing_is_closed_after_the_header_timeout(
        start_gateway: Any, sockets: Any) -> None:
    gw = await start_gateway(limits=FAST)
    reader, _ = await sockets(gw.server.port)
    start = time.monotonic()
    assert await closed_within(reader, 3) == b""
    assert 1.0 <= time.monotonic() - start <= 1.25 + 0.3


async def test_trickling_head_is_cut_with_408_after_the_header_timeout(
        start_gateway: Any, sockets: Any) -> None:
    gw = await start_gateway(limits=FAST)
    reader, writer = await sockets(gw.server.port)
    writer.write(f"GET {PROXY}x HTTP/1.1\r\nHost: gw\r\n".encode())
    start = time.monotonic()
    answer = await answer_while_trickling(reader, writer, b"X-a: b\r\n", 50, within=3)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert 1.0 <= time.monotonic() - start <= 1.25 + 0.3


async def test_slow_request_body_is_cut_with_408(start_gateway: Any, demo_workspace: Any,
                                                  sockets: Any) -> None:
    gw = await start_gateway(limits={**FAST, "header_timeout_seconds": 5.0})
    gw.publish("alice", await demo_workspace())
    reader, writer = await sockets(gw.server.port)
    writer.write((f"POST {PROXY}upload HTTP/1.1\r\nHost: gw\r\n"
                  f"Cookie: access_token={gw.token('alice')}\r\nContent-Length: 100000\r\n"
                  "\r\n").encode())
    start = time.monotonic()
    # 100 bytes/s, under body_min_rate (1024)
    answer = await answer_while_trickling(reader, writer, b"x" * 10, 100, within=4)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - start <= 1.0 + 2 * 0.25 + 0.3


async def test_per_address_cap_refuses_the_next_connection_but_not_another_address(
        start_gateway: Any, sockets: Any) -> None:
    gw = await start_gateway(limits={"max_connections_per_client": 5})
    held = [await sockets(gw.server.port) for _ in range(5)]
    reader, _ = await sockets(gw.server.port)
    assert (await closed_within(reader, 3)).startswith(b"HTTP/1.1 503 ")
    reader, writer = await sockets(gw.server.port, source="127.0.0.2")
    writer.write(b"GET /_status HTTP/1.1\r\nHost: gw\r\n\r\n")
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    assert not any(r.at_eof() for r, _ in held)


async def test_a_trusted_proxy_has_no_per_address_cap(start_gateway: Any, sockets: Any) -> None:
    # Behind revproxy every user comes from revproxy's address.
    gw = await start_gateway(limits={"max_connections_per_client": 5},
                             trusted_proxies=["127.0.0.3"])
    held = [await sockets(gw.server.port, source="127.0.0.3") for _ in range(8)]
    for reader, writer in held:
        writer.write(b"GET /_status HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")


async def test_pipelining_to_a_silent_workspace_is_bounded_and_sends_each_request_once(
        start_gateway: Any, sockets: Any) -> None:
    gw = await start_gateway(limits={"max_pending_bytes": 4096,
                                     "max_buffered_bytes": 1024 * 1024, **FAST})
    fp = gw.server.fast_path
    assert fp is not None
    server, heads, closed = await silent_workspace()
    route_alice_to(gw, server)
    burst = get("x", gw.token("alice")) * 1000  # ~0.4 MB per connection
    clients = [await sockets(gw.server.port) for _ in range(40)]
    for _, writer in clients:
        writer.write(burst)
    await asyncio.sleep(1.0)
    assert fp.buffered <= 1024 * 1024  # what crossed the budget was let go (503)
    assert len(heads) <= 40  # at most each connection's first request, once
    for _, writer in clients:
        writer.transport.abort()  # every client leaves while its reading is paused
    await asyncio.wait_for(asyncio.gather(*(c.wait() for c in closed)), 2.0 + 0.5 + 1.0)
    await eventually(lambda: (fp.buffered, len(fp.fronts), fp.places.total) == (0, 0, 0))
    assert (fp.buffered, len(fp.fronts), fp.places.total) == (0, 0, 0)
    assert len(heads) == len(closed) <= 40
    server.close()


async def test_client_that_leaves_while_paused_is_closed_by_the_sweep(
        start_gateway: Any, sockets: Any) -> None:
    """Its FIN waits behind the bytes the gateway does not read, so nothing tells the gateway
    it left: read-ahead is held no longer than the keep-alive timeout without an answer."""
    gw = await start_gateway(limits={"max_pending_bytes": 1024, **FAST})
    fp = gw.server.fast_path
    assert fp is not None
    server, heads, closed = await silent_workspace()
    route_alice_to(gw, server)
    _, writer = await sockets(gw.server.port)
    writer.write(get("x", gw.token("alice")) * 200)
    await eventually(lambda: len(heads) == 1)  # the first is at the workspace, the rest wait
    writer.close()
    await asyncio.wait_for(closed[0].wait(), 2.0 + 0.5 + 1.0)
    assert len(fp.fronts) == 0 and len(heads) == 1
    server.close()


async def test_request_is_not_sent_again_when_a_fresh_workspace_connection_drops(
        gw: GatewayUnderTest, sockets: Any) -> None:
    """The workspace reads the request and closes without answering: it may have acted on
    it, so the browser gets 502 and the workspace saw the request exactly once."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    route_alice_to(gw, server)
    reader, writer = await sockets(gw.server.port)
    writer.write(get("x", gw.token("alice")))
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).startswith(b"HTTP/1.1 502 ")
    assert len(seen) == 1  # a second attempt would have been read before the 502 was sent
    server.close()


async def test_post_is_not_retried_on_a_stale_pooled_connection(
        gw: GatewayUnderTest, sockets: Any) -> None:
    """Only idempotent requests are sent again after a pooled connection drops unanswered."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    route_alice_to(gw, server)
    reader, writer = await sockets(gw.server.port)
    token = gw.token("alice")
    writer.write(get("x", token))
    assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
    writer.write((f"POST {PROXY}x HTTP/1.1\r\nHost: gw\r\nCookie: access_token={token}\r\n"
                  "Content-Length: 0\r\n\r\n").encode())
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)).startswith(b"HTTP/1.1 502 ")
    assert sum(h.startswith(b"POST") for h in seen) == 1  # read before any 502 was sent
    server.close()
