"""Chunked framing, followed byte for byte without decoding: the fast path forwards a chunked
body exactly as it arrived, so it only has to know where the body ends and that its framing is
unambiguous (strict size lines, CRLF everywhere). Anything else is a ChunkedError: the relay
then closes the connection rather than let the two sides disagree about message boundaries.

A request's trailers are checked and then dropped (``drop_trailers``): a trailer is a header
that arrives after the gateway rewrote the head, so ``REMOTE_USER: bob`` there would reach the
workspace unchecked (aiohttp's relay drops them too).
"""

from __future__ import annotations

import re

# size [; extensions] CRLF -- no whitespace around the size, no CR/LF/NUL inside the line
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[\x20-\x7e\t]*)?\r\n")
_TRAILER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\x20-\x7e\t\x80-\xff]*\r\n")
MAX_LINE = 4096
MAX_TRAILERS = 16384

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedError(ValueError):
    """The chunked framing is malformed (or a line is absurdly long)."""


class ChunkedScanner:
    """Follows one chunked body. ``feed`` returns the bytes that may be forwarded now (a
    partial size line is held back until it is complete and checked) and, once the body has
    ended, the bytes that came after it (``None`` while it goes on)."""

    __slots__ = ("_state", "_left", "_held", "_trailers", "_drop_trailers")

    def __init__(self, *, drop_trailers: bool = False) -> None:
        self._state = _SIZE
        self._left = 0
        self._held = b""
        self._trailers = 0
        self._drop_trailers = drop_trailers

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        if self._held:
            data = self._held + data
            self._held = b""
        pos = 0
        n = len(data)
        state = self._state
        # with drop_trailers, where this call's trailer section starts (forwarded: data[:cut])
        cut = 0 if state == _TRAILER else -1
        while pos < n:
            if state == _DATA:
                take = min(self._left, n - pos)
                pos += take
                self._left -= take
                if self._left == 0:
                    state = _DATA_END
            elif state == _DATA_END:
                if n - pos < 2:
                    if data[pos:] != b"\r":
                        raise ChunkedError("chunk data not followed by CRLF")
                    break
                if data[pos:pos + 2] != b"\r\n":
                    raise ChunkedError("chunk data not followed by CRLF")
                pos += 2
                state = _SIZE
            elif state == _SIZE:
                end = data.find(b"\n", pos, pos + MAX_LINE)
                if end < 0:
                    if n - pos >= MAX_LINE:
                        raise ChunkedError("chunk size line too long")
                    break
                match = _SIZE_LINE.fullmatch(data, pos, end + 1)
                if match is None:
                    raise ChunkedError("malformed chunk size line")
                size = int(match.group(1), 16)
                pos = end + 1
                if size:
                    self._left = size
                    state = _DATA
                else:
                    state = _TRAILER
                    cut = pos
            else:  # _TRAILER: header lines until an empty line
                end = data.find(b"\n", pos, pos + MAX_LINE)
                if end < 0:
                    if n - pos >= MAX_LINE:
                        raise ChunkedError("trailer line too long")
                    break
                line_end = end + 1
                if line_end - pos == 2:
                    if data[pos] != 0x0D:  # a bare LF
                        raise ChunkedError("malformed end of chunked body")
                    self._state = _DONE
                    if self._drop_trailers and pos > cut:
                        return data[:cut] + b"\r\n", data[line_end:]
                    return data[:line_end], data[line_end:]
                self._trailers += line_end - pos
                if (self._trailers > MAX_TRAILERS
                        or _TRAILER_LINE.fullmatch(data, pos, line_end) is None):
                    raise ChunkedError("malformed trailer")
                pos = line_end
        self._state = state
        if pos < n:
            self._held = data[pos:]
        if self._drop_trailers and cut >= 0:
            return data[:cut], None
        return (data[:pos], None) if pos < n else (data, None)
