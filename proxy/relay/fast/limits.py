"""Places for browser connections: a global cap kept below the descriptor limit and a cap per
client address, so idle or slow connections cannot take every descriptor (accept() failing
with EMFILE fails every user at once).

A connection takes a place when accepted and gives it back exactly once when it ends, whoever
serves it by then: the fast path, a WebSocket splice, or aiohttp after a handoff (``Handed``
wraps aiohttp's protocol to see the end).
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable

# Descriptors kept out of the browser cap: each relayed request also needs a workspace
# connection, and the process needs some for files, DNS, the Kubernetes API and logs.
FD_RESERVE = 128


def default_max_connections() -> int:
    """Half of what is left of the soft descriptor limit after the reserve: the other half
    carries the workspace side of those same connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, (soft - FD_RESERVE) // 2)


class Places:
    """Who holds how many connections."""

    __slots__ = ("max_total", "max_per_client", "total", "per_client")

    def __init__(self, *, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total or default_max_connections()
        self.max_per_client = max_per_client  # 0: no per-address cap
        self.total = 0
        self.per_client: dict[str, int] = {}

    def client_full(self, client: str) -> bool:
        return 0 < self.max_per_client <= self.per_client.get(client, 0)

    def full(self) -> bool:
        return self.total >= self.max_total

    def take(self, client: str) -> None:
        self.total += 1
        self.per_client[client] = self.per_client.get(client, 0) + 1

    def give_back(self, client: str) -> None:
        self.total -= 1
        n = self.per_client[client] - 1
        if n:
            self.per_client[client] = n
        else:
            del self.per_client[client]


class Handed(asyncio.Protocol):
    """aiohttp's protocol for a connection handed to it, plus giving back the connection's
    place when it ends. One extra call per event, on aiohttp's (slower) path only."""

    __slots__ = ("inner", "release")

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self.inner = inner
        self.release = release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        release, self.release = self.release, _nothing
        release()
        self.inner.connection_lost(exc)


def _nothing() -> None:
    return None
