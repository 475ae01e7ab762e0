"""The upstream every peer relays to: as cheap per request as Python gets (uvloop, a bare asyncio
protocol, llhttp through httptools), so the proxy, not the upstream, sets the figures.

Endpoints are chosen by the LAST path segment, so it answers whatever prefix a peer forwards
(``/small``, ``/lw-workspace/proxy/small``, ``/user/bench/small`` are the same request):

- ``small``        200 with a 13-byte body
- ``bytes-<n>``    200 with n bytes, streamed in 1 MiB writes under flow control
- ``upload``       reads any request body, answers 200 ``received <n>``
- ``ws``           WebSocket upgrade, then every data frame is echoed back

    python -m benchmarks.upstream --port 9000 [--procs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from typing import cast

import httptools

try:
    from benchmarks.wsframes import OP_CLOSE, OP_PING, OP_PONG, FrameReader, accept_key
except ImportError:  # run as a script: python benchmarks/upstream.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.wsframes import OP_CLOSE, OP_PING, OP_PONG, FrameReader, accept_key

SMALL_BODY = b"Hello, world!"
SMALL = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
         + SMALL_BODY)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
CHUNK = 1 << 20
ZEROS = memoryview(bytes(CHUNK))
MAX_DOWNLOAD = 1 << 34  # 16 GiB: a bound, not a limit anyone reaches


class Upstream(asyncio.Protocol):
    """One client connection: HTTP/1.1 keep-alive until an upgrade turns it into an echo."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.ws_key = b""
        self.body_bytes = 0
        self.remaining = 0  # download bytes still to write
        self.close_after = False  # the download's request said Connection: close
        self.paused = False
        self.frames: FrameReader | None = None

    # -- transport callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=4 * CHUNK)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.frames is not None:
            self._echo(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data[upgrade.args[0]:])
        except httptools.HttpParserError:
            self._write(BAD)
            self._close()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # -- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.ws_key = b""
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"sec-websocket-key":
            self.ws_key = value

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade():
            return  # answered in _upgrade, with the bytes that follow the request
        name = self.url.split(b"?", 1)[0].rsplit(b"/", 1)[-1]
        if name == b"small":
            self._write(SMALL)
        elif name == b"upload":
            body = b"received %d" % self.body_bytes
            self._write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        elif name.startswith(b"bytes-") and name[6:].isdigit():
            size = min(int(name[6:]), MAX_DOWNLOAD)
            self._write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                        b"Content-Length: %d\r\n\r\n" % size)
            self.remaining = size
            self.close_after = not self.parser.should_keep_alive()
            self._pump()
            return
        else:
            self._write(NOT_FOUND)
        if not self.parser.should_keep_alive():
            self._close()

    # -- helpers ------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _pump(self) -> None:
        while self.remaining > 0 and not self.paused and self.transport is not None:
            n = min(CHUNK, self.remaining)
            self.transport.write(ZEROS[:n])
            self.remaining -= n
        if self.remaining == 0 and self.close_after:
            self._close()

    def _upgrade(self, rest: bytes) -> None:
        name = self.url.split(b"?", 1)[0].rsplit(b"/", 1)[-1]
        if name != b"ws" or not self.ws_key:
            self._write(BAD)
            self._close()
            return
        accept = accept_key(self.ws_key.decode("latin-1")).encode("ascii")
        self._write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self.frames = FrameReader()
        if rest:
            self._echo(rest)

    def _echo(self, data: bytes) -> None:
        assert self.frames is not None
        out: list[bytes] = []
        for b0, payload in self.frames.feed(data):
            opcode = b0 & 0x0F
            if opcode == OP_CLOSE:
                out.append(_frame(0x80 | OP_CLOSE, payload[:2]))
                self._write(b"".join(out))
                self._close()
                return
            if opcode == OP_PING:
                out.append(_frame(0x80 | OP_PONG, payload))
            elif opcode != OP_PONG:
                out.append(_frame(b0, payload))  # same FIN bit and opcode: fragments echo too
        if out:
            self._write(b"".join(out))


def _frame(b0: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return bytes((b0, 126)) + n.to_bytes(2, "big") + payload
    return bytes((b0, 127)) + n.to_bytes(8, "big") + payload


def _listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    return sock


async def serve(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, sock=sock, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def _run(sock: socket.socket) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a hatchway dependency on Linux
        asyncio.run(serve(sock))
    else:
        uvloop.run(serve(sock))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--procs", type=int, default=1, help="processes sharing the port")
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("the benchmark upstream listens on loopback only")
    procs = max(1, min(args.procs, os.cpu_count() or 1))
    socks = [_listen_socket(args.host, args.port, procs > 1) for _ in range(procs)]
    children = []
    for sock in socks[1:]:
        pid = os.fork()
        if pid == 0:
            _run(sock)
            os._exit(0)
        children.append(pid)
    try:
        _run(socks[0])
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


if __name__ == "__main__":
    main()
