"""Drives the load generators against one Target and turns their output into figures:
``wrk`` for HTTP (benchmarks/lua/report.lua prints the numbers as JSON), ``benchmarks.wsload``
processes for WebSocket. Also the sanity check that proves a peer routes correctly before any
figure of it is believed. Every call is bounded in time."""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.peers import REPO, Target
from benchmarks.procs import Children
from benchmarks.wsframes import OP_BINARY, FrameReader, encode_frame
from benchmarks.wsload import bucket_value_ms

LUA = Path(__file__).resolve().parent / "lua" / "report.lua"


class LoadError(RuntimeError):
    pass


def run_wrk(children: Children, target: Target, rest: str, *, connections: int, duration: int,
            log: Path, method: str = "GET", body_bytes: int = 0, conn_rate: float = 0.0,
            timeout: int = 10) -> dict[str, Any]:
    """One wrk run (``-t1``): its JSON summary, with ``errors`` = every failed request."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", f"{timeout}s",
           "-s", str(LUA)]
    for header in target.headers:
        cmd += ["-H", header]
    cmd.append(target.url(rest))
    env = {**os.environ, "WRK_METHOD": method, "WRK_BODY_BYTES": str(body_bytes),
           "WRK_CONN_RATE": f"{conn_rate:.6f}"}
    proc = children.spawn(cmd, role="load", env=env, pipe_stdout=True, log=log)
    try:
        out, _ = proc.communicate(timeout=duration + timeout + 30)
    except subprocess.TimeoutExpired:
        raise LoadError(f"wrk did not finish within {duration + timeout + 30} s") from None
    finally:
        children.stop(proc)
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("JSON "):
            doc: dict[str, Any] = json.loads(line[5:])
            doc["errors"] = (doc["connect_errors"] + doc["read_errors"] + doc["write_errors"]
                             + doc["status_errors"] + doc["timeouts"])
            doc["seconds"] = doc["duration_us"] / 1e6
            return doc
    raise LoadError(f"wrk printed no summary (exit {proc.returncode}); see {log}")


class Lines:
    """Line reader over a child's stdout with a deadline (a hung child must not hang us)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buf = b""

    def read(self, deadline: float) -> str:
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadError("load client timed out")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise LoadError("load client exited early")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")


def _wsload(children: Children, target: Target, mode: str, log: Path,
            *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "benchmarks.wsload", mode, "--port", str(target.port),
           "--path", target.prefix + "ws", *args]
    for header in target.headers:
        cmd += ["--header", header]
    return children.spawn(cmd, role="load", stdin=subprocess.PIPE, pipe_stdout=True, log=log,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def _tell(proc: subprocess.Popen[bytes], line: str) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(line.encode() + b"\n")
        proc.stdin.flush()
    except BrokenPipeError:
        pass


def run_ws_echo(children: Children, target: Target, *, connections: int, size: int,
                duration: float, warmup: float, procs: int, log: Path) -> dict[str, float]:
    """``procs`` wsload processes share the connections; all start on the same signal."""
    procs = max(1, min(procs, connections))
    shares = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    running = [_wsload(children, target, "echo", log, "--connections", str(n), "--size",
                       str(size), "--duration", str(duration), "--warmup", str(warmup))
               for n in shares]
    try:
        readers = [Lines(p) for p in running]
        deadline = time.monotonic() + 60
        for reader in readers:
            line = reader.read(deadline)
            if line != "READY":
                raise LoadError(json.loads(line).get("error", line) if line.startswith("{")
                                else line)
        for proc in running:
            _tell(proc, "go")
        deadline = time.monotonic() + warmup + duration + 30
        docs = [json.loads(reader.read(deadline)) for reader in readers]
    finally:
        for proc in running:
            children.stop(proc)
    hist: dict[int, int] = {}
    for doc in docs:
        for bucket, count in doc["hist"].items():
            hist[int(bucket)] = hist.get(int(bucket), 0) + count
    messages = sum(d["messages"] for d in docs)
    return {"msgs_s": messages / duration, "p50_ms": percentile(hist, 50),
            "p99_ms": percentile(hist, 99), "errors": float(sum(d["errors"] for d in docs))}


def percentile(hist: dict[int, int], p: float) -> float:
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank, seen = total * p / 100.0, 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket_value_ms(bucket)
    return bucket_value_ms(max(hist))


class IdleHold:
    """``with IdleHold(...) as held:`` N idle WebSockets are open through the target inside."""

    def __init__(self, children: Children, target: Target, connections: int, log: Path,
                 timeout: float = 120.0) -> None:
        self.children, self.target, self.n, self.log = children, target, connections, log
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.dropped = 0

    def __enter__(self) -> int:
        self.proc = _wsload(self.children, self.target, "hold", self.log, "--connections",
                            str(self.n), "--timeout", "30", "--hold-max", str(self.timeout))
        self.lines = Lines(self.proc)
        try:
            doc = json.loads(self.lines.read(time.monotonic() + self.timeout))
        except LoadError as exc:
            raise LoadError(f"{self.n} idle WebSockets not all open within {self.timeout:.0f} s "
                            f"({exc})") from None
        if doc["failed"]:
            raise LoadError(f"{doc['failed']} of {self.n} WebSockets failed to open: "
                            f"{doc['first_failure']}")
        return int(doc["held"])

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        try:
            _tell(self.proc, "close")
            self.dropped = int(json.loads(self.lines.read(time.monotonic() + 30))["dropped"])
        except (LoadError, ValueError, KeyError):
            pass
        finally:
            self.children.stop(self.proc)


def sanity_check(target: Target, timeout: float = 10.0) -> None:
    """Small GET, upload, download and one WebSocket echo through the peer, before measuring:
    a misrouted peer would otherwise post beautiful 404 figures."""
    headers = dict(h.split(": ", 1) for h in target.headers)
    checks: list[tuple[str, str, bytes | None, bytes]] = [
        ("GET", "small", None, b"Hello, world!"),
        ("POST", "upload", b"x" * 1000, b"received 1000"),
        ("GET", "bytes-100000", None, bytes(100000)),
    ]
    for method, rest, body, expected in checks:
        conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=timeout)
        try:
            conn.request(method, target.prefix + rest, body=body, headers=headers)
            resp = conn.getresponse()
            got = resp.read()
        except OSError as exc:
            raise LoadError(f"{method} {rest}: {exc}") from None
        finally:
            conn.close()
        if resp.status != 200 or got != expected:
            raise LoadError(f"{method} {target.prefix}{rest} answered {resp.status} "
                            f"{got[:80]!r}")
    _ws_echo_once(target, headers, timeout)


def _ws_echo_once(target: Target, headers: dict[str, str], timeout: float) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {target.prefix}ws HTTP/1.1", f"Host: 127.0.0.1:{target.port}",
             "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
             "Sec-WebSocket-Version: 13", f"Origin: http://127.0.0.1:{target.port}",
             *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", target.port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise LoadError(f"WebSocket upgrade answered {status!r}")
        payload = os.urandom(1000)
        sock.sendall(encode_frame(OP_BINARY, payload, os.urandom(4)))
        reader = FrameReader()
        frames = reader.feed(rest)
        while not frames:
            chunk = sock.recv(65536)
            if not chunk:
                raise LoadError("WebSocket closed before the echo")
            frames = reader.feed(chunk)
        if frames[0][1] != payload:
            raise LoadError("WebSocket echo differs from the message sent")
