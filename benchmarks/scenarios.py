"""Issue 5 §3, scenarios a–g: what each one measures on one Target, one run at a time.

A scenario does not start or stop peers (benchmarks.run does, fresh for each scenario so memory
figures start clean); it only turns one run of the load generators into named figures.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.peers import Env, Target
from benchmarks.procs import peak_rss_kib, rss_kib

MiB = 1 << 20


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool


@dataclass
class Config:
    """Everything a run is parameterised by; --quick shrinks it."""

    runs: int = 3
    duration: int = 5  # seconds per figure (wrk takes whole seconds)
    warmup: int = 1  # seconds of load before a peer's first figure in a scenario (0 = none)
    connections: int = 64  # (a), (b), (f)
    body_connections: int = 4  # (c)
    ws_connections: int = 100  # (d)
    ws_procs: int = 1  # wsload processes for (d)
    idle_ws: int = 5000  # (e)
    route_users: int = 10000  # (f)
    rate: float = 0.0  # (b) requests/s; 0 = half the slowest proxy's (a) figure
    launch_option: str = ""  # (g) option name; "" = the first one offered


@dataclass
class Bench:
    cfg: Config
    env: Env
    logs: Path
    results: dict[str, Any] = field(default_factory=dict)  # scenario -> peer -> metrics
    notes: dict[str, str] = field(default_factory=dict)  # scenario -> how it was run

    @property
    def bench_user(self) -> str:
        """The user every request is for: the middle of the (f) table, so a linear route
        scan (Envoy's header matching) costs its average, not its best or worst case."""
        return f"user{self.cfg.route_users // 2:05d}"

    def users(self, many: bool) -> list[str]:
        if not many:
            return [self.bench_user]
        return [f"user{i:05d}" for i in range(self.cfg.route_users)]


Measure = Callable[[Bench, Target], dict[str, float]]


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    metrics: tuple[Metric, ...]
    measure: Measure
    warm: Callable[[Bench, Target], None] | None = None
    many_users: bool = False  # route table of cfg.route_users instead of one
    routes: bool = True  # False: an empty static route table (launch makes the route)
    fresh_per_run: bool = False  # restart the peers before every run
    proxy_only: bool = False  # direct has no figure (proxy memory)
    peers: tuple[str, ...] = ()  # only these peers (empty = all)


RPS = Metric("rps", "requests/s", True)
P50 = Metric("p50_ms", "p50 ms", False)
P99 = Metric("p99_ms", "p99 ms", False)
P999 = Metric("p999_ms", "p99.9 ms", False)
ERRORS = Metric("errors", "failed requests", False)
WS_ERRORS = Metric("errors", "wrong-size echoes", False)
MBS = Metric("mb_s", "MB/s", True)
PEAK = Metric("rss_peak_mib", "proxy peak RSS MiB", False)
GROWTH = Metric("rss_growth_mib", "proxy RSS growth MiB", False)


def _wrk(bench: Bench, target: Target, rest: str, duration: int, **kw: Any) -> dict[str, Any]:
    return loadgen.run_wrk(bench.env.children, target, rest, duration=duration,
                           log=bench.logs / "wrk.log", **kw)


def _latency(doc: dict[str, Any]) -> dict[str, float]:
    return {"p50_ms": doc["p50_us"] / 1000, "p99_ms": doc["p99_us"] / 1000,
            "p999_ms": doc["p999_us"] / 1000}


def small_get(bench: Bench, target: Target) -> dict[str, float]:
    if target.extra.get("users", 1) > 1:
        bench.notes["many_routes"] = (
            f"{bench.cfg.route_users} users in every peer's table; requests are for "
            f"{bench.bench_user}, in the middle (the average case for routes tried in order)")
    doc = _wrk(bench, target, "small", bench.cfg.duration, connections=bench.cfg.connections)
    lat = _latency(doc)
    return {"rps": doc["requests"] / doc["seconds"], "p50_ms": lat["p50_ms"],
            "p99_ms": lat["p99_ms"], "errors": doc["errors"]}


def warm_small(bench: Bench, target: Target) -> None:
    if bench.cfg.warmup:
        _wrk(bench, target, "small", bench.cfg.warmup, connections=bench.cfg.connections)


def fixed_rate_target(bench: Bench) -> float:
    """Half the slowest proxy's small-GET rate: below every peer's capacity, as (b) asks."""
    if bench.cfg.rate > 0:
        return bench.cfg.rate
    rates = [m["rps"]["median"] for peer, m in bench.results.get("small_get", {}).items()
             if peer != "direct" and "rps" in m and m["rps"]["median"] > 0]
    return max(100.0, math.floor(min(rates) / 2 / 100) * 100) if rates else 1000.0


def fixed_rate(bench: Bench, target: Target) -> dict[str, float]:
    rate = fixed_rate_target(bench)
    bench.notes["fixed_rate"] = f"target {rate:.0f} requests/s over {bench.cfg.connections} " \
                                "connections"
    doc = _wrk(bench, target, "small", bench.cfg.duration, connections=bench.cfg.connections,
               conn_rate=rate / bench.cfg.connections)
    return {"rps": doc["requests"] / doc["seconds"], **_latency(doc), "errors": doc["errors"]}


def transfer(direction: str, size: int) -> Measure:
    """(c): MB/s through the proxy, and the proxy's peak RSS since it started (VmHWM)."""

    def measure(bench: Bench, target: Target) -> dict[str, float]:
        if direction == "download":
            doc = _wrk(bench, target, f"bytes-{size}", bench.cfg.duration,
                       connections=bench.cfg.body_connections, timeout=60)
            moved = doc["bytes"]  # counted as read, partial responses included
        else:
            doc = _wrk(bench, target, "upload", bench.cfg.duration, method="POST",
                       body_bytes=size, connections=bench.cfg.body_connections, timeout=60)
            moved = doc["requests"] * size  # completed uploads only
            bench.notes[f"upload_{size // MiB}m"] = (
                "MB/s counts completed uploads only (wrk does not count bytes sent), so it "
                "reads low by up to connections/uploads; longer --duration shrinks that")
        figures = {"mb_s": moved / doc["seconds"] / 1e6, "errors": doc["errors"]}
        if target.pid is not None:
            peak = peak_rss_kib(target.pid)
            figures["rss_peak_mib"] = peak / 1024
            figures["rss_growth_mib"] = (peak - target.baseline_rss_kib) / 1024
        return figures

    return measure


def transfer_warm(size: int) -> Callable[[Bench, Target], None]:
    def warm(bench: Bench, target: Target) -> None:
        if bench.cfg.warmup:
            _wrk(bench, target, f"bytes-{min(size, MiB)}", bench.cfg.warmup,
                 connections=bench.cfg.body_connections)

    return warm


def ws_echo(size: int) -> Measure:
    def measure(bench: Bench, target: Target) -> dict[str, float]:
        return loadgen.run_ws_echo(
            bench.env.children, target, connections=bench.cfg.ws_connections, size=size,
            duration=bench.cfg.duration, warmup=max(0.3, float(bench.cfg.warmup)),
            procs=bench.cfg.ws_procs, log=bench.logs / "wsload.log")

    return measure


def idle_ws(bench: Bench, target: Target) -> dict[str, float]:
    """(e): RSS of the proxy before and with N idle upgraded connections held through it."""
    assert target.pid is not None
    time.sleep(0.5)
    before = rss_kib(target.pid)
    hold = loadgen.IdleHold(bench.env.children, target, bench.cfg.idle_ws,
                            bench.logs / "wsload.log")
    with hold as held:
        time.sleep(1.0)  # let lazily allocated buffers settle
        after = rss_kib(target.pid)
    return {"kib_per_conn": (after - before) / max(held, 1), "held": float(held),
            "rss_mib": after / 1024, "dropped": float(hold.dropped)}


def launch(bench: Bench, target: Target) -> dict[str, float]:
    """(g): POST launch → status Running → first byte of the workspace through the proxy."""
    api = f"http://127.0.0.1:{target.port}/lw-workspace"
    cookie = next(h.split(": ", 1)[1] for h in target.headers if h.startswith("Cookie:"))

    def call(method: str, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        req = urllib.request.Request(api + path, method=method, headers={"Cookie": cookie})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()

    status, body = call("GET", "/options")
    options = json.loads(body) if status == 200 else []
    if isinstance(options, dict):
        options = [options]
    wanted = [o for o in options if not bench.cfg.launch_option
              or o.get("name") == bench.cfg.launch_option]
    if not wanted:
        raise loadgen.LoadError(f"no workspace option to launch (options: HTTP {status})")
    bench.notes["launch"] = f"option {wanted[0].get('name', wanted[0]['id'])!r}, local backend"
    started = time.monotonic()
    status, body = call("POST", f"/launch?id={wanted[0]['id']}")
    if status != 200:
        raise loadgen.LoadError(f"launch answered {status}: {body[:120]!r}")
    running = _poll(lambda: json.loads(call("GET", "/status")[1]).get("status") == "Running",
                    120.0) - started
    first = None
    deadline = time.monotonic() + 60
    while first is None and time.monotonic() < deadline:
        req = urllib.request.Request(f"{api}/proxy/", headers={"Cookie": cookie})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
                resp.read(1)
                first = time.monotonic() - started
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    call("POST", "/terminate")
    _poll(lambda: json.loads(call("GET", "/status")[1]).get("status") == "Not Found", 60.0)
    if first is None:
        raise loadgen.LoadError("the workspace never answered through the proxy")
    return {"first_byte_s": first, "running_s": running}


def _poll(done: Callable[[], bool], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if done():
                return time.monotonic()
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise loadgen.LoadError(f"not reached within {timeout:.0f} s")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("small_get", "(a) small GET, 64 connections", (RPS, P50, P99, ERRORS), small_get,
             warm_small),
    Scenario("fixed_rate", "(b) latency at a fixed rate",
             (Metric("rps", "achieved requests/s", True), P50, P99, P999, ERRORS),
             fixed_rate, warm_small),
    Scenario("download_1m", "(c) 1 MiB downloads", (MBS, PEAK, GROWTH, ERRORS),
             transfer("download", MiB), transfer_warm(MiB)),
    Scenario("download_100m", "(c) 100 MiB downloads", (MBS, PEAK, GROWTH, ERRORS),
             transfer("download", 100 * MiB), transfer_warm(100 * MiB)),
    Scenario("upload_1m", "(c) 1 MiB uploads", (MBS, PEAK, GROWTH, ERRORS),
             transfer("upload", MiB), transfer_warm(MiB)),
    Scenario("upload_100m", "(c) 100 MiB uploads", (MBS, PEAK, GROWTH, ERRORS),
             transfer("upload", 100 * MiB), transfer_warm(MiB)),
    Scenario("ws_small", "(d) WebSocket echo, 16 B messages, 100 connections",
             (Metric("msgs_s", "messages/s", True), P50, P99, WS_ERRORS), ws_echo(16)),
    Scenario("ws_64k", "(d) WebSocket echo, 64 KiB messages, 100 connections",
             (Metric("msgs_s", "messages/s", True), P50, P99, WS_ERRORS), ws_echo(65536)),
    Scenario("idle_ws", "(e) idle WebSockets held through the proxy",
             (Metric("kib_per_conn", "KiB per connection", False),
              Metric("held", "connections held", True),
              Metric("dropped", "dropped while idle", False)),
             idle_ws, fresh_per_run=True, proxy_only=True),
    Scenario("many_routes", "(f) small GET with a large route table", (RPS, P50, P99, ERRORS),
             small_get, warm_small, many_users=True),
    Scenario("launch", "(g) launch to first byte (local backend)",
             (Metric("first_byte_s", "launch → first byte s", False),
              Metric("running_s", "launch → Running s", False)),
             launch, routes=False, peers=("hatchway",)),
)

ALIASES = {"a": "small_get", "b": "fixed_rate", "c": "download_1m,download_100m,upload_1m,"
           "upload_100m", "d": "ws_small,ws_64k", "e": "idle_ws", "f": "many_routes",
           "g": "launch"}
