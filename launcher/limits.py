"""What one local workspace may use of the machine: memory, CPU, processes, file size.

A pod gets its option's ``memory-limit`` and ``cpu-limit`` from the kubelet as cgroup v2 files;
a local workspace gets the same files when the host delegates a cgroup v2 subtree to hatchway
(``Cgroups``): ``memory.max`` from ``memory-limit`` (``memory.swap.max`` 0, as runc sets it
when a pod's swap equals its memory), ``cpu.max`` and ``cpu.weight`` from ``cpu-limit`` as the
kubelet converts millicores (quota over a 100 ms period, at least 1 ms; weight from shares as
opencontainers/cgroups converts them; Hatchery's limits equal its requests), and ``pids.max``
from ``local.pids_limit``. Where no cgroup is delegated (not root, cgroup v1 or a hybrid
host, a read-only ``/sys/fs/cgroup``), rlimits are the floor: ``RLIMIT_NPROC`` (counted per uid,
and each user's workspace has a uid of its own), ``RLIMIT_DATA`` per process from
``memory-limit``, and no CPU limit. ``RLIMIT_FSIZE`` applies either way: no cgroup bounds disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from .errors import BackendError

log = logging.getLogger("hatchway.local")

PERIOD_US = 100_000  # the kubelet's CFS period
MIN_QUOTA_US = 1_000  # the kubelet's smallest quota
NEEDED = ("memory", "pids")  # without these a cgroup bounds nothing that matters here
WANTED = ("cpu", "memory", "pids")
GATEWAY_LEAF = "gateway"  # where hatchway moves itself: a cgroup with children holds no process
_CPU = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(m?)\s*$")


@dataclass(frozen=True)
class Limits:
    """One workspace's limits; None: not limited."""

    memory: int | None = None  # bytes, the option's memory-limit
    cpu_millis: int | None = None  # the option's cpu-limit
    pids: int | None = None
    file_size: int | None = None


def parse_cpu(quantity: str) -> int:
    """A Kubernetes CPU quantity ("0.5", "500m", "2") in millicores, rounded up as
    ``Quantity.MilliValue`` does. Raises ValueError with the accepted forms."""
    match = _CPU.match(quantity)
    if not match or Decimal(match.group(1)) == 0:
        raise ValueError(f"cpu-limit {quantity!r} is not a CPU quantity like 0.5, 500m or 2")
    value = Decimal(match.group(1)) * (1 if match.group(2) else 1000)
    return math.ceil(value)


def cpu_max(millis: int) -> str:
    """``cpu.max`` as the kubelet writes a container's CPU limit."""
    return f"{max(millis * PERIOD_US // 1000, MIN_QUOTA_US)} {PERIOD_US}"


