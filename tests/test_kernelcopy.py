"""Bytes moved in the kernel (proxy.relay.fast.kernelcopy): a Pump moves exactly its count from
one real socket to another and leaves what follows to the transport; and through the gateway,
bodies and WebSocket frames large enough to be spliced arrive intact, interleaved with the
small ones the plain path carries, with browser activity still counted."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import pytest

from launcher.demo import pattern
from proxy.observe.traffic import Traffic
from proxy.relay.fast import kernelcopy
from proxy.relay.fast.interfaces import WRITE_HIGH_WATER
from proxy.relay.fast.kernelcopy import SOURCE, Pipes, Pump, can_pump
from proxy.relay.fast.splice import PUMP_MIN as WS_PUMP_MIN
from proxy.relay.fast.splice import splice
from proxy.relay.fast.upstream import PUMP_MIN as BODY_PUMP_MIN

from .conftest import PROXY, GatewayUnderTest
from .helpers import eventually

pytestmark = pytest.mark.skipif(not kernelcopy.AVAILABLE, reason="no splice(2) here")
KiB = 1024


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.made = asyncio.get_running_loop().create_future()
        self.got_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool | None:
        self.got_eof = True
        return True


async def _pair() -> tuple[Collect, Collect]:
    """Two ends of one TCP connection on 127.0.0.1: (server side, client side)."""
    loop = asyncio.get_running_loop()
    accepted: list[Collect] = []

    def factory() -> Collect:
        accepted.append(Collect())
        return accepted[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(Collect, "127.0.0.1", port)
    server.close()
    await eventually(lambda: bool(accepted), within=10)
    await accepted[0].made
    return accepted[0], client


@pytest.fixture
async def pairs() -> AsyncIterator[tuple[Collect, Collect, Collect, Collect]]:
    """(source's sender, source, destination, destination's reader)."""
    src, sender = await _pair()
    dst, reader = await _pair()
    yield sender, src, dst, reader
    for end in (sender, src, dst, reader):
        assert end.transport is not None
        end.transport.close()


async def _until(check: Any) -> None:
    await eventually(check, within=10)


def _transports(*ends: Collect) -> list[asyncio.Transport]:
    out = [end.transport for end in ends]
    assert all(t is not None for t in out)
    return cast(list[asyncio.Transport], out)


async def test_pump_moves_exactly_its_count_and_leaves_the_rest_to_the_transport(
        pairs: tuple[Collect, Collect, Collect, Collect]) -> None:
    sender, src, dst, reader = pairs
    to_src, src_t, dst_t = _transports(sender, src, dst)
    body = b"".join(pattern(3 * 1024 * KiB))
    src_t.pause_reading()
    pump = Pump(Pipes(), can_pump(src_t), can_pump(dst_t), dst_t)
    ended: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
    pump.run(len(body), ended.set_result)
    to_src.write(body + b"next request")
    assert await asyncio.wait_for(ended, 10) is None
    pump.close()
    await _until(lambda: len(reader.data) >= len(body))
    assert bytes(reader.data) == body
    src_t.resume_reading()
    await _until(lambda: src.data == b"next request")


async def test_pump_says_the_source_ended_and_how_much_did_not_come(
        pairs: tuple[Collect, Collect, Collect, Collect]) -> None:
    sender, src, dst, reader = pairs
    to_src, src_t, dst_t = _transports(sender, src, dst)
    src_t.pause_reading()
    pump = Pump(Pipes(), can_pump(src_t), can_pump(dst_t), dst_t)
    ended: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
    pump.run(100 * KiB, ended.set_result)
    to_src.write(b"x" * 1000)
    to_src.write_eof()
    assert await asyncio.wait_for(ended, 10) == SOURCE
    assert pump.left == 100 * KiB - 1000
    await _until(lambda: len(reader.data) == 1000)


async def test_pump_lets_bytes_already_queued_on_the_destination_go_first(
        pairs: tuple[Collect, Collect, Collect, Collect]) -> None:
    sender, src, dst, reader = pairs
    to_src, src_t, dst_t = _transports(sender, src, dst)
    reader_t = _transports(reader)[0]
    reader_t.pause_reading()  # the destination's buffer fills and stays queued
    queued = b"q" * (8 * 1024 * KiB)
    dst_t.write(queued)
    assert dst_t.get_write_buffer_size() > 0
    src_t.pause_reading()
    pump = Pump(Pipes(), can_pump(src_t), can_pump(dst_t), dst_t)
    ended: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
    body = b"p" * (512 * KiB)
    pump.run(len(body), ended.set_result)
    to_src.write(body)
    reader_t.resume_reading()
    assert await asyncio.wait_for(ended, 10) is None
    await _until(lambda: len(reader.data) == len(queued) + len(body))
    assert bytes(reader.data) == queued + body


async def test_pump_between_runs_peeks_without_consuming(
        pairs: tuple[Collect, Collect, Collect, Collect]) -> None:
    sender, src, dst, _ = pairs
    to_src, src_t, dst_t = _transports(sender, src, dst)
    src_t.pause_reading()
    pump = Pump(Pipes(), can_pump(src_t), can_pump(dst_t), dst_t)
    assert pump.peek(4) is None
    ready = asyncio.get_running_loop().create_future()
    pump.when_readable(lambda: ready.done() or ready.set_result(None))
    to_src.write(b"abcdef")
    await asyncio.wait_for(ready, 10)
    assert pump.peek(4) == b"abcd"
    pump.close()
    src_t.resume_reading()
    await _until(lambda: src.data == b"abcdef")


# -- through the gateway ----------------------------------------------------------------------

async def test_large_download_then_next_request_on_the_same_connection(
        two_workspaces: GatewayUnderTest) -> None:
    """A Content-Length answer past BODY_PUMP_MIN goes through the kernel; the workspace
    connection and the browser connection are both reused after it."""
    gw = two_workspaces
    size = 3 * 1024 * KiB + 7
    assert size > BODY_PUMP_MIN
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, cookies=gw.cookies("alice")) as s:
        for _ in range(2):
            async with s.get(gw.url(PROXY + f"bytes?size={size}")) as resp:
                assert resp.status == 200
                body = await resp.read()
            assert body == b"".join(pattern(size))
    fast = gw.server.fast_path
    assert fast is not None and fast.relayed == 2
    assert fast.pool.pipes.idle  # the kernel path ran and gave its pipe back


async def test_large_upload_arrives_whole_and_the_connection_goes_on(
        two_workspaces: GatewayUnderTest) -> None:
    gw = two_workspaces
    body = b"".join(pattern(2 * 1024 * KiB + 3))
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, cookies=gw.cookies("alice")) as s:
        for _ in range(2):
            async with s.post(gw.url(PROXY + "upload"), data=body) as resp:
                assert resp.status == 200
                got = await resp.json()
            assert got == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    fast = gw.server.fast_path
    assert fast is not None and fast.relayed == 2
    assert fast.pool.pipes.idle


async def test_large_and_small_websocket_frames_interleaved_arrive_intact(
        two_workspaces: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    gw = two_workspaces
    sizes = [200 * KiB, 10, 64 * KiB, WS_PUMP_MIN, 5, 1024 * KiB, 64 * KiB, 64 * KiB, 0, 3]
    async with client.ws_connect(gw.url(PROXY + "echo"), headers=gw.cookie_header("alice"),
                                 max_msg_size=0) as ws:
        for i, size in enumerate(sizes):
            payload = bytes([i]) * size
            await ws.send_bytes(payload)
            assert await ws.receive_bytes(timeout=10) == payload
        burst = [bytes([i]) * (WS_PUMP_MIN + 100 * KiB) for i in range(5)] + [b"end"]
        for payload in burst:  # back to back: frame after frame in the kernel
            await ws.send_bytes(payload)
        for payload in burst:
            assert await ws.receive_bytes(timeout=10) == payload
    fast = gw.server.fast_path
    assert fast is not None
    await _until(lambda: not fast.splices)
    assert fast.pool.pipes.idle
    sent = sum(sizes) + sum(len(p) for p in burst)
    assert fast.traffic.to_workspace >= sent and fast.traffic.to_browser >= sent


async def test_large_websocket_frames_spliced_in_the_kernel_count_as_activity(
        two_workspaces: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    gw = two_workspaces
    tracker = gw.gateway.activity
    async with client.ws_connect(gw.url(PROXY + "echo"), headers=gw.cookie_header("alice"),
                                 max_msg_size=0) as ws:
        big = bytes(4 * WS_PUMP_MIN)
        await ws.send_bytes(big)  # the first: mid-frame, the rest in the kernel
        await ws.receive_bytes(timeout=10)
        tracker.forget("alice")
        await ws.send_bytes(big)  # the next: judged at the boundary, whole
        await ws.receive_bytes(timeout=10)
        assert tracker.last_ms("alice") > 0


async def test_no_pump_on_a_tls_transport(tmp_path: Any) -> None:
    """Under TLS the socket carries ciphertext: splicing it would bypass the encryption."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    client_ctx = ssl.create_default_context(cafile=tmp_path / "c.pem")
    client_ctx.check_hostname = False
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Collect, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    plain_t, _ = await loop.create_connection(Collect, "127.0.0.1", port)
    tls_t, _ = await loop.create_connection(Collect, "127.0.0.1", port, ssl=client_ctx)
    try:
        assert can_pump(plain_t) >= 0  # the same kind of socket without TLS may
        assert can_pump(tls_t) == -1
    finally:
        plain_t.close()
        tls_t.close()
        server.close()


