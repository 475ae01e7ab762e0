"""A WebSocket after its 101: bytes spliced both ways between the browser and the workspace.

The proxy does not parse frames, so close codes and reasons, subprotocols, extensions such as
permessage-deflate, and pings/pongs are exactly what the two ends said. Each chunk counts as
activity (idle culling sees WebSocket traffic). A full write buffer on one side pauses reading
on the other; either side closing closes the other once its pending bytes are written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class SpliceEnd(asyncio.Protocol):
    """One side of a splice: what arrives here is written to ``peer``."""

    __slots__ = ("own", "peer", "touch", "user", "live", "release")

    def __init__(self, own: asyncio.Transport, peer: asyncio.Transport,
                 touch: Callable[[str], None], user: str, live: set[SpliceEnd],
                 release: Callable[[], None] | None = None) -> None:
        self.own = own
        self.peer = peer
        self.touch = touch
        self.user = user
        self.live = live
        self.release = release  # the browser end gives back the connection's place
        live.add(self)

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)
        self.touch(self.user)

    def eof_received(self) -> bool | None:
        return None  # close this side; connection_lost closes the other

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        self.peer.close()
        if self.release is not None:
            self.release()
            self.release = None

    def pause_writing(self) -> None:
        self.peer.pause_reading()

    def resume_writing(self) -> None:
        self.peer.resume_reading()


def splice(browser: asyncio.Transport, workspace: asyncio.Transport, *,
           to_browser: bytes, to_workspace: bytes, touch: Callable[[str], None], user: str,
           live: set[SpliceEnd], release: Callable[[], None] | None = None) -> None:
    """Turn two HTTP connections into one WebSocket pipe. ``to_browser``/``to_workspace`` are
    bytes already read past the handshake on the other side. Each transport's reading must
    already be paused exactly when the other's write buffer is full."""
    browser.set_protocol(SpliceEnd(browser, workspace, touch, user, live, release))
    workspace.set_protocol(SpliceEnd(workspace, browser, touch, user, live))
    if to_browser:
        browser.write(to_browser)
    if to_workspace:
        workspace.write(to_workspace)
