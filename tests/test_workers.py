"""``hatchway serve --workers 2`` as an operator runs it: real processes sharing a port through
SO_REUSEPORT, one /metrics scrape that sees every worker (the parent asks each one,
proxy.observe.merged), a killed worker replaced without its counts lost or counted twice, and a
SIGTERM that drains every worker before the parent exits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.observe.merged import GAUGE_MODES, Scrapes

from .helpers import (
    HATCHWAY,
    clean_env,
    free_port,
    get,
    run,
    wait_for_banner_url,
    wait_until,
    workers_of,
)

SLOW_SECONDS = 4.0  # longer than the drain's delay: in flight when the listeners close
DRAIN_DELAY = 1.5


class Upstream(ThreadingHTTPServer):
    """A workspace stand-in: ``/slow`` answers after SLOW_SECONDS, anything else at once."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hello)
        self.slow_started = 0
        self.lock = threading.Lock()


class _Hello(BaseHTTPRequestHandler):
    server: Upstream

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.endswith("/slow"):
            with self.server.lock:
                self.server.slow_started += 1
            time.sleep(SLOW_SECONDS)
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str  # the proxy prefix's URL
    metrics: str  # the parent's metrics listener
    config: str
    token: str
    upstream: Upstream

    def workers(self) -> list[int]:
        return workers_of(self.config)

    def proxied(self, n: int, path: str = "x") -> None:
        """``n`` requests, each on a connection of its own (so SO_REUSEPORT spreads them)."""
        for _ in range(n):
            status, body, _ = get(self.url + path, Authorization=f"Bearer {self.token}")
            assert (status, body) == (200, "hello")


@contextmanager
def two_workers(tmp_path: Path, **extra: object) -> Iterator[Served]:
    upstream = Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps({"containers": []}), encoding="utf-8")
    config = tmp_path / "hatchway.json"
    metrics_port = free_port()
    config.write_text(json.dumps({
        "hatchery_config": str(hatchery), "workers": 2, "metrics_port": metrics_port,
        "static_routes": {"alice": f"http://127.0.0.1:{upstream.server_port}/"}, **extra}))
    state = str(tmp_path / "state")
    token = run("token", "alice", "--state-dir", state, cwd=tmp_path).stdout.strip()
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*HATCHWAY, "serve", "--port", str(free_port()), "--config", str(config),
             "--state-dir", state], cwd=tmp_path, env=clean_env(), stdout=stdout, stderr=stderr)
    try:
        base = wait_for_banner_url(out, proc)
        served = Served(proc, base + "proxy/", f"http://127.0.0.1:{metrics_port}/metrics",
                        str(config), token, upstream)
        wait_until(lambda: len(served.workers()) == 2 and _value(
            scrape(served.metrics), "hatchway_workers") == 2, 20,
            failure=lambda: f"two workers never served: {err.read_text()}")
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        upstream.shutdown()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text, _ = get(url)
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def relayed(url: str) -> float:
    return _value(scrape(url), "hatchway_fastpath_requests_total", result="relayed")


# -- processes and sockets -------------------------------------------------------------------

def test_one_scrape_counts_the_requests_every_worker_relayed(tmp_path: Path) -> None:
    with two_workers(tmp_path) as served:
        served.proxied(40)
        each = [relayed(f"{served.metrics}/workers/{i}") for i in (0, 1)]
        assert all(n > 0 for n in each), each  # the kernel spread the connections
        assert sum(each) == 40
        assert relayed(served.metrics) == 40


def test_every_gauge_a_worker_exports_has_a_way_to_combine(tmp_path: Path) -> None:
    """A gauge missing from GAUGE_MODES would show up once per worker: say how it adds up."""
    with two_workers(tmp_path) as served:
        status, text, _ = get(f"{served.metrics}/workers/0")
        assert status == 200
        gauges = {f.name for f in text_string_to_metric_families(text)
                  if f.type == "gauge" and not f.name.endswith("_created")}
        assert gauges and gauges <= set(GAUGE_MODES), gauges - set(GAUGE_MODES)


def test_a_killed_worker_is_replaced_and_its_counts_neither_lost_nor_doubled(
        tmp_path: Path) -> None:
    with two_workers(tmp_path) as served:
        served.proxied(40)
        assert relayed(served.metrics) == 40  # the parent has seen every worker's count
        before = served.workers()
        os.kill(before[0], signal.SIGKILL)
        wait_until(lambda: len(set(served.workers()) - set(before)) == 1
                   and _value(scrape(served.metrics), "hatchway_workers") == 2, 20,
                   failure=lambda: f"no worker replaced the killed one: {served.workers()}")
        samples = scrape(served.metrics)
        assert _value(samples, "hatchway_worker_restarts_total") == 1
        assert _value(samples, "hatchway_fastpath_requests_total", result="relayed") == 40
        served.proxied(20)
        assert relayed(served.metrics) == 60


