"""What the fast path's parts may ask of each other, declared once.

The browser side (``front.Front``) and the workspace side (``upstream.Upstream``) call each
other on every request; the listener (``listener.FastPath``) owns both. They meet only through
these Protocols, so neither module imports the other and the listener alone wires them
together. Protocols cost nothing at run time: calls go straight to the concrete methods.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ...gateway import Gateway
    from ...observe.traffic import Traffic
    from .gate import Gate
    from .kernelcopy import Pipes
    from .limits import Places
    from .splice import SpliceEnd

WRITE_HIGH_WATER = 512 * 1024  # a transport's write buffer above this pauses the other side
_BIG = 16384  # above this, a head and its body go as two buffers instead of one joined copy


def write_head_and_body(transport: asyncio.Transport, head: bytes, body: bytes) -> None:
    """One write for a head and the body bytes that came with it: joined when small (one
    send), as two buffers when joining would copy a large body."""
    if len(body) > _BIG:
        transport.writelines((head, body))
    else:
        transport.write(head + body if body else head)


class Request(Protocol):
    """What the workspace side reads and marks of the request it answers (``exchange``)."""

    keep_alive: bool  # the browser's connection stays open after this response
    resp_started: bool  # response bytes were sent: the request can no longer be retried
    began: int  # monotonic_ns when the request was admitted (time to first byte)


class Browser(Protocol):
    """What the workspace side calls on the browser connection it answers."""

    write_paused: bool  # the browser's transport is full: don't read from the workspace

    def response_done(self, up: Workspace, reusable: bool) -> None:
        """The whole response went to the browser; ``up`` may be pooled if ``reusable``."""

    def upstream_lost(self, up: Workspace) -> None:
        """The workspace connection closed before a response started (maybe retry)."""

    def upstream_broken(self, up: Workspace) -> None:
        """The workspace connection failed mid-response: the browser's must end too."""

    def upstream_full(self, full: bool) -> None:
        """The workspace's write buffer filled (True) or drained (False)."""

    def upgrade_refused(self, status: int) -> None:
        """A WebSocket upgrade was answered without 101."""

    def upgraded(self, up: Workspace, to_browser: bytes) -> None:
        """101 from the workspace: splice the two connections."""


class Workspace(Protocol):
    """What the browser side uses of one connection to a workspace."""

    transport: asyncio.Transport | None
    buf: bytes  # bytes read past the response (a 101's first frames)
    reused: bool  # taken from the pool: a failure before any answer may be retried
    write_paused: bool

    def attach(self, front: Browser, request: Request, down: asyncio.Transport, *,
               no_body: bool, upgrade: bool) -> None: ...

    def discard(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Pool(Protocol):
    """Idle workspace connections; ``give_back``/``forget`` take what ``take``/``connect``
    gave (typed loosely so the pool may keep its own concrete type)."""

    pipes: Pipes  # kept for bodies spliced in the kernel (kernelcopy)

    def take(self, host: str, port: int) -> Workspace | None: ...

    async def connect(self, host: str, port: int) -> Workspace: ...

    def give_back(self, up: Any) -> None: ...

    def forget(self, up: Any) -> None: ...


class Listener(Protocol):
    """What a browser connection (``Front``) needs from the listener that made it."""

    buffered: int  # read-ahead bytes held by all connections
    peak_buffered: int
    relayed: int  # requests the fast path relayed itself
    handed_off: int  # connections it handed to aiohttp
    n_websockets: int  # WebSockets spliced (metrics)
    n_failed: int  # its own error answers: 502, 408, 400 (metrics)
    traffic: Traffic  # bytes each way, time to first byte (metrics)
    # the opt-in access log (proxy.serve.wiring), called with the exchange and its workspace side
    access: Callable[[Any, Any], None] | None

    @property
    def gateway(self) -> Gateway: ...

    @property
    def gate(self) -> Gate: ...

    @property
    def pool(self) -> Pool: ...

    @property
    def places(self) -> Places: ...

    @property
    def fresh(self) -> OrderedDict[Any, None]: ...

    @property
    def splices(self) -> set[SpliceEnd]: ...

    @property
    def max_pending(self) -> int: ...

    @property
    def max_buffered(self) -> int: ...

    @property
    def touch(self) -> Callable[[str], None]: ...

    @property
    def aiohttp_protocol(self) -> Callable[[], asyncio.Protocol]: ...

    def admit(self, front: Any) -> bool: ...

    def forget(self, front: Any) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...
