"""One command for the whole benchmark: set up, start every peer, run every scenario, write
benchmarks/results/<date>/ (results.md, results.json, chart.png, machine.md).

    python -m benchmarks.run            # full: 3 runs x 5 s per figure, ~15-20 min
    python -m benchmarks.run --quick    # smoke: 2 runs x 1 s, ~2-3 min
    python -m benchmarks.run --peers envoy,hatchway --scenarios a,d

Peers are started fresh for every scenario and measured in turn, run by run (interleaved, so a
burst of noise on the machine hits every peer rather than one). Loopback traffic only; every
child process is killed on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import loadgen, report  # noqa: E402
from benchmarks.peers import (  # noqa: E402
    ALL_PEERS,
    REPO,
    Env,
    Hatchway,
    Peer,
    Target,
    mint_token,
    stand_in_token,
)
from benchmarks.prereqs import MissingTool, require_load_generator  # noqa: E402
from benchmarks.procs import Children, free_port, managed, raise_fd_limit, rss_kib, wait_port  # noqa: E402
from benchmarks.scenarios import ALIASES, SCENARIOS, Bench, Config, Scenario  # noqa: E402

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
MARK_START, MARK_END = "<!-- latest-results:start -->", "<!-- latest-results:end -->"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 runs x 1 s, 1,000 idle "
                    "WebSockets, no warm-up (figures are indicative only)")
    ap.add_argument("--peers", default=",".join(ALL_PEERS),
                    help="comma list from: " + ", ".join(ALL_PEERS))
    ap.add_argument("--scenarios", default="a,b,c,d,e,f,g",
                    help="letters a-g (issue 5 §3) or names: "
                    + ", ".join(s.key for s in SCENARIOS))
    ap.add_argument("--runs", type=int, help="figures per peer per scenario (default 3)")
    ap.add_argument("--duration", type=int, help="seconds per figure (default 5)")
    ap.add_argument("--warmup", type=int, help="warm-up seconds per peer and scenario (default 1)")
    ap.add_argument("--connections", type=int, help="HTTP connections for a, b, f (default 64)")
    ap.add_argument("--body-connections", type=int, help="connections for c (default 4)")
    ap.add_argument("--ws-connections", type=int, help="WebSockets for d (default 100)")
    ap.add_argument("--ws-procs", type=int, help="WebSocket load processes for d (default 1)")
    ap.add_argument("--idle-ws", type=int, help="idle WebSockets for e (default 5000)")
    ap.add_argument("--route-users", type=int, help="route table size for f (default 10000)")
    ap.add_argument("--rate", type=float, help="requests/s for b (default: half the slowest "
                    "proxy's figure in a, or 1000)")
    ap.add_argument("--launch-option", help="workspace option name for g (default: the first)")
    ap.add_argument("--hatchway-workers", type=int, default=1, help="hatchway serve --workers")
    ap.add_argument("--hatchway-metrics", default="off",
                    help="comma list from: off (peer hatchway: no metrics listener, the "
                    "default), on (peer hatchway-metrics: metrics listener on, scraped every "
                    "5 s); on,off runs both side by side")
    ap.add_argument("--upstream-procs", type=int, default=1, help="upstream processes")
    ap.add_argument("--pin", action="store_true", help="pin the proxy to CPU 1 and the load "
                    "generators and upstream to the other CPUs (taskset)")
    ap.add_argument("--out", type=Path, help="results directory (default "
                    "benchmarks/results/<date>[-quick])")
    ap.add_argument("--update-readme", action="store_true",
                    help="copy the table into benchmarks/README.md")
    ap.add_argument("--keep-work", action="store_true", help="keep configs and logs")
    return ap.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    cfg = Config()
    if args.quick:
        cfg = Config(runs=2, duration=1, warmup=0, idle_ws=1000)
    for name in ("runs", "duration", "warmup", "connections", "body_connections",
                 "ws_connections", "ws_procs", "idle_ws", "route_users", "rate", "launch_option"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    if cfg.runs < 1 or cfg.duration < 1 or cfg.warmup < 0:
        raise SystemExit("--runs and --duration must be at least 1, --warmup at least 0")
    if not 1 <= cfg.route_users <= 100_000 or not 1 <= cfg.idle_ws <= 20_000:
        raise SystemExit("--route-users must be 1-100000, --idle-ws 1-20000")
    return cfg


def pick(spec: str, known: list[str], aliases: dict[str, str], what: str) -> list[str]:
    chosen: list[str] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        for name in aliases.get(item, item).split(","):
            if name not in known:
                raise SystemExit(f"unknown {what} {name!r}; choose from {', '.join(known)}")
            if name not in chosen:
                chosen.append(name)
    return chosen


def pinning(children: Children, enabled: bool) -> str:
    cpus = os.cpu_count() or 1
    if not enabled:
        return "none (the scheduler shares all cores between load generator, upstream, proxy)"
    if cpus < 2:
        return "requested but only one CPU: none"
    if cpus >= 4:
        children.pin = {"proxy": "1", "upstream": "0", "load": f"2-{cpus - 1}"}
    else:
        others = ",".join(str(c) for c in range(cpus) if c != 1)
        children.pin = {"proxy": "1", "upstream": others, "load": others}
    return ", ".join(f"{role} on CPU {cpu}" for role, cpu in children.pin.items())


def start_upstream(children: Children, work: Path, procs: int) -> int:
    port = free_port()
    proc = children.spawn([sys.executable, "-m", "benchmarks.upstream", "--port", str(port),
                           "--procs", str(procs)], log=work / "upstream.log", role="upstream",
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    wait_port(port, 30, proc)
    return port


def run_scenario(bench: Bench, sc: Scenario, peers: list[Peer],
                 skipped: dict[str, str]) -> dict[str, Any]:
    """Every figure of one scenario for every peer; returns peer → metric → summary."""
    cfg = bench.cfg
    names = [p.name for p in peers
             if (not sc.peers or p.name in sc.peers) and not (sc.proxy_only and p.name == "direct")]
    entries: dict[str, Any] = {n: {"skipped": skipped[n]} for n in names if n in skipped}
    active = [p for p in peers if p.name in names and p.name not in skipped]
    samples: dict[str, dict[str, list[float]]] = {p.name: {} for p in active}
    failed: dict[str, str] = {}
    users = bench.users(sc.many_users) if sc.routes else []
    blocks = [[r] for r in range(cfg.runs)] if sc.fresh_per_run else [list(range(cfg.runs))]
    for block in blocks:
        targets: dict[str, Target] = {}
        try:
            for peer in active:
                if peer.name in failed:
                    continue
                try:
                    target = peer.start(bench.env, users, bench.bench_user)
                    target.extra["users"] = len(users)
                    targets[peer.name] = target
                    if sc.routes:
                        loadgen.sanity_check(target)
                    if target.pid is not None:
                        target.baseline_rss_kib = rss_kib(target.pid)
                except (RuntimeError, OSError, loadgen.LoadError) as exc:
                    failed[peer.name] = f"could not start or check: {exc}"
            for name, target in targets.items():
                if sc.warm is not None and name not in failed and not sc.fresh_per_run:
                    try:
                        sc.warm(bench, target)
                    except loadgen.LoadError as exc:
                        failed[name] = f"warm-up: {exc}"
            for run in block:
                for name, target in targets.items():
                    if name in failed:
                        continue
                    print(f"  {sc.key:<14} run {run + 1}/{cfg.runs}  {name:<9}", end="",
                          flush=True)
                    try:
                        figures = sc.measure(bench, target)
                    except (loadgen.LoadError, RuntimeError, OSError, ValueError) as exc:
                        failed[name] = str(exc)[:300]
                        print(f"  failed: {failed[name]}")
                        continue
                    if target.proc is not None and target.proc.poll() is not None:
                        failed[name] = f"the proxy exited (status {target.proc.returncode})"
                    for metric, value in figures.items():
                        samples[name].setdefault(metric, []).append(float(value))
                    print("  " + "  ".join(f"{k}={report.fmt(v)}" for k, v in figures.items()))
        finally:
            for target in targets.values():
                for proc in (target.proc, target.extra.get("companion")):  # envoy-mode: hatchway
                    if proc is not None:
                        bench.env.children.stop(proc)
    for peer in active:
        if peer.name in failed:
            entries[peer.name] = {"failed": failed[peer.name]}
        elif samples[peer.name]:
            entries[peer.name] = {m: report.summarize(v) for m, v in samples[peer.name].items()}
    return {n: entries[n] for n in names if n in entries}


def update_readme(table: str) -> None:
    text = README.read_text() if README.exists() else ""
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        _, tail = rest.split(MARK_END, 1)
        README.write_text(f"{head}{MARK_START}\n{table}\n{MARK_END}{tail}")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args)
    peer_names = pick(args.peers, list(ALL_PEERS), {}, "peer")
    chosen = pick(args.scenarios, [s.key for s in SCENARIOS], ALIASES, "scenario")
    scenarios = [s for s in SCENARIOS if s.key in chosen]
    try:
        require_load_generator()
    except MissingTool as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    raise_fd_limit()
    today = dt.date.today().isoformat()
    out = args.out or HERE / "results" / (today + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hatchway-bench-"))
    logs = work

    variants = pick(args.hatchway_metrics, ["off", "on"], {}, "--hatchway-metrics value")
    peers: list[Peer] = []
    for name in peer_names:
        if name == "hatchway":  # one peer per metrics variant, in the order given
            peers += [Hatchway(args.hatchway_workers, metrics=v == "on") for v in variants]
        else:
            peers.append(ALL_PEERS[name]())
    peer_names = [p.name for p in peers]
    skipped: dict[str, str] = {}
    for peer in peers:
        why = peer.prepare() or peer.unavailable()
        if why:
            skipped[peer.name] = why
    versions = {**tool_versions(), **{p.name: (p.version() if p.name not in skipped
                                                     else f"skipped: {skipped[p.name]}")
                                            for p in peers}}
    children = Children()
    results: dict[str, Any] = {}
    loads = {"at start": loadavg()}
    started = time.monotonic()
    interrupted = False
    with managed(children):
        pin_text = pinning(children, args.pin)
        env = Env(children=children, work=work, upstream_port=0, token="",
                  state_dir=work / "hatchway-state")
        bench = Bench(cfg=cfg, env=env, logs=logs)
        try:
            env.upstream_port = start_upstream(children, work, args.upstream_procs)
            # peers that verify the token
            checkers = [p for p in ("hatchway", "hatchway-metrics", "envoy-mode")
                        if p in peer_names and p not in skipped]
            if checkers:
                try:
                    env.token = mint_token(env, bench.bench_user)
                except (RuntimeError, OSError) as exc:
                    skipped.update({p: str(exc) for p in checkers})
            if not env.token:
                env.token = stand_in_token(bench.bench_user)
            for name, why in skipped.items():
                print(f"benchmarks: {name} skipped: {why}")
            for sc in scenarios:
                print(f"{sc.title}  [{sc.key}]  load {loadavg()}", flush=True)
                results[sc.key] = run_scenario(bench, sc, peers, skipped)
                bench.results[sc.key] = results[sc.key]
        except KeyboardInterrupt:
            interrupted = True
            print("\nbenchmarks: interrupted; writing what was measured", file=sys.stderr)
    loads["at end"] = loadavg()
    minutes = (time.monotonic() - started) / 60
    command = "python -m benchmarks.run " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    header = (f"## Results {today}{' (quick smoke run: indicative only)' if args.quick else ''}"
              f"{' (INTERRUPTED)' if interrupted else ''}\n\n"
              f"{os.cpu_count()} cores ({report.cpu_model()}), load generator + upstream + proxy "
              f"on the same machine; {cfg.runs} runs x {cfg.duration} s per figure; "
              f"{minutes:.1f} min. Command: `{command}`. Details: machine.md.")
    peer_order = [p.name for p in peers]
    table = report.markdown(results, scenarios, peer_order, bench.notes, header)
    report.write_json(out / "results.json", results)
    (out / "results.md").write_text(table + "\n")
    (out / "machine.md").write_text(report.machine(versions, cfg, loads, command, pin_text))
    why_no_chart = report.chart(out / "chart.png", results, peer_order)
    if args.update_readme and not interrupted:
        update_readme(table)
    print(f"\n{table}\nwritten to {out}" + (f" ({why_no_chart})" if why_no_chart else ""))
    if args.keep_work:
        print(f"configs and logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 130 if interrupted else 0


def tool_versions() -> dict[str, str]:
    """The harness's own tools: the load generators, the upstream, and the tree measured."""
    from importlib.metadata import PackageNotFoundError, version

    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False,
                                  cwd=REPO)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        lines = (done.stdout + done.stderr).strip().splitlines()
        return lines[0] if lines and done.returncode in (0, 1) else "unknown"

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "missing"

    dirty = first_line(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "wrk": first_line(["wrk", "-v"]),
        "upstream / WebSocket load client": (
            f"benchmarks/upstream.py, benchmarks/wsload.py (uvloop {pkg('uvloop')}, "
            f"httptools {pkg('httptools')})"),
        "source tree": first_line(["git", "rev-parse", "--short", "HEAD"])
        + (" + uncommitted changes" if dirty not in ("", "unknown") else ""),
        "aiohttp (hatchway)": pkg("aiohttp"),
    }


if __name__ == "__main__":
    sys.exit(main())