def test_sigterm_drains_every_worker_then_the_parent_exits(tmp_path: Path) -> None:
    with two_workers(tmp_path, drain={"delay_seconds": DRAIN_DELAY}) as served:
        n = 16
        ready = served.url.removesuffix("proxy/") + "_ready"
        with ThreadPoolExecutor(n) as pool:
            slow = [pool.submit(get, served.url + "slow", Authorization=f"Bearer {served.token}")
                    for _ in range(n)]
            wait_until(lambda: served.upstream.slow_started == n, 10)
            busy = [_value(scrape(f"{served.metrics}/workers/{i}"),
                           "hatchway_fastpath_connections") for i in (0, 1)]
            assert all(b > 0 for b in busy), busy  # each worker has requests in flight
            workers = served.workers()
            served.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: get(ready)[0] == 503, DRAIN_DELAY)  # the signal has arrived
            for _ in range(6):  # the listener still accepts; every worker says it drains
                status, body, _ = get(ready)
                assert status == 503 and "draining" in body, (status, body)
            answers = [f.result(timeout=15)[:2] for f in slow]
        assert answers == [(200, "hello")] * n  # none cut off, though listeners closed
        assert served.proc.wait(20) == 0
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    """Nobody would stop orphaned workers, and they would keep the port."""
    with two_workers(tmp_path) as served:
        workers = served.workers()
        served.proc.kill()
        served.proc.wait(5)
        wait_until(lambda: not [p for p in workers if Path(f"/proc/{p}").exists()], 15,
                   failure=lambda: f"workers outlived their parent: {workers}")


@pytest.mark.parametrize("where", ["port", "metrics_port"])
def test_a_port_taken_stops_the_server_with_one_line_and_status_1(tmp_path: Path,
                                                                   where: str) -> None:
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps({"containers": []}), encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"port": port, "metrics_port": free_port()} if where == "port" \
            else {"port": free_port(), "metrics_port": port}
        config = tmp_path / "hatchway.json"
        config.write_text(json.dumps({"hatchery_config": str(hatchery), "workers": 2,
                                      "metrics_port": ports["metrics_port"]}))
        done = subprocess.run(
            [*HATCHWAY, "serve", "--config", str(config), "--port", str(ports["port"]),
             "--state-dir", str(tmp_path / "state")], cwd=tmp_path, env=clean_env(),
            capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert "hatchway: cannot listen" in done.stderr and "address already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("identity", "expected"), [("gw-0", "gw-0-w1"), ("", "")])
def test_a_configured_lease_identity_is_made_one_per_worker(identity: str,
                                                             expected: str) -> None:
    """Two workers under one name would both believe they hold the culler's Lease (an empty
    identity is the process's own: hostname-pid, one per worker already)."""
    from proxy.serve.workers import worker_settings
    from proxy.settings import load_settings

    settings = load_settings([], environ={}, overrides={
        "backend": "kubernetes", "workers": 2, "kubernetes": {"identity": identity}})
    assert worker_settings(settings, 1).kubernetes.identity == expected


# -- how the parent adds up what the workers answered ----------------------------------------

COUNTER = ("# TYPE hatchway_fastpath_requests_total counter\n"
           'hatchway_fastpath_requests_total{{result="relayed"}} {n}\n')
GAUGE = "# TYPE {name} gauge\n{name} {n}\n"


def _merged(scrapes: Scrapes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for m in scrapes.collect() for s in m.samples}


def test_counters_are_summed_across_workers() -> None:
    scrapes = Scrapes()
    scrapes.seen(0, COUNTER.format(n=3))
    scrapes.seen(1, COUNTER.format(n=4))
    assert _value(_merged(scrapes), "hatchway_fastpath_requests_total", result="relayed") == 7


@pytest.mark.parametrize(("name", "combined"), [
    ("hatchway_fastpath_connections", 5.0),  # sum: connections open in all
    ("hatchway_routes", 3.0),  # max: the same table in every worker
    ("hatchway_watch_up", 2.0),  # min: down in one is down
])
def test_gauges_combine_by_their_mode(name: str, combined: float) -> None:
    scrapes = Scrapes()
    scrapes.seen(0, GAUGE.format(name=name, n=2))
    scrapes.seen(1, GAUGE.format(name=name, n=3))
    assert _value(_merged(scrapes), name) == combined


def test_a_gauge_without_a_mode_keeps_one_series_per_worker() -> None:
    scrapes = Scrapes()
    scrapes.seen(0, GAUGE.format(name="made_up", n=2))
    scrapes.seen(1, GAUGE.format(name="made_up", n=3))
    merged = _merged(scrapes)
    assert (_value(merged, "made_up", worker="0"), _value(merged, "made_up", worker="1")) \
        == (2, 3)


def test_an_exited_worker_leaves_its_counters_and_takes_its_gauges() -> None:
    scrapes = Scrapes()
    scrapes.seen(0, COUNTER.format(n=3) + GAUGE.format(name="hatchway_fastpath_connections",
                                                       n=9))
    scrapes.seen(1, COUNTER.format(n=4))
    scrapes.retire(0)
    scrapes.seen(0, COUNTER.format(n=1))  # its successor, counting from zero
    merged = _merged(scrapes)
    assert _value(merged, "hatchway_fastpath_requests_total", result="relayed") == 8
    assert ("hatchway_fastpath_connections", ()) not in merged
