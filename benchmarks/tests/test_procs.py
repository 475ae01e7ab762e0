"""Children of a run never outlive it, and memory is read from the whole process tree."""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.procs import Children, rss_kib


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _grandchild(children: Children, tmp_path: Path) -> tuple[int, int]:
    pidfile = tmp_path / "grandchild.pid"
    proc = children.spawn(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"])
    deadline = time.monotonic() + 5
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return proc.pid, int(pidfile.read_text())


def test_stop_all_kills_grandchildren_too(tmp_path: Path) -> None:
    children = Children()
    _, grandchild = _grandchild(children, tmp_path)
    children.stop_all()
    time.sleep(0.1)
    assert not _alive(grandchild)


def test_rss_counts_the_children_of_a_process(children: Children, tmp_path: Path) -> None:
    parent, grandchild = _grandchild(children, tmp_path)
    assert rss_kib(parent) > rss_kib(grandchild) > 0
