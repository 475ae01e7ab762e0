"""Fixtures: a real upstream process on a free loopback port, and a child registry that is
always emptied, so a failing test leaves no process behind."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.peers import REPO, Env
from benchmarks.procs import Children, free_port, wait_port


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.stop_all()


@pytest.fixture
def upstream_port(children: Children, tmp_path: Path) -> int:
    port = free_port()
    proc = children.spawn([sys.executable, "-m", "benchmarks.upstream", "--port", str(port)],
                          log=tmp_path / "upstream.log", cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    wait_port(port, 15, proc)
    return port


@pytest.fixture
def env(children: Children, tmp_path: Path, upstream_port: int) -> Env:
    return Env(children=children, work=tmp_path, upstream_port=upstream_port,
               token="not-a-real-token", state_dir=tmp_path / "state")