async def test_frames_queued_behind_a_slow_reader_keep_their_own_bytes(
        two_workspaces: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    """Reads share one buffer; a write the peer cannot take at once keeps that buffer, so the
    next read must not overwrite it (the browser here reads nothing until all are sent)."""
    gw = two_workspaces
    sent = [bytes([i]) * (64 * KiB + i) for i in range(60)]
    async with client.ws_connect(gw.url(PROXY + "echo"), headers=gw.cookie_header("alice"),
                                 max_msg_size=0) as ws:
        for payload in sent:
            await ws.send_bytes(payload)
        for payload in sent:
            assert await ws.receive_bytes(timeout=10) == payload


def _frame(payload: bytes) -> bytes:
    """A masked (browser) binary frame with a zero mask key: the payload goes as is."""
    n = len(payload)
    if n < 126:
        return bytes([0x82, 0x80 | n]) + bytes(4) + payload
    if n < 65536:
        return b"\x82\xfe" + n.to_bytes(2, "big") + bytes(4) + payload
    return b"\x82\xff" + n.to_bytes(8, "big") + bytes(4) + payload


def test_shared_read_buffer_is_not_reused_under_a_pending_write_on_uvloop() -> None:
    """uvloop keeps a reference to what it could not write at once (no copy): the splice
    must then read into a fresh buffer. The workspace here reads nothing until every frame
    went in, so writes pend; each frame must arrive with its own bytes."""
    uvloop = pytest.importorskip("uvloop")
    frames = [_frame(bytes([i]) * (64 * KiB + i)) for i in range(60)]

    async def main() -> bytes:
        browser, browser_client = await _pair()
        workspace, workspace_client = await _pair()
        b_t, to_b, w_t, from_w = _transports(browser, browser_client, workspace,
                                             workspace_client)
        from_w.pause_reading()
        for t in (b_t, w_t):  # as the gateway sets them: reads go on while writes pend
            t.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        # small kernel buffers towards the workspace, so writes pend after a few frames
        w_t.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        from_w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        splice(b_t, w_t, to_browser=b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
               to_workspace=b"", touch=lambda user: None, user="alice", live=set(),
               traffic=Traffic(), max_message=16 * 1024 * KiB)
        for frame in frames:
            to_b.write(frame)
        await eventually(lambda: w_t.get_write_buffer_size() > 0, within=10)
        await asyncio.sleep(0.2)  # more reads while writes pend
        from_w.resume_reading()
        await eventually(lambda: len(workspace_client.data) >= sum(map(len, frames)), 10)
        for t in (b_t, to_b, w_t, from_w):
            t.close()
        return bytes(workspace_client.data)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == b"".join(frames)
