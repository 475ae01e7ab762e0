"""Log lines: JSON lines when configured, one structured line per launch and terminate, an
opt-in access log, and never a token or cookie in any line, whoever logged it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from proxy.observe.logs import REDACTED, JsonFormatter, RedactingFilter, configure, redact
from proxy.sessions.devissuer import DevIssuer

from .helpers import DEMO, HATCHWAY, clean_env, eventually, free_port

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture
def captured() -> Any:
    stream = io.StringIO()
    handler = configure("DEBUG", "json", stream)
    yield stream
    logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize("text", [
    f"Authorization: Bearer {TOKEN}", f"Cookie: access_token={TOKEN}; _xsrf=1",
    f"GET /lw-workspace/proxy/lab?token={TOKEN} HTTP/1.1", f"bearer {TOKEN}",
    "set-cookie: session=abcdef123456", f"the token is {TOKEN}."])
def test_credentials_are_redacted_from_text(text: str) -> None:
    out = redact(text)
    assert TOKEN not in out and "abcdef123456" not in out and REDACTED in out


def test_a_json_line_carries_the_extra_fields(captured: io.StringIO) -> None:
    logging.getLogger("hatchway.api").info(
        "launched %r for %s", "Jupyter", "alice",
        extra={"event": "launch", "user": "alice", "option": "Jupyter"})
    line = json.loads(captured.getvalue().strip())
    assert line["message"] == "launched 'Jupyter' for alice"
    assert (line["event"], line["user"], line["option"]) == ("launch", "alice", "Jupyter")
    assert line["level"] == "INFO" and line["logger"] == "hatchway.api"


def test_tokens_in_args_extras_and_tracebacks_are_redacted(captured: io.StringIO) -> None:
    log = logging.getLogger("somewhere.else")
    try:
        raise ValueError(f"bad header Authorization: Bearer {TOKEN}")
    except ValueError:
        log.exception("failed for %s", TOKEN, extra={"headers": {"Cookie": f"a={TOKEN}"}})
    out = captured.getvalue()
    assert TOKEN not in out
    assert json.loads(out.strip())["exception"].startswith("Traceback")


def test_the_text_format_is_the_default() -> None:
    stream = io.StringIO()
    handler = configure("INFO", "text", stream)
    try:
        logging.getLogger("hatchway").info("hello %s", TOKEN)
    finally:
        logging.getLogger().removeHandler(handler)
    assert stream.getvalue().split(" ", 2)[2].startswith("INFO hatchway: hello [redacted]")
    assert isinstance(handler.formatter, logging.Formatter)
    assert not isinstance(handler.formatter, JsonFormatter)
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)


async def test_no_token_or_cookie_reaches_the_servers_log(tmp_path: Path) -> None:
    """``hatchway serve`` with JSON logs, the access log and DEBUG: launch, use, terminate and a
    malformed request, each carrying the token every way a client can send it."""
    port = free_port()
    config = tmp_path / "hatchway.yaml"
    config.write_text(yaml.safe_dump({"log_format": "json", "access_log": True}))
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps({"containers": [DEMO]}))
    state = tmp_path / "state"
    token = DevIssuer(state, issuer="hatchway-dev").mint("alice")
    err = tmp_path / "stderr.txt"
    with err.open("wb") as stderr:
        argv = [*HATCHWAY, "serve", "-c", str(config), "-c", str(hatchery), "--port", str(port),
                "--state-dir", str(state), "--log-level", "DEBUG"]
        proc = subprocess.Popen(argv, cwd=tmp_path, env=clean_env(),  # noqa: ASYNC220
                                stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            async def ready() -> bool:
                try:
                    async with http.get(base + "/lw-workspace/_ready") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False
            await eventually(ready, within=10)
            async with http.get(base + "/lw-workspace/options", headers=bearer) as resp:
                option = (await resp.json())[0]["id"]
            async with http.post(f"{base}/lw-workspace/launch?id={option}",
                                 headers=bearer) as resp:
                assert resp.status == 200
            async def running() -> bool:
                async with http.get(base + "/lw-workspace/status", headers=bearer) as resp:
                    return bool((await resp.json())["status"] == "Running")
            await eventually(running, within=10)
            for headers in (bearer, {"Cookie": f"access_token={token}; other=1"}):
                async with http.get(f"{base}/lw-workspace/proxy/api/status?token={token}",
                                    headers={**headers, "Connection": "close"}) as resp:
                    assert resp.status == 200
            async with http.get(f"{base}/lw-workspace/proxy/files/{token}",  # a token as a path
                                headers=bearer) as resp:
                assert resp.status == 404  # the workspace's answer, logged by the access log
            async with http.get(base + "/lw-workspace/proxy/x", headers={
                    "Authorization": "Bearer not-a-jwt-secret-value"}) as resp:
                assert resp.status == 401
            with socket.create_connection(("127.0.0.1", port)) as raw:  # malformed
                raw.sendall(f"GET /lw-workspace/proxy/ HTTP/1.1\r\nCookie: access_token={token}"
                            f"\r\nBad Header {token}\r\n\r\n".encode())
                raw.recv(4096)
            async with http.post(base + "/lw-workspace/terminate", headers=bearer) as resp:
                assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, proc.wait, 20)
    text = err.read_text()
    assert token not in text and token.split(".")[2] not in text
    assert "not-a-jwt-secret-value" not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) == len(text.splitlines()), "every line is a JSON object"
    events = {line.get("event") for line in lines}
    assert {"launch", "terminate", "access"} <= events
    launch = next(line for line in lines if line.get("event") == "launch")
    assert (launch["user"], launch["option"]) == ("alice", "Demo")
    assert any(line.get("event") == "access" and line["user"] == "alice"
               and line["status"] == 200 for line in lines)
