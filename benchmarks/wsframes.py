"""The few WebSocket (RFC 6455) frame operations the load client and the upstream need.

Both sides of the benchmark must cost less per message than the proxy under test, so they speak
frames directly on an asyncio protocol instead of going through a client/server library (whose
per-message bookkeeping would make the load generator the bottleneck). No extensions, no
fragment reassembly: each frame is handled on its own, which is all an echo needs.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable

from proxy.aiohttp_compat import websocket_mask as compat_websocket_mask

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _unmask_python(mask: bytes, payload: bytes) -> bytes:
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        n, "little")


def _make_unmask() -> Callable[[bytes, bytes], bytes]:
    """aiohttp (already a dependency) ships a C XOR that is ~50x faster than pure Python on 64 KiB;
    it is not public API (proxy.aiohttp_compat finds it), so fall back to the big-integer XOR if
    it moves."""
    websocket_mask = compat_websocket_mask()
    if websocket_mask is None:  # pragma: no cover - depends on aiohttp's internals
        return _unmask_python

    def unmask(mask: bytes, payload: bytes) -> bytes:
        buf = bytearray(payload)
        websocket_mask(mask, buf)
        return bytes(buf)

    return unmask


unmask = _make_unmask()


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value a server answers a Sec-WebSocket-Key with."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None, fin: bool = True) -> bytes:
    """One frame; clients must pass a 4-byte ``mask``, servers must not."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        return head + mask + unmask(mask, payload)  # XOR is its own inverse
    return head + payload


class FrameReader:
    """Splits a byte stream into (first byte, unmasked payload) pairs; partial frames wait."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf + data if self._buf else data
        frames: list[tuple[int, bytes]] = []
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            masked = b1 & 0x80
            if masked:
                head += 4
            end = pos + head + n
            if end > size:
                break
            payload = buf[pos + head : end]
            if masked:
                payload = unmask(buf[pos + head - 4 : pos + head], payload)
            frames.append((b0, payload))
            pos = end
        self._buf = buf[pos:] if pos < size else b""
        return frames
