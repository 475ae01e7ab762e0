"""Malformed requests are the client's fault, not an error of the gateway's: log them as one
short INFO line, a bounded number per minute.

aiohttp logs every request it cannot parse as ERROR "Error handling request" with a full
traceback (about 3 KB); one client sending junk in a loop wrote 1.6 MB/s of them. The aiohttp
servers of one gateway's listeners (all of them: ``proxy.serve.server``) log through its one
``RefusalLogger`` (a child of ``aiohttp.server``, so handlers and levels are unchanged), which
turns those records (the exception is an ``HttpProcessingError``: bad request line, header,
framing, too long) into one line naming the client and the reason, and drops them past
``per_minute`` in a minute, saying in the next line how many were dropped. Errors of the
gateway itself (any other exception) are left as they are.
"""

from __future__ import annotations

import logging
import time

from aiohttp.http_exceptions import HttpProcessingError

AIOHTTP_SERVER_LOGGER = "aiohttp.server"


class RefusalFilter(logging.Filter):
    """Demotes and rate-limits aiohttp's records of malformed requests."""

    def __init__(self, logger: logging.Logger, per_minute: int) -> None:
        super().__init__()
        self.logger = logger
        self.per_minute = per_minute
        self._window = 0.0
        self._logged = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        if now - self._window >= 60.0:
            self._window, self._logged = now, 0
        if self._logged >= self.per_minute:
            self._dropped += 1
            return False
        if not self.logger.isEnabledFor(logging.INFO):
            return False
        self._logged += 1
        client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        text = " ".join(str(exc.message or type(exc).__name__).split())[:200]
        reason = "".join(c if c.isprintable() else "?" for c in text)  # quotes client bytes
        dropped, self._dropped = self._dropped, 0
        record.msg = "refused a malformed request from %s: %d %s%s"
        record.args = (client, exc.code, reason,
                       f" ({dropped} more not logged)" if dropped else "")
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info = record.exc_text = None
        return True


class RefusalLogger(logging.Logger):
    """The logger one gateway's aiohttp server writes to (``AppRunner(logger=...)``): records
    named ``aiohttp.server`` and handled by that logger's handlers and levels, with refusals
    demoted and counted per gateway (no state shared between servers in one process)."""

    def __init__(self, per_minute: int = 20) -> None:
        super().__init__(AIOHTTP_SERVER_LOGGER)
        self.parent = logging.getLogger(AIOHTTP_SERVER_LOGGER)
        self.addFilter(RefusalFilter(self, per_minute))
