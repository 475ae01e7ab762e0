"""Log lines for operators: text on a terminal (the default) or one JSON object per line
(``log_format: json``) for a log pipeline; the opt-in access log; and the rule that no token
or cookie ever reaches a log line, whoever wrote the record.

Redaction is a filter on the handler, so it covers every logger, hatchway's, aiohttp's and
libraries', and the JSON fields as well as the message: JWTs (three base64url parts, the first
``eyJ``), ``Authorization`` values, ``Cookie``/``Set-Cookie`` values and ``token``/
``access_token``/``api_key`` query or form values become ``[redacted]``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

REDACTED = "[redacted]"
_SECRETS = (
    # a JWT anywhere (Fence access tokens, dev tokens): header.payload.signature
    re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
    # header values that carry credentials, to the end of the line or quote
    re.compile(r"(?i)((?:authorization|proxy-authorization|cookie|set-cookie)\s*[:=]\s*)"
               r"[^\r\n'\"]+"),
    # name=value pairs named like credentials (query strings, cookies, forms)
    re.compile(r"(?i)((?:access_token|token|api_key|apikey|password|session)=)[^&;\s'\"]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
)
# LogRecord attributes that are the record's own, not extra fields
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


def redact(text: str) -> str:
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Renders the message, then removes credentials from it, its traceback and its extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _RESERVED:
                setattr(record, key, _clean(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every ``extra`` field
    (``event``, ``user``, ``option``, ``reason``…) as its own key."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in body:
                body[key] = value
        if record.exc_text:
            body["exception"] = record.exc_text
        elif record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str, fmt: str = "text", stream: Any = None) -> logging.Handler:
    """The process's one log handler (replacing any), redacting, in ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


ACCESS = logging.getLogger("hatchway.access")


def access_line(*, user: str, method: str, path: str, status: int, bytes_sent: int,
                seconds: float, route: str, via: str) -> None:
    """One access-log line (only when ``access_log`` is on). The path goes without its query
    string: queries carry tokens and file names that are not the operator's to keep."""
    ACCESS.info("%s %s %s %d %d %.3fs", user or "-", method, path.partition("?")[0], status,
                bytes_sent, seconds,
                extra={"event": "access", "user": user, "method": method,
                       "path": path.partition("?")[0], "status": status, "bytes": bytes_sent,
                       "duration_s": round(seconds, 6), "route": route, "via": via})
