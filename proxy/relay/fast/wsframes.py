"""WebSocket message sizes from frame headers alone, for the byte splice.

The splice copies bytes without parsing them; to refuse an oversized message the same way the
aiohttp relay does (close code 1009) it only needs each frame's header: its opcode and declared
payload length. Payload bytes are skipped by count, never copied or inspected, so a chunk in the
middle of a large frame costs one comparison. The size counted is the payload on the wire
(after any permessage-deflate the two ends agreed on; the splice never inflates anything).
"""

from __future__ import annotations

import os

CLOSE_TOO_BIG = 1009
MAX_HEADER = 14  # 2 + 8 (64-bit length) + 4 (mask key)


def close_frame(code: int, *, masked: bool) -> bytes:
    """A close frame carrying ``code``; frames sent to a server (the workspace) must be
    masked (RFC 6455 §5.3), frames sent to a client (the browser) must not be."""
    payload = code.to_bytes(2, "big")
    if not masked:
        return b"\x88\x02" + payload
    key = os.urandom(4)
    return b"\x88\x82" + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class FrameMeter:
    """Follows one direction of a WebSocket and says where the first frame that would make a
    message longer than ``limit`` bytes starts. A message is a data frame plus its
    continuations; a control frame (close, ping, pong) is measured on its own."""

    __slots__ = ("limit", "skip", "head", "message", "data")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.skip = 0  # payload bytes of the current frame still to pass
        self.head = b""  # the start of a frame header split across reads (held back)
        self.message = 0  # payload bytes of the current data message so far
        self.data = False  # a data frame's header has passed (the reader clears it)

    def feed(self, data: bytes | memoryview) -> tuple[bytes | memoryview, bool]:
        """The part of ``data`` that may be forwarded, and whether a frame past it broke the
        limit (then nothing more may be forwarded). A frame header split across reads is
        held back until it is whole, so no header of a refused frame is ever forwarded."""
        skip = self.skip
        n = len(data)
        if skip >= n:  # inside a frame's payload: the common case for large messages
            self.skip = skip - n
            return data, False
        if self.head:
            data = self.head + data
            n = len(data)
            self.head = b""
        i = skip
        limit = self.limit
        while i < n:
            if n - i < 2:
                break
            b0 = data[i]
            b1 = data[i + 1]
            length = b1 & 0x7F
            size = 2 + (4 if b1 & 0x80 else 0)
            if length == 126:
                size += 2
            elif length == 127:
                size += 8
            if n - i < size:
                break
            if length == 126:
                length = int.from_bytes(data[i + 2:i + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[i + 2:i + 10], "big")
            opcode = b0 & 0x0F
            if opcode & 0x08:  # control frame: not part of the message around it
                if length > limit:
                    return data[:i], True
            else:
                total = length if opcode else self.message + length
                if total > limit:
                    return data[:i], True
                self.message = total
                self.data = True
            i += size + length
        else:
            self.skip = i - n
            return data, False
        self.skip = 0
        self.head = bytes(data[i:])  # a copy: ``data`` may be a view of a reused buffer
        return data[:i], False

    def frame(self, head: bytes, min_payload: int) -> int:
        """At a frame boundary, judge the next frame from the bytes ``head`` starts with (up
        to ``MAX_HEADER``): its whole size on the wire when its header is complete, within
        the limit and its payload at least ``min_payload`` (the frame is then counted as
        ``feed`` would count it); 0 when the header is incomplete or the frame is small (not
        counted: ``feed`` will see it); -1 when it breaks the limit."""
        n = len(head)
        if n < 2:
            return 0
        b0 = head[0]
        b1 = head[1]
        length = b1 & 0x7F
        size = 2 + (4 if b1 & 0x80 else 0)
        if length == 126:
            size += 2
        elif length == 127:
            size += 8
        if n < size:
            return 0
        if length == 126:
            length = int.from_bytes(head[2:4], "big")
        elif length == 127:
            length = int.from_bytes(head[2:10], "big")
        opcode = b0 & 0x0F
        if opcode & 0x08:
            total = length
        else:
            total = length if opcode else self.message + length
        if total > self.limit:
            return -1
        if length < min_payload:
            return 0
        if not opcode & 0x08:
            self.message = total
            self.data = True
        return size + length
