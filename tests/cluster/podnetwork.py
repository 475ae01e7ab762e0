"""The test node's pod network: an address that is not loopback, in a network namespace of the
test run's own.

A real API server refuses loopback addresses in EndpointSlices and pod status (the emulator
took 127.0.0.1), and no container network exists here. So the test session moves, before it
starts anything, into a network namespace of its own (root only: ``unshare(CLONE_NEWNET)``)
with loopback up and ``POD_ADDRESS`` on it: the workspaces the test node runs listen there,
the node reports it as their pod IP, and hatchway reaches them through real EndpointSlices.
Nothing in that namespace reaches beyond the machine, no package registry either: what a test
needs is installed before pytest (``make test``: the control plane, the benchmark peers); every
other test is unaffected (they use loopback, which the namespace has).
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess

POD_ADDRESS = "198.18.0.1"  # RFC 2544's benchmarking range: no special meaning to Kubernetes
_CLONE_NEWNET = 0x40000000
_why_not = ""


def pod_address_present() -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((POD_ADDRESS, 0))
        except OSError:
            return False
    return True


def enter_private_network() -> None:
    """Move this process (and all it starts) into a new network namespace with loopback and
    ``POD_ADDRESS``, before any thread starts; ``require_pod_address`` tells why not."""
    global _why_not
    _why_not = _enter()


def _enter() -> str:
    if pod_address_present():
        return ""
    if os.geteuid() != 0:
        return "not root: no network namespace of its own"
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        return f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}"
    for argv in (["ip", "link", "set", "lo", "up"],
                 ["ip", "addr", "add", f"{POD_ADDRESS}/32", "dev", "lo"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"{' '.join(argv)}: {done.stderr.strip()}"
    return ""


def require_pod_address() -> None:
    """Fail with the reason when the node's pod address is missing."""
    if not pod_address_present():
        raise RuntimeError(
            f"the test node's pod address {POD_ADDRESS} is not on this machine ({_why_not}): "
            "tests/conftest.py gives the test session a network namespace holding it, which "
            "needs root (CAP_SYS_ADMIN) and iproute2's `ip`")
