"""Reliability figures for ``make soak`` (bounded, loopback only, not part of ``make test``).

1. **traffic**: ``hatchway serve`` (builtin mode, fast path, one static route per client to
   the benchmark upstream) under mixed HTTP + WebSocket traffic from ``--clients`` clients for
   ``--minutes`` (benchmarks.soak_traffic); RSS and open fds sampled every ``--sample-seconds``.
2. **outage**: ``hatchway serve`` on the Kubernetes backend against the emulated API server
   with running workspaces; the API server is stopped (socket closed: connections refused) for
   ``--outage-seconds`` while users keep using their workspaces, then restarted on the same
   port with the same objects (benchmarks.soak_outage).
3. **restart**: a cold start with ``--routes`` routes, ``--restart-runs`` times, until every
   route has answered 200 once (benchmarks.soak_restart; goal < 2 s).

    python -m benchmarks.soak [--minutes 10] [--clients 200] [--routes 1000]
                              [--outage-seconds 60] [--scenarios traffic,outage,restart]
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
from pathlib import Path
from typing import Any

import yaml

from benchmarks.procs import Children, free_port, managed, raise_fd_limit, wait_port
from benchmarks.soak_gateway import HATCHWAY, gateway_env
from benchmarks.soak_restart import Restart, median, restart_times
from benchmarks.soak_traffic import PROXY, Sample, Tally, soak
from proxy.sessions.devissuer import DevIssuer

SCENARIOS = ("traffic", "outage", "restart", "restart-k8s")


def _config(tmp: Path, upstream_port: int, users: list[str]) -> Path:
    path = tmp / f"hatchway-{len(users)}.yaml"
    path.write_text(yaml.safe_dump({
        "static_routes": {u: f"http://127.0.0.1:{upstream_port}{PROXY}" for u in users},
        "limits": {"max_connections_per_client": 0},
        "drain": {"delay_seconds": 0, "websocket_grace_seconds": 1, "timeout_seconds": 5}}))
    return path


def _start_gateway(children: Children, tmp: Path, config: Path, port: int,
                   code: str = "") -> Any:
    return children.spawn([*HATCHWAY, "serve", "-c", str(config), "--port", str(port),
                           "--state-dir", str(tmp / "state"), "--log-level", "WARNING"],
                          log=tmp / "hatchway.log", role="proxy", env=gateway_env(code))


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def traffic_rows(samples: list[Sample], tally: Tally) -> list[str]:
    warm = [s for s in samples if s.at >= min(60.0, samples[-1].at / 3)] or samples
    rss = [s.rss_mib for s in warm]
    fds = [s.fds for s in warm]
    total_s = samples[-1].at or 1.0
    return [
        f"| requests/s (mean) | {tally.requests / total_s:.0f} |",
        f"| failed requests | {tally.failures} {tally.why()} |",
        f"| RSS after warm-up, min → max (MiB) | {min(rss):.1f} → {max(rss):.1f} |",
        f"| RSS drift after warm-up (MiB) | {rss[-1] - rss[0]:+.1f} |",
        f"| open fds after warm-up, min → max | {min(fds)} → {max(fds)} |",
        f"| open fds median | {statistics.median(fds):.0f} |",
    ]


def restart_rows(routes: int, variants: dict[str, list[Restart]], kind: str) -> list[str]:
    rows = []
    for variant, runs in variants.items():
        mid = median(runs)
        each = ", ".join(f"{r.served_s:.2f}" for r in runs)
        what = f"restart with {routes} {kind} ({variant})"
        rows += [
            f"| {what}: listening after (s from process start, median of {len(runs)}) | "
            f"{mid.listening_s:.2f} |",
            f"| {what}: every route served after (s, median of {len(runs)}; runs: {each}) | "
            f"{mid.served_s:.2f} |",
            f"| {what}: gateway CPU until then (s, median) | {mid.cpu_s:.2f} |",
        ]
    return rows


def table(args: argparse.Namespace, samples: list[Sample], tally: Tally | None,
          outage: list[str], restarts: dict[str, list[Restart]],
          restarts_k8s: dict[str, list[Restart]], load: tuple[str, str]) -> str:
    lines = [f"# hatchway soak: {args.clients} clients, {args.minutes:g} min, loopback", "",
             f"Load average (1/5/15 min) before: {load[0]}; after: {load[1]} (a shared "
             "2-core machine: other engineers' tests ran alongside).", ""]
    if samples:
        lines += ["| t (s) | RSS (MiB) | open fds | requests | failures | WS messages |",
                  "|---:|---:|---:|---:|---:|---:|",
                  *(f"| {s.at:.0f} | {s.rss_mib:.1f} | {s.fds} | {s.requests} | {s.failures} "
                    f"| {s.ws_messages} |" for s in samples), ""]
    lines += ["| figure | value |", "|---|---:|"]
    if samples and tally is not None:
        lines += traffic_rows(samples, tally)
    lines += outage
    if restarts:
        lines += restart_rows(args.routes, restarts, "static routes")
    if restarts_k8s:
        lines += restart_rows(args.routes, restarts_k8s, "routes from Kubernetes Services")
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> str:
    raise_fd_limit()
    load_before = load_average()
    samples: list[Sample] = []
    tally: Tally | None = None
    outage: list[str] = []
    restarts: dict[str, list[Restart]] = {}
    restarts_k8s: dict[str, list[Restart]] = {}
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
        ttl = int(args.minutes * 60 + args.outage_seconds) + 3600
        tokens = {u: issuer.mint(u, ttl_seconds=ttl) for u in users}
        port = free_port()
        base = f"http://127.0.0.1:{port}"

        if "traffic" in args.scenarios:
            print(f"traffic: {args.clients} clients for {args.minutes:g} min", flush=True)
            gateway = _start_gateway(children, tmp, _config(tmp, upstream_port,
                                                            users[:args.clients]), port)
            wait_port(port, 20, gateway)
            samples, tally = await soak(base, gateway.pid, [tokens[u] for u in
                                                            users[:args.clients]],
                                        args.minutes, args.sample_seconds)
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(30)

        if "outage" in args.scenarios:
            from benchmarks.soak_outage import outage_rows, run_outage

            print(f"outage: Kubernetes API away for {args.outage_seconds:g} s", flush=True)
            outage = outage_rows(await run_outage(children, tmp, issuer, args))

        def stop(proc: Any) -> None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)

        codes = {"this checkout": ""}
        if args.baseline:
            codes = {f"baseline {args.baseline_name}": args.baseline, **codes}
        routed = {u: tokens[u] for u in users[:args.routes]}
        if "restart" in args.scenarios:
            print(f"restart with {args.routes} static routes, {args.restart_runs} runs",
                  flush=True)
            config = _config(tmp, upstream_port, users[:args.routes])
            restarts = await restart_times(
                lambda variant: _start_gateway(children, tmp, config, port, codes[variant]),
                stop, port, routed, args.restart_runs, list(codes))
        if "restart-k8s" in args.scenarios:
            from benchmarks.soak_k8s import restart_k8s

            print(f"restart with {args.routes} routes from Kubernetes Services, "
                  f"{args.restart_runs} runs", flush=True)
            restarts_k8s = await restart_k8s(children, tmp, upstream_port, port, routed,
                                             args.restart_runs, codes, stop)
    return table(args, samples, tally, outage, restarts, restarts_k8s,
                 (load_before, load_average()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--restart-runs", type=int, default=3)
    parser.add_argument("--baseline", metavar="DIR",
                        help="restart: also time the proxy/ and launcher/ found in DIR (e.g. "
                             "`git archive <rev> proxy launcher | tar -x -C DIR`), "
                             "interleaved with this checkout's runs")
    parser.add_argument("--baseline-name", default="", help="how the table names DIR")
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument("--outage-users", type=int, default=10,
                        help="users with a Running workspace during the outage")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated, from: " + ", ".join(SCENARIOS))
    parser.add_argument("--out", help="also write the table to DIR/soak.md")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    began = time.monotonic()
    text = asyncio.run(run(args))
    print(text)
    print(f"(soak took {time.monotonic() - began:.0f} s)")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "soak.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
