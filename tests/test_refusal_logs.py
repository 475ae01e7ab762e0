"""A malformed request is the client's mistake: it gets its 400, and the log gets one INFO
line naming the client and the reason (no ERROR, no traceback), at most 20 a minute per
gateway however fast a client sends them. Raw sockets send the malformed bytes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from .conftest import PROXY

MALFORMED = {
    "header without colon": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    "bad content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "control char in target": b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    "header too long": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    "bad chunk size": (f"POST {PROXY}x HTTP/1.1\r\nHost: x\r\n"
                       "Transfer-Encoding: chunked\r\n\r\nzz\r\n").encode(),
    "CR/LF forging a log line": b"GET / HTTP/1.1\r\nHost: x\r\nA\rERROR forged: b\r\n\r\n",
}
PATHS = [pytest.param(True, id="fast-path"), pytest.param(False, id="aiohttp")]


async def _send(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _server_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aiohttp.server"]


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("kind", sorted(MALFORMED))
async def test_malformed_request_is_one_info_line(start_gateway: Any, fast: bool, kind: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    gw = await start_gateway(fast_path=fast)
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    answer = await _send(gw.server.port, MALFORMED[kind])
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400"
    records = _server_records(caplog)
    assert len(records) == 1
    record = records[0]
    assert (record.levelno, record.exc_info, record.exc_text) == (logging.INFO, None, None)
    line = record.getMessage()
    assert line.startswith("refused a malformed request from 127.0.0.1: 400 ")
    assert line.isprintable() and len(line) < 300


async def test_refusals_are_rate_limited(start_gateway: Any,
                                         caplog: pytest.LogCaptureFixture) -> None:
    gw = await start_gateway()
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    for _ in range(3):
        await asyncio.gather(*(_send(gw.server.port, MALFORMED["header without colon"])
                               for _ in range(20)))
    assert len(_server_records(caplog)) == 20


async def test_refusal_lines_follow_the_logger_level(start_gateway: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    gw = await start_gateway()
    caplog.set_level(logging.WARNING, logger="aiohttp.server")
    await _send(gw.server.port, MALFORMED["bad content-length"])
    assert _server_records(caplog) == []
