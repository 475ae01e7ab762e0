"""A known number of bytes from one socket to another without passing through Python: Linux
``splice(2)`` from the source socket into a pipe and from the pipe into the destination socket.

Where the relay knows how many bytes belong to the current message and never needs to look at
them — a Content-Length body, the payload of a large WebSocket frame — the kernel can move
them page by page: no copy into the process, no bytes object per read, no copy back out, and
a handful of system calls per MiB instead of a read and a write per chunk. Everything else
(heads, chunked bodies, frame headers) stays on the asyncio transports.

A ``Pump`` works beside the two transports, on duplicates of their descriptors (the event loop
allows one watcher per descriptor): the caller pauses the source transport's reading while it
runs, and nothing else may write to the destination until it is done. It splices into the
destination only while that transport's own write buffer is empty, so bytes already queued
there go first. Backpressure is the pipe's: it reads at most one pipe's worth ahead of what
the destination took. Each run's ``done`` is called once: with None when all its bytes went
through, else with ``SOURCE`` (the source ended or failed first) or ``DESTINATION`` (the
destination failed; the pump is closed then); ``left`` says how many did not go. ``close``
stops it silently. Between runs the WebSocket splice peeks at the next frame header
(``peek``, ``when_readable``) to decide whether the kernel takes that frame too.

``AVAILABLE`` is false off Linux (or without ``os.splice``): the relay then uses its plain
path, which remains the fallback everywhere and is tested on its own.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import sys
from collections.abc import Callable

AVAILABLE = sys.platform == "linux" and hasattr(os, "splice")
SOURCE, DESTINATION = 1, 2
PIPE_BYTES = 256 * 1024  # a pipe's capacity: how far reading may run ahead of writing
MAX_IDLE_PIPES = 64
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux)
_ROUNDS = 16  # splices each way per wake-up, at most (4 MiB with 256 KiB pipes)


class Pipes:
    """Empty pipes kept for reuse: a pump takes one and gives it back empty (a pipe left
    holding bytes is closed instead)."""

    __slots__ = ("idle", "size")

    def __init__(self, size: int = PIPE_BYTES) -> None:
        self.idle: list[tuple[int, int]] = []
        self.size = size

    def take(self) -> tuple[int, int, int]:
        """(read end, write end, capacity)."""
        if self.idle:
            r, w = self.idle.pop()
            return r, w, self.size
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self.size = fcntl.fcntl(w, _F_SETPIPE_SZ, self.size)
        except OSError:  # a per-user pipe quota: keep the default capacity
            self.size = min(self.size, 65536)
        return r, w, self.size

    def give_back(self, r: int, w: int, empty: bool) -> None:
        if empty and len(self.idle) < MAX_IDLE_PIPES:
            self.idle.append((r, w))
        else:
            os.close(r)
            os.close(w)

    def close(self) -> None:
        for r, w in self.idle:
            os.close(r)
            os.close(w)
        self.idle.clear()


class Pump:
    """Moves counted runs of bytes from ``src`` to ``dst`` (socket descriptors) through a
    pipe; one run at a time (``run``), as many runs as the caller likes, then ``close``."""

    __slots__ = ("loop", "pipes", "sock", "src", "dst", "dst_transport", "done", "left",
                 "in_pipe", "pr", "pw", "cap", "reading", "writing", "ended", "on_readable")

    def __init__(self, pipes: Pipes, src: int, dst: int,
                 dst_transport: asyncio.WriteTransport) -> None:
        self.loop = asyncio.get_running_loop()
        self.pipes = pipes
        self.dst_transport = dst_transport
        self.done: Callable[[int | None], None] | None = None
        self.on_readable: Callable[[], None] = self._move
        self.left = 0  # bytes of this run not yet in the destination
        self.in_pipe = 0
        self.reading = self.writing = self.ended = False
        self.pr, self.pw, self.cap = pipes.take()
        try:
            # a socket object only to peek (recv with MSG_PEEK); its blocking mode is never
            # set: the flag belongs to the open file, which the transport shares
            self.sock = socket.socket(fileno=os.dup(src))
            try:
                self.dst = os.dup(dst)
            except OSError:
                self.sock.close()
                raise
        except OSError:
            pipes.give_back(self.pr, self.pw, True)
            raise
        self.src = self.sock.fileno()

    def run(self, count: int, done: Callable[[int | None], None]) -> None:
        """Move ``count`` bytes, then call ``done`` (maybe before this returns)."""
        self.left = count
        self.done = done
        if self.on_readable is not self._move:
            self.on_readable = self._move
            if self.reading:
                self.loop.add_reader(self.src, self._move)
        self._move()

    def peek(self, n: int) -> bytes | None:
        """Up to ``n`` bytes the source has ready, left in place; None: none yet, b"": the
        source ended (or failed)."""
        try:
            return self.sock.recv(n, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def when_readable(self, callback: Callable[[], None]) -> None:
        """Between runs: call ``callback`` once the source has bytes (or ends)."""
        self.on_readable = callback
        if self.reading:
            self.loop.add_reader(self.src, callback)
        else:
            self.reading = True
            self.loop.add_reader(self.src, callback)

    def idle(self) -> None:
        """Between runs: watch nothing."""
        self._watch(read=False, write=False)

    # -- moving -----------------------------------------------------------------------------
    def _move(self) -> None:
        """Source → pipe → destination while either moves (a bounded number of rounds, so one
        fast stream does not starve the loop); then wait for whichever side is needed."""
        in_pipe = self.in_pipe
        left = self.left
        cap = self.cap
        for _ in range(_ROUNDS):
            moved = False
            want = min(left, cap) - in_pipe
            if want > 0:
                try:
                    n = os.splice(self.src, self.pw, want, flags=_FLAGS)
                except BlockingIOError:
                    n = -1
                except OSError:
                    n = 0
                if n == 0:  # the source closed (or failed) before the count
                    self.in_pipe = in_pipe
                    self._end(SOURCE)
                    return
                if n > 0:
                    in_pipe += n
                    moved = True
            if in_pipe and not self.dst_transport.get_write_buffer_size():
                try:
                    n = os.splice(self.pr, self.dst, in_pipe, flags=_FLAGS)
                except BlockingIOError:
                    n = 0
                except OSError:
                    self.in_pipe = in_pipe
                    self._end(DESTINATION)
                    return
                if n:
                    in_pipe -= n
                    left -= n
                    self.left = left
                    if not left:
                        self.in_pipe = in_pipe
                        self._end(None)
                        return
                    moved = True
            if not moved:
                break
        self.in_pipe = in_pipe
        self._watch(read=in_pipe < min(left, cap), write=in_pipe > 0)

    def _watch(self, *, read: bool, write: bool) -> None:
        loop = self.loop
        if read != self.reading:
            self.reading = read
            if read:
                loop.add_reader(self.src, self.on_readable)
            else:
                loop.remove_reader(self.src)
        if write != self.writing:
            self.writing = write
            if write:
                loop.add_writer(self.dst, self._move)
            else:
                loop.remove_writer(self.dst)

    # -- the end ----------------------------------------------------------------------------
    def _end(self, failed: int | None) -> None:
        if failed is None:
            self._watch(read=False, write=False)
        else:
            self.close()
        done, self.done = self.done, None
        if done is not None:
            done(failed)

    def close(self) -> None:
        """Stop for good (idempotent); bytes still in the pipe are dropped with it."""
        if self.ended:
            return
        self.ended = True
        self._watch(read=False, write=False)
        self.sock.close()
        os.close(self.dst)
        self.pipes.give_back(self.pr, self.pw, self.in_pipe == 0)

    abort = close


def pump_between(pipes: Pipes, src: asyncio.Transport, dst: asyncio.Transport) -> Pump | None:
    """A pump from ``src``'s socket to ``dst``'s, or None where the plain path must do: no
    splice here, not plain stream sockets, or no descriptors left (EMFILE)."""
    src_fd = can_pump(src)
    dst_fd = can_pump(dst)
    if src_fd < 0 or dst_fd < 0:
        return None
    try:
        return Pump(pipes, src_fd, dst_fd, dst)
    except OSError:
        return None


def can_pump(transport: asyncio.BaseTransport) -> int:
    """The socket descriptor behind ``transport`` when a pump may use it, else -1 (not a
    plain stream socket, already closing, or no splice here). Never under TLS: the socket
    carries ciphertext there, and splicing it would bypass the encryption."""
    if not AVAILABLE or transport.is_closing() or transport.get_extra_info("ssl_object"):
        return -1
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM:
        return -1
    try:
        return int(sock.fileno())
    except (OSError, ValueError):
        return -1

