"""Reliability figures for ``make soak`` (bounded, loopback only, not part of ``make test``).

1. **Soak**: ``hatchway serve`` (builtin mode, fast path, one route per client to the benchmark
   upstream) under mixed traffic from ``--clients`` clients for ``--minutes``: each client holds
   one WebSocket (a message echoed every second) and makes plain GETs and 64 KiB downloads in a
   loop. The gateway's RSS and open descriptors are read from /proc every ``--sample-seconds``;
   the goal is flat after warm-up. Failed requests are counted (goal: zero).
2. **Restart with many routes**: the gateway is stopped and started again with ``--routes``
   routes; the figure is the time from the new process's start until every route has answered
   200 once (goal < 2 s). Routes here are static (settings); on Kubernetes they come from the
   first list of the Service/EndpointSlice watches, which tests/k8s times separately.

Not here (yet): the Kubernetes API outage scenario (emulator stopped 60 s).

    python -m benchmarks.soak [--minutes 10] [--clients 200] [--routes 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.procs import Children, free_port, managed, raise_fd_limit, rss_kib, wait_port
from proxy.devissuer import DevIssuer

PROXY = "/lw-workspace/proxy/"
HATCHWAY = [str(Path(sys.executable).with_name("hatchway"))]


@dataclass
class Sample:
    at: float
    rss_mib: float
    fds: int
    requests: int
    failures: int
    ws_messages: int


@dataclass
class Tally:
    requests: int = 0
    failures: int = 0
    ws_messages: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def fail(self, why: BaseException | str) -> None:
        self.failures += 1
        key = why if isinstance(why, str) else type(why).__name__
        self.errors[key] = self.errors.get(key, 0) + 1


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _config(tmp: Path, upstream_port: int, users: list[str]) -> Path:
    path = tmp / f"hatchway-{len(users)}.yaml"
    path.write_text(yaml.safe_dump({
        "static_routes": {u: f"http://127.0.0.1:{upstream_port}{PROXY}" for u in users},
        "limits": {"max_connections_per_client": 0},
        "drain": {"delay_seconds": 0, "websocket_grace_seconds": 1, "timeout_seconds": 5}}))
    return path


def _start_gateway(children: Children, tmp: Path, config: Path, port: int
                   ) -> Any:
    return children.spawn([*HATCHWAY, "serve", "-c", str(config), "--port", str(port),
                           "--state-dir", str(tmp / "state"), "--log-level", "WARNING"],
                          log=tmp / "hatchway.log", role="proxy")


async def _client(http: aiohttp.ClientSession, base: str, token: str, tally: Tally,
                  stop: asyncio.Event) -> None:
    cookies = {"access_token": token}
    header = {"Cookie": f"access_token={token}"}
    try:
        ws = await http.ws_connect(base + PROXY + "ws", headers=header)
    except Exception as exc:  # noqa: BLE001 - counted, the client carries on with HTTP
        tally.fail(exc)
        ws = None
    last_ws = 0.0
    n = 0
    while not stop.is_set():
        n += 1
        path = "bytes-65536" if n % 4 == 0 else "small"
        try:
            async with http.get(base + PROXY + path, cookies=cookies) as resp:
                await resp.read()
                if resp.status != 200:
                    tally.fail(f"HTTP {resp.status}")
                else:
                    tally.requests += 1
            now = time.monotonic()
            if ws is not None and now - last_ws >= 1.0:
                last_ws = now
                await ws.send_str("ping")
                msg = await ws.receive(timeout=10)
                if msg.type is aiohttp.WSMsgType.TEXT:
                    tally.ws_messages += 1
                else:
                    tally.fail(f"WebSocket {msg.type.name}")
                    ws = None
        except Exception as exc:  # noqa: BLE001 - counted, never fatal
            tally.fail(exc)
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.05)  # ~20 requests/s per client at most: a steady load
    if ws is not None:
        await ws.close()


async def soak(base: str, pid: int, tokens: list[str], minutes: float,
               sample_seconds: float) -> tuple[list[Sample], Tally]:
    tally = Tally()
    stop = asyncio.Event()
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        clients = [asyncio.ensure_future(_client(http, base, t, tally, stop)) for t in tokens]
        began = time.monotonic()
        end = began + minutes * 60
        while True:
            now = time.monotonic()
            samples.append(Sample(now - began, rss_kib(pid) / 1024, open_fds(pid),
                                  tally.requests, tally.failures, tally.ws_messages))
            print(f"  {samples[-1].at:6.0f} s  RSS {samples[-1].rss_mib:7.1f} MiB  "
                  f"fds {samples[-1].fds:5d}  requests {tally.requests:8d}  "
                  f"failures {tally.failures}", flush=True)
            if now >= end:
                break
            await asyncio.sleep(min(sample_seconds, max(0.0, end - now)))
        stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
    return samples, tally


async def time_to_serve_all(base: str, tokens: dict[str, str], started: float,
                            deadline: float = 60.0) -> float:
    """Seconds from ``started`` until every user's route has answered 200 once."""
    pending = dict(tokens)
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        async def one(user: str, token: str) -> bool:
            try:
                async with http.get(base + PROXY + "small",
                                    cookies={"access_token": token}) as resp:
                    await resp.read()
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        while pending and time.monotonic() - started < deadline:
            results = await asyncio.gather(*(one(u, t) for u, t in pending.items()))
            for (user, _), ok in zip(list(pending.items()), results, strict=True):
                if ok:
                    del pending[user]
            if pending:
                await asyncio.sleep(0.02)
    if pending:
        raise RuntimeError(f"{len(pending)} routes still not served after {deadline} s")
    return time.monotonic() - started