def cpu_weight(millis: int) -> int:
    """``cpu.weight`` from the request (= the limit in Hatchery's pods): shares as the kubelet
    computes them (1024 per CPU, at least 2), then onto cgroup v2's 1-10000."""
    return shares_to_weight(max(millis * 1024 // 1000, 2))


def shares_to_weight(shares: int) -> int:
    """cgroup v1 shares as a cgroup v2 weight, the way opencontainers/cgroups maps them
    (log-quadratic through min, default and max: 2 → 1, 1024 → 100, 262144 → 10000)."""
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    level = math.log2(shares)
    return math.ceil(10 ** ((level * level + 125 * level) / 612.0 - 7.0 / 34.0))


def rlimit_argv(limits: Limits, *, cgroup: bool) -> list[str]:
    """``prlimit`` in front of a command (run as the workspace's uid, so it can only lower
    them): the rlimits that apply, given whether a cgroup already bounds memory and pids."""
    wanted = [] if cgroup else [("nproc", limits.pids), ("data", limits.memory)]
    wanted.append(("fsize", limits.file_size))
    options = [f"--{name}={value}" for name, value in wanted if value is not None]
    return ["prlimit", *options, "--"] if options else []


def describe_rlimits(pids: int, file_size: str) -> str:
    """The rlimits in force, for people (``file_size`` as the operator wrote it)."""
    size = f", RLIMIT_FSIZE {file_size}" if file_size else ""
    return (f"RLIMIT_NPROC {pids} per workspace uid, RLIMIT_DATA from memory-limit per "
            f"process{size}")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _own_cgroup_v2() -> tuple[Path | None, str]:
    """The gateway's own cgroup directory on a pure cgroup v2 host, or why there is none."""
    lines = _read(Path("/proc/self/cgroup")).splitlines()
    if len(lines) != 1 or not lines[0].startswith("0::"):
        return None, "a cgroup v1 or hybrid host (only cgroup v2 is used)"
    own = lines[0][3:]
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
            mount_root, mount_point = fields[0].split()[3:5]
            relative = os.path.relpath(own, mount_root)
            if relative.startswith(".."):
                continue
            return Path(mount_point) / relative, ""
    return None, "no cgroup v2 file system is mounted"


class Cgroups:
    """The cgroup v2 directory whose children hold workspaces, made ready once; ``parent`` is
    None when there is none and ``reason`` says why."""

    def __init__(self, setting: str) -> None:
        self.parent: Path | None = None
        self.controllers: frozenset[str] = frozenset()
        if setting == "none":
            self.reason = "local.cgroup is none"
            return
        if os.geteuid() != 0:
            self.reason = "not running as root"
            return
        parent, self.reason = (Path(setting), "") if setting else _own_cgroup_v2()
        if parent is not None and parent.name == GATEWAY_LEAF and all(
                c in _read(parent.parent / "cgroup.subtree_control").split() for c in NEEDED):
            parent = parent.parent  # hatchway already moved itself into the leaf
        if parent is not None:
            self.reason = self._prepare(parent)
            self.parent = None if self.reason else parent

    def _prepare(self, parent: Path) -> str:
        """Enable the controllers for children; '' when done, else why not."""
        available = set(_read(parent / "cgroup.controllers").split())
        if missing := [c for c in NEEDED if c not in available]:
            return (f"cgroup v2 at {parent} does not delegate {', '.join(missing)} "
                    f"(it has: {' '.join(sorted(available)) or 'nothing'})")
        if not os.access(parent, os.W_OK) or not os.access(parent / "cgroup.subtree_control",
                                                           os.W_OK):
            return f"cgroup v2 at {parent} is not writable"
        wanted = [c for c in WANTED if c in available]
        try:
            others = self._move_self_out(parent)
            if others:
                return (f"cgroup v2 at {parent} also holds processes other than hatchway "
                        f"({', '.join(others[:5])}): give hatchway a cgroup of its own "
                        "(systemd: Delegate=yes)")
            (parent / "cgroup.subtree_control").write_text(
                " ".join(f"+{c}" for c in wanted))
        except OSError as exc:
            return f"cgroup v2 at {parent}: {exc.strerror or exc}"
        self.controllers = frozenset(wanted)
        return ""

    @staticmethod
    def _move_self_out(parent: Path) -> list[str]:
        """A cgroup whose children have controllers holds no process of its own: hatchway
        moves itself into a leaf. Returns the other processes found there (then nothing
        moves)."""
        if not (parent / "cgroup.type").exists():
            return []  # the root cgroup may hold processes beside children with controllers
        pids = _read(parent / "cgroup.procs").split()
        others = [p for p in pids if p != str(os.getpid())]
        if others or not pids:
            return others
        leaf = parent / GATEWAY_LEAF
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        return []

    def describe(self, pids: int, file_size: str) -> str:
        if self.parent is None:
            return ""
        cpu = "cpu.max and cpu.weight from cpu-limit, " if "cpu" in self.controllers else ""
        size = f", RLIMIT_FSIZE {file_size}" if file_size else ""
        return (f"cgroup v2 under {self.parent}: memory.max from memory-limit, {cpu}"
                f"pids.max {pids}{size}")

    def create(self, name: str, limits: Limits) -> Path:
        """The workspace's own cgroup with its limits written; whatever an earlier run left
        there is killed first. Raises BackendError."""
        assert self.parent is not None
        group = self.parent / f"workspace-{name}"
        try:
            if group.is_dir():
                _remove(group, log_failure=False)
            group.mkdir(exist_ok=True)
            files = {"pids.max": str(limits.pids) if limits.pids else "max"}
            if limits.memory is not None:
                files["memory.max"] = str(limits.memory)
                if (group / "memory.swap.max").exists():
                    files["memory.swap.max"] = "0"
            if limits.cpu_millis is not None and "cpu" in self.controllers:
                files["cpu.max"] = cpu_max(limits.cpu_millis)
                files["cpu.weight"] = str(cpu_weight(limits.cpu_millis))
            for file, value in files.items():
                (group / file).write_text(value)
        except OSError as exc:
            raise BackendError(f"cannot set up the workspace's cgroup {group}: "
                               f"{exc.strerror or exc}") from None
        return group

    @staticmethod
    def enter_argv(group: Path, argv: list[str]) -> list[str]:
        """``argv`` started inside ``group``: the shell moves itself in, then becomes the
        command, so not even its first child starts outside (a move from outside would race
        the forks)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs"),
                *argv]

    @staticmethod
    async def remove(group: Path, within: float = 2.0) -> None:
        """Kill whatever is left in ``group`` (processes that left the workspace's process
        group, a setsid'd terminal say) and remove it; a failure is logged, never raised."""
        _kill(group)
        for _ in range(int(within / 0.02)):
            if not _read(group / "cgroup.procs"):
                break
            await asyncio.sleep(0.02)
        _remove(group, log_failure=True)


def _kill(group: Path) -> None:
    with contextlib.suppress(OSError):
        (group / "cgroup.kill").write_text("1")  # Linux 5.14+; before it, the pid ns does


def _remove(group: Path, *, log_failure: bool) -> None:
    """Kill what is left in ``group`` and remove it (it stays while processes are dying)."""
    _kill(group)
    try:
        group.rmdir()
    except OSError as exc:
        if log_failure:
            log.warning("could not remove the workspace cgroup %s: %s", group,
                        exc.strerror or exc)
