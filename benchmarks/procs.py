"""Child processes of one benchmark run: every one is started in its own session and recorded,
so that all of them (and their own children: nginx workers, npm, ...) are killed by process
group when the run ends, fails or is interrupted. Also the /proc readings the memory figures use.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Children:
    """The registry; ``stop_all`` is safe to call twice and from a signal-driven exit."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []
        self.pin: dict[str, str] = {}  # role -> taskset CPU list, empty = no pinning

    def spawn(self, argv: Sequence[str], *, log: Path | None = None, role: str = "",
              env: dict[str, str] | None = None, cwd: str | Path | None = None,
              stdin: int | None = subprocess.DEVNULL,
              pipe_stdout: bool = False) -> subprocess.Popen[bytes]:
        """Output goes to ``log`` (stdout too unless ``pipe_stdout``) or is discarded."""
        cmd = list(argv)
        if role in self.pin:
            cmd = ["taskset", "-c", self.pin[role], *cmd]
        with open(log or os.devnull, "ab") as sink:
            proc = subprocess.Popen(cmd, stdin=stdin,
                                    stdout=subprocess.PIPE if pipe_stdout else sink,
                                    stderr=sink, env=env, cwd=cwd, start_new_session=True)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``grace`` seconds."""
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(proc.pid, signal.SIGKILL)  # stragglers in the group (nginx workers)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self._procs)):
            self.stop(proc, grace=2.0)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # our children lead their own session, so pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def raise_fd_limit(wanted: int = 65536) -> int:
    """Scenario (e) holds ~10,000 sockets in one proxy; children inherit this limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    """Until something accepts on 127.0.0.1:port; raises if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:.0f} s")


def _tree(pid: int) -> Iterator[int]:
    yield pid
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tasks:
        try:
            kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            yield from _tree(int(kid))


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (nginx master + worker)."""
    return sum(_status_kib(p, "VmRSS") for p in _tree(pid))


def peak_rss_kib(pid: int) -> int:
    """Sum of each process's VmHWM: the kernel's exact peak, so short spikes are not missed."""
    return sum(_status_kib(p, "VmHWM") for p in _tree(pid))


@contextmanager
def managed(children: Children) -> Iterator[Children]:
    """Kill every child on any exit; SIGTERM/SIGHUP are handled like Ctrl-C."""

    def _exit(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, _exit) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield children
    finally:
        children.stop_all()
        for sig, handler in old.items():
            signal.signal(sig, handler)
