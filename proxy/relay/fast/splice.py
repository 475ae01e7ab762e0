"""A WebSocket after its 101: bytes spliced both ways between the browser and the workspace.

The proxy does not parse payloads, so close codes and reasons, subprotocols, extensions such as
permessage-deflate, and pings/pongs are exactly what the two ends said. It reads only frame
headers (``wsframes.FrameMeter``) to hold each message to ``max_message`` bytes, the same limit
the aiohttp relay applies: a message past it closes both sides with 1009. A data frame from
the browser counts as activity; pings, pongs and what the workspace sends do not (an open tab
answering a workspace's keep-alive pings is no user at work: launcher.lifetime). A full write
buffer on one side pauses reading on the other; either side closing closes the other once its
pending bytes are written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ...observe.traffic import Traffic
from .wsframes import CLOSE_TOO_BIG, FrameMeter, close_frame

DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
# After a 1009 both sides get this long to read the close frame before the sockets are closed
# (closing at once, with their bytes still arriving, would reset the connection and could
# destroy the close frame before they read it).
LINGER_SECONDS = 2.0


class SpliceEnd(asyncio.Protocol):
    """One side of a splice: what arrives here is written to ``peer``. ``to_server`` is true
    for the workspace's side (frames written to it must be masked)."""

    __slots__ = ("own", "peer", "touch", "user", "live", "meter", "to_server", "refused",
                 "release", "traffic")

    def __init__(self, own: asyncio.Transport, peer: asyncio.Transport,
                 touch: Callable[[str], None], user: str, live: set[SpliceEnd], *,
                 max_message: int, to_server: bool, traffic: Traffic,
                 release: Callable[[], None] | None = None) -> None:
        self.own = own
        self.peer = peer
        self.touch = touch
        self.user = user
        self.live = live
        self.meter = FrameMeter(max_message)
        self.to_server = to_server
        self.refused = False
        self.release = release  # the browser end gives back the connection's place
        self.traffic = traffic
        live.add(self)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # lingering after a 1009: read and drop
        meter = self.meter
        out, over = meter.feed(data)
        if out:
            self.peer.write(out)
            if self.to_server:  # this end reads the workspace
                self.traffic.to_browser += len(out)
            else:
                self.traffic.to_workspace += len(out)
                if meter.data:  # the browser sent a message, not just a pong
                    meter.data = False
                    self.touch(self.user)
        if over:
            self._refuse()

    def _refuse(self) -> None:
        """A message too big: 1009 to both sides, then stop relaying and close shortly."""
        other = self.peer.get_protocol()
        for end in (self, other):
            if not isinstance(end, SpliceEnd) or end.refused:
                continue
            end.refused = True
            transport = end.own
            if transport.is_closing():
                continue
            transport.write(close_frame(CLOSE_TOO_BIG, masked=end.to_server))
            transport.resume_reading()  # drop what still comes instead of holding it
            if transport.can_write_eof():
                transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def eof_received(self) -> bool | None:
        return None  # close this side; connection_lost closes the other

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        if not self.refused:
            self.peer.close()
        if self.release is not None:
            self.release()
            self.release = None

    def pause_writing(self) -> None:
        if not self.refused:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if not self.refused:
            self.peer.resume_reading()


def splice(browser: asyncio.Transport, workspace: asyncio.Transport, *,
           to_browser: bytes, to_workspace: bytes, touch: Callable[[str], None], user: str,
           live: set[SpliceEnd], traffic: Traffic, max_message: int = DEFAULT_MAX_MESSAGE,
           release: Callable[[], None] | None = None) -> None:
    """Turn two HTTP connections into one WebSocket pipe. ``to_browser`` is the workspace's
    101 head and any bytes read after it, ``to_workspace`` bytes the browser sent after its
    handshake. Each transport's reading must already be paused exactly when the other's write
    buffer is full."""
    from_browser = SpliceEnd(browser, workspace, touch, user, live, max_message=max_message,
                             to_server=False, traffic=traffic, release=release)
    from_workspace = SpliceEnd(workspace, browser, touch, user, live, max_message=max_message,
                               to_server=True, traffic=traffic)
    browser.set_protocol(from_browser)
    workspace.set_protocol(from_workspace)
    head_end = to_browser.find(b"\r\n\r\n") + 4  # the 101 head goes as is, frames metered
    browser.write(to_browser[:head_end])
    traffic.to_browser += head_end
    if len(to_browser) > head_end:
        from_workspace.data_received(to_browser[head_end:])
    if to_workspace:
        from_browser.data_received(to_workspace)
