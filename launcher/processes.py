"""Process-group plumbing for local workspaces: each runs in its own session, so signalling
the group reaches the grandchildren a workspace forks (shells, kernels, terminals)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import socket
from pathlib import Path

_PROC = Path("/proc")


_EPHEMERAL = _PROC / "sys/net/ipv4/ip_local_port_range"
_LOWEST = 20000


def _ephemeral_start() -> int:
    """Where the kernel starts handing ports to outgoing connections (32768 by default)."""
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1", avoid: frozenset[int] = frozenset()) -> int:
    """A port nobody listens on right now, for a workspace that binds it a moment later.

    Chosen below the kernel's ephemeral range: a port ``bind(0)`` hands out is also handed to
    outgoing connections (the gateway's own to other workspaces), and one of those may take it
    before the workspace binds, which then dies with "Address already in use". ``avoid`` holds
    ports given to workspaces that may not have bound yet."""
    top = _ephemeral_start()
    if top - _LOWEST >= 1000:
        for _ in range(200):
            port = random.randrange(_LOWEST, top)
            if port in avoid:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to every process of the group; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _members(pgid: int) -> list[int]:
    """The running members of the group. Zombies do not count: an orphan's zombie lingers
    where PID 1 does not reap (some containers), yet it holds no resources."""
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    """True while some member of the group still runs (zombies do not count)."""
    if not _PROC.is_dir():
        return signal_group(pgid, 0)
    return bool(_members(pgid))


def _terminate(pgid: int, spare: int | None) -> bool:
    """SIGTERM the group, or each of its members but ``spare``; False when none was there."""
    if spare is None or not _PROC.is_dir():
        return signal_group(pgid, signal.SIGTERM)
    sent = False
    for pid in _members(pgid):
        if pid != spare:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
                sent = True
    return sent or group_alive(pgid)


async def end_group(pgid: int, grace: float, poll: float = 0.05, *,
                    spare: int | None = None) -> bool:
    """SIGTERM the group, give it ``grace`` seconds to go, then SIGKILL what is left.
    ``spare`` is left out of the SIGTERM: bubblewrap's outer process, whose death would
    SIGKILL the whole sandbox at once (its pid 1 dies with it) and leave the workspace no
    grace; it ends by itself when the workspace does. Returns True when SIGKILL was needed."""
    if not _terminate(pgid, spare):
        return False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        await asyncio.sleep(poll)
        if not group_alive(pgid):
            return False
    return signal_group(pgid, signal.SIGKILL)


async def group_gone(pgid: int, within: float, poll: float = 0.02) -> bool:
    """Wait (at most ``within`` seconds) until no member of the group runs. A SIGKILL is
    delivered asynchronously, and a sandboxed workspace is a grandchild: reaping the direct
    child does not mean it is gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while group_alive(pgid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True


_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGTPE]i?|k|m)?\s*$")
_FACTORS = {
    None: 1, "m": 0.001, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "E": 1e18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


def parse_memory(quantity: str) -> int:
    """A Kubernetes memory quantity ("512Mi", "2Gi", "1G", "500M", "1048576") in bytes.
    Raises ValueError with the accepted forms."""
    match = _QUANTITY.match(quantity)
    if not match:
        raise ValueError(f"memory-limit {quantity!r} is not a quantity like 512Mi, 2Gi or 1G")
    return int(float(match.group(1)) * _FACTORS[match.group(2)])
