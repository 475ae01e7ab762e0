"""A WebSocket after its 101: bytes spliced both ways between the browser and the workspace.

The proxy does not parse payloads, so close codes and reasons, subprotocols, extensions such as
permessage-deflate, and pings/pongs are exactly what the two ends said. It reads only frame
headers (``wsframes.FrameMeter``) to hold each message to ``max_message`` bytes, the same limit
the aiohttp relay applies: a message past it closes both sides with 1009. A data frame from
the browser counts as activity; pings, pongs and what the workspace sends do not (an open tab
answering a workspace's keep-alive pings is no user at work: launcher.lifetime). A full write
buffer on one side pauses reading on the other; either side closing closes the other once its
pending bytes are written.

Large frames skip the event loop: once a frame's payload still to come is ``PUMP_MIN`` bytes or
more, that direction's transport stops reading and the kernel splices the rest of the frame
(``kernelcopy.Pump``). At the frame's end the pump peeks at the next frame header and, if
that frame is large too, splices it whole, header included, after the meter has counted it
exactly as ``FrameMeter.feed`` would (the size limit, browser activity). A small frame, a split
header or the end of the stream hands the direction back to the transport. Everything else is
read into one shared buffer (``_ReadBuffer``) and written on from a view of it: no bytes
object per read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ...observe.traffic import Traffic
from .kernelcopy import Pipes, Pump, pump_between
from .wsframes import CLOSE_TOO_BIG, MAX_HEADER, FrameMeter, close_frame

DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
# After a 1009 both sides get this long to read the close frame before the sockets are closed
# (closing at once, with their bytes still arriving, would reset the connection and could
# destroy the close frame before they read it).
LINGER_SECONDS = 2.0
# A frame with at least this much payload still to come is spliced in the kernel: below it the
# pump's system calls and watcher changes cost more than the copies they save (measured: with
# 16 KiB, 64 KiB echoes took ~12 % more CPU per message than reading into the shared buffer).
PUMP_MIN = 256 * 1024


class _ReadBuffer:
    """The one buffer every splice end reads into (asyncio.BufferedProtocol): a read is
    relayed before the next one starts, so one buffer serves all connections without a bytes
    object per read. When the peer's transport keeps a write pending, that write still
    refers to the buffer: the buffer is handed over to it and a fresh one takes its place."""

    __slots__ = ("view",)

    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_BYTES))

    def renew(self) -> None:
        self.view = memoryview(bytearray(READ_BYTES))


READ_BYTES = 256 * 1024  # a read's most, as uvloop's own read buffer
_READ = _ReadBuffer()


class SpliceEnd(asyncio.BufferedProtocol):
    """One side of a splice: what arrives here is written to ``peer``. ``to_server`` is true
    for the workspace's side (frames written to it must be masked)."""

    __slots__ = ("own", "peer", "touch", "user", "live", "meter", "to_server", "refused",
                 "release", "traffic", "other", "pipes", "pump", "pumping", "run_size")

    def __init__(self, own: asyncio.Transport, peer: asyncio.Transport,
                 touch: Callable[[str], None], user: str, live: set[SpliceEnd], *,
                 max_message: int, to_server: bool, traffic: Traffic,
                 release: Callable[[], None] | None = None,
                 pipes: Pipes | None = None) -> None:
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
        self.other: SpliceEnd | None = None  # the end reading ``peer``
        self.pipes = pipes  # None: the plain path only
        self.pump: Pump | None = None
        self.pumping = False  # the pump, not the transport, reads ``own`` now
        self.run_size = 0  # bytes of the pump's current run
        live.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ.view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_READ.view[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self.refused:
            return  # lingering after a 1009: read and drop
        meter = self.meter
        out, over = meter.feed(data)
        if out:
            peer = self.peer
            peer.write(out)
            if peer.get_write_buffer_size() and isinstance(out, memoryview):
                _READ.renew()  # the pending write holds the shared buffer now
            if self.to_server:  # this end reads the workspace
                self.traffic.to_browser += len(out)
            else:
                self.traffic.to_workspace += len(out)
                if meter.data:  # the browser sent a message, not just a pong
                    meter.data = False
                    self.touch(self.user)
        if over:
            self._refuse()
        elif meter.skip >= PUMP_MIN and self.pipes is not None:
            self._pump_frame(meter.skip)

    # -- large frames, in the kernel --------------------------------------------------------
    def _take_reading(self) -> Pump | None:
        """The pump reads ``own`` from now on (made on first use), or None: the plain path."""
        pump = self.pump
        if pump is None:
            if self.pipes is not None:
                pump = pump_between(self.pipes, self.own, self.peer)
            if pump is None:
                self.pipes = None  # not here: the plain path from now on
                return None
            self.pump = pump
        if not self.pumping:
            self.pumping = True
            self.own.pause_reading()
        return pump

    def _pump_frame(self, count: int) -> None:
        """Splice the next ``count`` bytes (the rest of a frame, or a whole one); ``meter.skip``
        stays non-zero meanwhile: the direction is mid-frame (the drain waits for a boundary)."""
        pump = self._take_reading()
        if pump is None:
            return
        self.meter.skip = count
        self.run_size = count
        pump.run(count, self._pumped)


    def _pumped(self, failed: int | None) -> None:
        pump = self.pump
        assert pump is not None
        moved = self.run_size - pump.left
        if self.to_server:
            self.traffic.to_browser += moved
        else:
            self.traffic.to_workspace += moved
        if failed is not None:  # the pump closed itself; closing this side closes the other
            self.pump = None
            self.pumping = False
            self.own.close()
            return
        self.meter.skip = 0
        pump.when_readable(self._boundary)  # on the next turn of the loop: no recursion

    def _boundary(self) -> None:
        """Between two frames while the pump reads: the next one whole, or back to the
        transport."""
        pump = self.pump
        if pump is None:
            return
        if self.refused:  # the drain closed it meanwhile: what still comes is dropped
            self._stop_pump()
            return
        head = pump.peek(MAX_HEADER)
        if head is None:
            return  # still waiting (when_readable stays set)
        meter = self.meter
        size = meter.frame(head, PUMP_MIN) if head else 0
        if size > 0:
            if meter.data and not self.to_server:
                meter.data = False
                self.touch(self.user)
            self._pump_frame(size)
            return
        pump.idle()
        self.pumping = False
        if size < 0:
            self._refuse()
        else:  # a small frame, a split header, or the end: the transport reads it
            self.own.resume_reading()

    def _stop_pump(self) -> None:
        pump = self.pump
        if pump is not None:
            self.pump = None
            self.pumping = False
            pump.close()

    def _refuse(self) -> None:
        """A message too big: 1009 to both sides, then stop relaying and close shortly."""
        other = self.peer.get_protocol()
        for end in (self, other):
            if not isinstance(end, SpliceEnd) or end.refused:
                continue
            end.refused = True
            end._stop_pump()
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
        self._stop_pump()
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
        other = self.other
        if not self.refused and (other is None or not other.pumping):
            self.peer.resume_reading()


def splice(browser: asyncio.Transport, workspace: asyncio.Transport, *,
           to_browser: bytes, to_workspace: bytes, touch: Callable[[str], None], user: str,
           live: set[SpliceEnd], traffic: Traffic, max_message: int = DEFAULT_MAX_MESSAGE,
           release: Callable[[], None] | None = None, pipes: Pipes | None = None) -> None:
    """Turn two HTTP connections into one WebSocket pipe. ``to_browser`` is the workspace's
    101 head and any bytes read after it, ``to_workspace`` bytes the browser sent after its
    handshake. Each transport's reading must already be paused exactly when the other's write
    buffer is full. With ``pipes``, large frames are spliced in the kernel."""
    from_browser = SpliceEnd(browser, workspace, touch, user, live, max_message=max_message,
                             to_server=False, traffic=traffic, release=release, pipes=pipes)
    from_workspace = SpliceEnd(workspace, browser, touch, user, live, max_message=max_message,
                               to_server=True, traffic=traffic, pipes=pipes)
    from_browser.other = from_workspace
    from_workspace.other = from_browser
    for transport, end in ((browser, from_browser), (workspace, from_workspace)):
        transport.set_protocol(end)
        if transport.is_reading():  # uvloop picks a protocol's read kind when reading starts
            transport.pause_reading()
            transport.resume_reading()
    head_end = to_browser.find(b"\r\n\r\n") + 4  # the 101 head goes as is, frames metered
    browser.write(to_browser[:head_end])
    traffic.to_browser += head_end
    if len(to_browser) > head_end:
        from_workspace.data_received(to_browser[head_end:])
    if to_workspace:
        from_browser.data_received(to_workspace)
