"""Each proxy peer, really started, routes the benchmark user to the upstream and nobody else."""

from __future__ import annotations

import http.client
import time
from dataclasses import replace

import pytest

from benchmarks import loadgen
from benchmarks.peers import (
    Chp,
    Env,
    Envoy,
    EnvoyMode,
    Hatchway,
    Nginx,
    Peer,
    Target,
    mint_token,
)


def _status(target: Target, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=10)
    try:
        conn.request("GET", path, headers=dict(h.split(": ", 1) for h in target.headers))
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


@pytest.mark.parametrize("peer", [Envoy(), Nginx(), Chp()], ids=lambda p: p.name)
def test_peer_routes_the_bench_user_and_refuses_an_unknown_one(peer: Peer, env: Env) -> None:
    why = peer.prepare() or peer.unavailable()  # as benchmarks.run does
    if why:
        pytest.skip(why)
    target = peer.start(env, ["alice", "bob"], "bob")
    try:
        loadgen.sanity_check(target)  # GET, upload, download, WebSocket echo as bob
        stranger = replace(target, headers=env.headers("mallory"),
                           prefix=target.prefix.replace("/bob/", "/mallory/"))
        assert _status(stranger, stranger.prefix + "small") == 404
    finally:
        assert target.proc is not None
        env.children.stop(target.proc)


def test_envoy_mode_peer_admits_the_session_and_only_its_user(env: Env) -> None:
    """Envoy mode as configured: the session cookie decides, not the remote_user header."""
    peer = EnvoyMode()
    why = peer.prepare() or peer.unavailable()  # as benchmarks.run does
    if why:
        pytest.skip(why)
    env = replace(env, token=mint_token(env, "bob"))
    target = peer.start(env, ["alice", "bob"], "bob")
    try:
        loadgen.sanity_check(target)
        claims_alice = replace(target, headers=[env.headers("bob")[0], "remote_user: alice"])
        assert _status(claims_alice, target.prefix + "small") == 200  # bob's, as his token says
        no_session = replace(target, headers=["remote_user: bob"])
        assert _status(no_session, target.prefix + "small") == 401
    finally:
        for proc in (target.proc, target.extra["companion"]):
            if proc is not None:
                env.children.stop(proc)


def test_hatchway_metrics_peer_serves_and_is_scraped_like_prometheus_would(env: Env) -> None:
    """``--hatchway-metrics on``: the same proxy, its metrics listener on, and a scraper on it
    from the start (stopped with the proxy)."""
    peer = Hatchway(metrics=True)
    why = peer.prepare() or peer.unavailable()  # as benchmarks.run does
    if why:
        pytest.skip(why)
    env = replace(env, token=mint_token(env, "bob"))
    target = peer.start(env, ["alice", "bob"], "bob")
    scraper = target.extra["companion"]
    try:
        assert target.peer == "hatchway-metrics"
        loadgen.sanity_check(target)
        log = env.work / f"hatchway-{target.port}-scrape.log"
        deadline = time.monotonic() + 10
        while "status 200" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "no scrape answered"
            time.sleep(0.1)
    finally:
        for proc in (target.proc, scraper):
            if proc is not None:
                env.children.stop(proc)
    assert scraper.poll() is not None
