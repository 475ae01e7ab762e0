"""The load generators report figures from real traffic against the real upstream."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import loadgen
from benchmarks.peers import Direct, Env
from benchmarks.wsload import bucket_of


def test_wrk_summary_counts_requests_and_latency(env: Env, tmp_path: Path) -> None:
    if not shutil.which("wrk"):
        pytest.skip("wrk not installed")
    target = Direct().start(env, ["u"], "u")
    doc = loadgen.run_wrk(env.children, target, "small", connections=4, duration=1,
                          log=tmp_path / "wrk.log")
    assert doc["requests"] > 100 and doc["errors"] == 0
    assert 0 < doc["p50_us"] <= doc["p99_us"] <= doc["p999_us"]


def test_ws_echo_counts_round_trips_of_every_process(env: Env, tmp_path: Path) -> None:
    target = Direct().start(env, ["u"], "u")
    figures = loadgen.run_ws_echo(env.children, target, connections=6, size=64, duration=0.5,
                                  warmup=0.1, procs=2, log=tmp_path / "ws.log")
    assert figures["msgs_s"] > 100 and figures["errors"] == 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]


def test_idle_hold_reports_connections_held(env: Env, tmp_path: Path) -> None:
    target = Direct().start(env, ["u"], "u")
    hold = loadgen.IdleHold(env.children, target, 50, tmp_path / "ws.log", timeout=20)
    with hold as held:
        assert held == 50
    assert hold.dropped == 0


def test_sanity_check_passes_on_the_upstream_itself(env: Env) -> None:
    loadgen.sanity_check(Direct().start(env, ["u"], "u"))


def test_percentile_reads_the_histogram() -> None:
    hist = {bucket_of(1_000_000): 99, bucket_of(50_000_000): 1}  # 99 x 1 ms, 1 x 50 ms
    assert loadgen.percentile(hist, 50) == pytest.approx(1.0, rel=0.03)
    assert loadgen.percentile(hist, 100) == pytest.approx(50.0, rel=0.03)