def table(samples: list[Sample], tally: Tally, clients: int, minutes: float,
          routes: int, listening_s: float, restart_s: float) -> str:
    warm = [s for s in samples if s.at >= min(60.0, samples[-1].at / 3)] or samples
    rss = [s.rss_mib for s in warm]
    fds = [s.fds for s in warm]
    total_s = samples[-1].at or 1.0
    why = ("(" + ", ".join(f"{k}: {v}" for k, v in tally.errors.items()) + ")"
           if tally.errors else "")
    lines = [
        f"# hatchway soak: {clients} clients, {minutes:g} min, loopback",
        "",
        "| t (s) | RSS (MiB) | open fds | requests | failures | WS messages |",
        "|---:|---:|---:|---:|---:|---:|",
        *(f"| {s.at:.0f} | {s.rss_mib:.1f} | {s.fds} | {s.requests} | {s.failures} | "
          f"{s.ws_messages} |" for s in samples),
        "",
        "| figure | value |",
        "|---|---:|",
        f"| requests/s (mean) | {tally.requests / total_s:.0f} |",
        f"| failed requests | {tally.failures} {why} |",
        f"| RSS after warm-up, min → max (MiB) | {min(rss):.1f} → {max(rss):.1f} |",
        f"| RSS drift after warm-up (MiB) | {rss[-1] - rss[0]:+.1f} |",
        f"| open fds after warm-up, min → max | {min(fds)} → {max(fds)} |",
        f"| open fds median | {statistics.median(fds):.0f} |",
        f"| restart with {routes} routes: listening after (s, process start) | "
        f"{listening_s:.2f} |",
        f"| restart with {routes} routes: every route served again after (s) | "
        f"{restart_s:.2f} |",
    ]
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> str:
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="hatchway-soak-") as tmp_name, \
            managed(Children()) as children:
        tmp = Path(tmp_name)
        upstream_port = free_port()
        upstream = children.spawn([sys.executable, "-m", "benchmarks.upstream", "--port",
                                   str(upstream_port)], log=tmp / "upstream.log",
                                  role="upstream")
        wait_port(upstream_port, 10, upstream)
        issuer = DevIssuer(tmp / "state", issuer="hatchway-dev")
        users = [f"user{i:04d}" for i in range(max(args.clients, args.routes))]
        tokens = {u: issuer.mint(u, ttl_seconds=int(args.minutes * 60) + 3600) for u in users}
        port = free_port()
        base = f"http://127.0.0.1:{port}"

        print(f"soak: {args.clients} clients for {args.minutes:g} min", flush=True)
        gateway = _start_gateway(children, tmp, _config(tmp, upstream_port,
                                                        users[:args.clients]), port)
        wait_port(port, 20, gateway)
        samples, tally = await soak(base, gateway.pid, [tokens[u] for u in
                                                        users[:args.clients]],
                                    args.minutes, args.sample_seconds)
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)

        print(f"restart with {args.routes} routes", flush=True)
        config = _config(tmp, upstream_port, users[:args.routes])
        started = time.monotonic()
        gateway = _start_gateway(children, tmp, config, port)
        await asyncio.to_thread(wait_port, port, 30, gateway)
        listening_s = time.monotonic() - started
        restart_s = await time_to_serve_all(base, {u: tokens[u] for u in users[:args.routes]},
                                            started)
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
    return table(samples, tally, args.clients, args.minutes, args.routes, listening_s,
                 restart_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--out", help="also write the table to DIR/soak.md")
    args = parser.parse_args(argv)
    text = asyncio.run(run(args))
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "soak.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
