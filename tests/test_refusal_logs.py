"""A malformed request is the client's mistake: it gets its 400, and the log gets one INFO
line naming the client and the reason (no ERROR, no traceback), at most 20 a minute per
gateway however fast a client sends them, on every listener the gateway opens (the main one,
``ambassador_port``, ``metrics_port``). Raw sockets send the malformed bytes."""

from __future__ import annotations

import asyncio
import logging
import socket
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
# Sent to every listener (issue 21): each got the main listener's 400 there, but an ERROR with
# a traceback on the others.
EVERYWHERE = {
    "space in a header name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    "1 MiB URL": b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "too many headers": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
}
LISTENERS = ["main-fast-path", "main-aiohttp", "ambassador", "metrics"]


async def _send(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _server_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aiohttp.server"]


def _blocking_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` and read the answer, however the server ends the connection: a server
    that answers before reading a 1 MiB request resets it, and the answer is still there to
    read (asyncio streams would raise the reset instead)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # answered and closed before reading it all: read what it said
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return answer
            if not chunk:
                return answer
            answer += chunk


async def _listener_port(start_gateway: Any, listener: str) -> int:
    gw = await start_gateway(fast_path=listener != "main-aiohttp", ambassador_port=0,
                             metrics_port=0)
    port = {"ambassador": gw.server.ambassador_port,
            "metrics": gw.server.metrics_port}.get(listener, gw.server.port)
    assert port is not None
    return int(port)


@pytest.mark.parametrize("listener", LISTENERS)
@pytest.mark.parametrize("kind", sorted(EVERYWHERE))
async def test_every_listener_answers_a_malformed_request_400_with_one_info_line(
        start_gateway: Any, listener: str, kind: str,
        caplog: pytest.LogCaptureFixture) -> None:
    port = await _listener_port(start_gateway, listener)
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    answer = await asyncio.to_thread(_blocking_exchange, port, EVERYWHERE[kind])
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400"
    records = _server_records(caplog)
    assert [(r.levelno, r.exc_info, r.exc_text) for r in records] == [(logging.INFO, None, None)]
    assert records[0].getMessage().startswith("refused a malformed request from 127.0.0.1: 400 ")


@pytest.mark.parametrize("listener", LISTENERS)
async def test_every_listeners_refusal_says_nosniff(start_gateway: Any, listener: str) -> None:
    """aiohttp's 400 quotes the request as text/plain: no browser may read it as a page."""
    port = await _listener_port(start_gateway, listener)
    answer = await asyncio.to_thread(_blocking_exchange, port,
                                     EVERYWHERE["space in a header name"])
    head = answer.partition(b"\r\n\r\n")[0] + b"\r\n"
    assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head


async def test_refusals_on_every_listener_share_one_rate_limit(
        start_gateway: Any, caplog: pytest.LogCaptureFixture) -> None:
    """50 malformed requests to each side listener, and the main one: 20 lines in all."""
    gw = await start_gateway(ambassador_port=0, metrics_port=0)
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    for port in (gw.server.ambassador_port, gw.server.metrics_port, gw.server.port):
        await asyncio.gather(*(_send(port, EVERYWHERE["space in a header name"])
                               for _ in range(50)))
    records = _server_records(caplog)
    assert len(records) == 20 and {r.levelno for r in records} == {logging.INFO}


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
