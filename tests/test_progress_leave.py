"""A browser leaving ``/progress`` mid-launch (a reload) is ordinary: the next event meets a
closed socket, and the log shows no ERROR and no traceback."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.aiohttp_compat import request_in_progress

from .conftest import GatewayUnderTest
from .helpers import auth, eventually

# launching for about a second, then stopped: an event to write after the browser left
BRIEF = {"name": "Brief", "command": ["sh", "-c", "sleep 1; exit 3"],
         "ready-probe": "/lw-workspace/proxy/api/status"}


async def test_leaving_progress_logs_no_error(start_gateway: Callable[..., Any],
                                              tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps({"containers": [BRIEF]}))
    gw: GatewayUnderTest = await start_gateway(hatchery_config=str(hatchery))
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url("/lw-workspace/options"), headers=auth(gw)) as resp:
            option = (await resp.json())[0]["id"]
        async with http.post(gw.url(f"/lw-workspace/launch?id={option}"),
                             headers=auth(gw)) as resp:
            assert resp.status == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    writer.write(f"GET /lw-workspace/progress HTTP/1.1\r\nHost: x\r\nAuthorization: "
                 f"{auth(gw)['Authorization']}\r\n\r\n".encode())
    await writer.drain()
    assert b" 200 " in await asyncio.wait_for(reader.readline(), 5)
    assert b"starting" in await asyncio.wait_for(reader.readuntil(b"\n\n"), 5) or \
        b"starting" in await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
    assert gw.server.runner.server is not None
    [serving] = [c for c in gw.server.runner.server.connections if request_in_progress(c)]
    writer.transport.abort()  # the browser goes away (reset), mid-stream
    # The workspace stops: its event meets the closed socket, and the handler is done.
    await eventually(lambda: not request_in_progress(serving), within=15)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
