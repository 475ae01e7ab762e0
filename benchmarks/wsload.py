"""WebSocket load client: one process, many connections, raw frames on uvloop.

Modes (the harness runs several ``echo`` processes side by side when one core is not enough):

``echo``  every connection sends a binary message, waits for its echo, sends the next (closed
          loop, one message in flight per connection). Prints "READY" once all connections are
          upgraded, starts on a line on stdin, and prints one JSON line: messages counted in the
          measuring window and a log-bucketed histogram of round-trip times.
``hold``  opens N connections and keeps them idle. Prints one JSON line {"held", "failed"} once
          all handshakes are done, closes everything on a line on stdin (or after --hold-max s),
          then prints {"dropped"}: connections the proxy closed while they were idle.

Frames are masked with one random key per connection and pre-encoded once, so sending costs a
write call; the echo only has its length checked. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import resource
import sys
import time
from typing import cast

try:
    from benchmarks.wsframes import OP_BINARY, OP_CLOSE, FrameReader, encode_frame
except ImportError:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.wsframes import OP_BINARY, OP_CLOSE, FrameReader, encode_frame

BUCKETS_PER_DOUBLING = 32  # histogram resolution: about 2 %


def bucket_of(ns: int) -> int:
    return int(math.log2(max(ns, 1)) * BUCKETS_PER_DOUBLING)


def bucket_value_ms(bucket: int) -> float:
    return float(2 ** ((bucket + 0.5) / BUCKETS_PER_DOUBLING) / 1e6)


class Window:
    """Shared by all connections of the process: counts only inside [start, end)."""

    def __init__(self) -> None:
        self.start = math.inf
        self.end = math.inf
        self.count = 0
        self.errors = 0
        self.hist: dict[int, int] = {}


class Conn(asyncio.Protocol):
    def __init__(self, request: bytes, frame: bytes, size: int, window: Window) -> None:
        self.request = request
        self.frame = frame
        self.size = size
        self.window = window
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.head = b""
        self.frames = FrameReader()
        self.sent_ns = 0
        self.running = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                if len(self.head) > 65536:
                    self._fail("handshake response too large")
                return
            status = self.head.split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                self._fail(status.decode("latin-1", "replace")[:120])
                return
            rest = self.head[end + 4:]
            self.head = b""
            self.upgraded.set_result(None)
            if not rest:
                return
            data = rest
        now = time.perf_counter_ns()
        w = self.window
        for b0, payload in self.frames.feed(data):
            if b0 & 0x0F == OP_CLOSE:
                if self.transport is not None:
                    self.transport.close()
                return
            if len(payload) != self.size:
                w.errors += 1
            if w.start <= now < w.end:
                w.count += 1
                b = bucket_of(now - self.sent_ns)
                w.hist[b] = w.hist.get(b, 0) + 1
            if self.running and now < w.end and self.transport is not None:
                self.sent_ns = now
                self.transport.write(self.frame)

    def send_first(self) -> None:
        self.running = True
        self.sent_ns = time.perf_counter_ns()
        if self.transport is not None:
            self.transport.write(self.frame)

    def _fail(self, why: str) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(str(exc or "closed during handshake")))
        if not self.closed.done():
            self.closed.set_result(None)


def handshake(host: str, port: int, path: str, headers: list[str]) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             f"Origin: http://{host}:{port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def open_conns(args: argparse.Namespace, n: int, size: int,
                     window: Window) -> tuple[list[Conn], list[str]]:
    """n upgraded connections, at most 200 handshakes in flight, each bounded by a timeout."""
    loop = asyncio.get_running_loop()
    payload = os.urandom(size)
    gate = asyncio.Semaphore(200)
    failures: list[str] = []

    async def one() -> Conn | None:
        conn = Conn(handshake(args.host, args.port, args.path, args.header),
                    encode_frame(OP_BINARY, payload, os.urandom(4)), size, window)
        async with gate:
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: conn, args.host, args.port), args.timeout)
                await asyncio.wait_for(conn.upgraded, args.timeout)
            except (OSError, ConnectionError, TimeoutError) as exc:
                failures.append(str(exc) or type(exc).__name__)
                if conn.transport is not None:
                    conn.transport.close()
                return None
        return conn

    made = await asyncio.gather(*(one() for _ in range(n)))
    return [c for c in made if c is not None], failures


async def read_line(limit: float) -> str:
    """The harness's next command on stdin, or "" after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), limit)
    except TimeoutError:
        return ""


def emit(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def echo(args: argparse.Namespace) -> None:
    window = Window()
    conns, failures = await open_conns(args, args.connections, args.size, window)
    if failures:
        emit({"error": f"{len(failures)} of {args.connections} handshakes failed: {failures[0]}"})
        return
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    await read_line(args.timeout)
    now = time.perf_counter_ns()
    window.start = now + int(args.warmup * 1e9)
    window.end = window.start + int(args.duration * 1e9)
    for conn in conns:
        conn.send_first()
    await asyncio.sleep(args.warmup + args.duration + 0.05)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    emit({"messages": window.count, "seconds": args.duration, "errors": window.errors,
          "hist": window.hist})


async def hold(args: argparse.Namespace) -> None:
    conns, failures = await open_conns(args, args.connections, 1, Window())
    emit({"held": len(conns), "failed": len(failures),
          "first_failure": failures[0] if failures else ""})
    await read_line(args.hold_max)
    dropped = sum(1 for c in conns if c.transport is None)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    emit({"dropped": dropped})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=("echo", "hold"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/ws")
    ap.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--size", type=int, default=16, help="message bytes (echo)")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=30.0, help="per handshake / start signal")
    ap.add_argument("--hold-max", type=float, default=120.0, help="longest idle hold (s)")
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("the load client only targets loopback")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    run = echo if args.mode == "echo" else hold
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))


if __name__ == "__main__":
    main()
