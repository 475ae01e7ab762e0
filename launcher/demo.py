"""The built-in demo workspace: a tiny aiohttp app a newcomer can launch with no Jupyter, and
the proxy's tests can aim at (echo WebSocket, streams, SSE, uploads, header mirror).

Run as ``python -m launcher.demo --port P --base-url /lw-workspace/proxy/``. It needs nothing
beyond aiohttp, prints one "ready" line on stdout once it listens, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import html
import os
import signal
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import WSCloseCode, WSMsgType, web

from .clock import REAL, Clock

SUBPROTOCOLS = ("echo.v1", "chat")
_BLOCK = bytes(range(256)) * 256  # 64 KiB of a fixed pattern: downloads are checkable
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pattern(size: int) -> Iterator[bytes]:
    """The bytes ``GET bytes?size=`` sends, block by block, so a test can hash them too."""
    while size > 0:
        chunk = _BLOCK[: min(size, len(_BLOCK))]
        size -= len(chunk)
        yield chunk


@dataclass
class _State:
    """What ``api/status`` reports, like Jupyter's, so the same idle culler reads both; the
    stamps are ``clock``'s (a test moves it to tell activity from a poll)."""

    clock: Clock = REAL
    started: str = ""
    last_activity: str = ""
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)

    def __post_init__(self) -> None:
        self.started = self.last_activity = self.now()

    def now(self) -> str:
        stamp = datetime.fromtimestamp(self.clock.time(), UTC)
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


STATE: web.AppKey[_State] = web.AppKey("state", _State)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hatchway demo workspace</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}}
code{{background:#eee;padding:0 .3em}}#log{{white-space:pre-wrap;background:#f6f6f6;
padding:.5em;min-height:4em}}</style></head>
<body><h1>hatchway demo workspace</h1>
<p>Hello, <strong id="user">{user}</strong>! This page is served by the built-in demo
workspace, reached through the gateway. It received <code>REMOTE_USER: {user}</code>.</p>
<p>WebSocket echo: <input id="msg" value="hello"> <button id="send">send</button></p>
<div id="log"></div>
<script>
const log = (t) => {{ document.getElementById("log").textContent += t + "\\n"; }};
const url = new URL("echo", location.href);
url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(url, ["echo.v1"]);
ws.onopen = () => log("connected (" + ws.protocol + ")");
ws.onmessage = (e) => log("echo: " + e.data);
ws.onclose = (e) => log("closed " + e.code + " " + e.reason);
document.getElementById("send").onclick = () => ws.send(document.getElementById("msg").value);
</script></body></html>
"""


def _int_query(request: web.Request, name: str, default: int, most: int) -> int:
    raw = request.query.get(name, str(default))
    if not raw.isdigit() or int(raw) > most:
        raise web.HTTPBadRequest(text=f"query '{name}' must be an integer 0-{most}, got {raw!r}\n")
    return int(raw)


async def index(request: web.Request) -> web.Response:
    user = html.escape(request.headers.get("REMOTE_USER", "(none)"))
    return web.Response(text=_PAGE.format(user=user), content_type="text/html")


async def echo(request: web.Request) -> web.WebSocketResponse:
    """Echo text and binary; ``close:<code>:<reason>`` closes with that code and reason so
    tests can see close codes survive the proxy."""
    state = request.app[STATE]
    ws = web.WebSocketResponse(protocols=SUBPROTOCOLS, autoping=True, max_msg_size=0)
    await ws.prepare(request)
    state.sockets.add(ws)
    try:
        async for msg in ws:
            state.last_activity = state.now()
            if msg.type == WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    code, _, reason = msg.data[len("close:"):].partition(":")
                    if code.isdigit():
                        await ws.close(code=int(code), message=reason.encode())
                        break
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
    finally:
        state.sockets.discard(ws)
    return ws


async def api_status(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({
        "started": state.started,
        "last_activity": state.last_activity,
        "connections": len(state.sockets),
        "kernels": 0,
    })


async def headers(request: web.Request) -> web.Response:
    """Mirror what arrived, so proxy tests can check header and path handling. ``header_list``
    keeps order and repeats; ``headers`` is the convenient last-one-wins mapping."""
    return web.json_response({
        "method": request.method,
        "path": request.raw_path,
        "headers": dict(request.headers),
        "header_list": [[k, v] for k, v in request.headers.items()],
    })


async def stream(request: web.Request) -> web.StreamResponse:
    n = _int_query(request, "n", 10, 1_000_000)
    size = _int_query(request, "size", 1024, 16 * 1024 * 1024)
    delay = _int_query(request, "delay_ms", 0, 60_000) / 1000
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(n):
        await resp.write((f"{i}:".encode() + b"x" * size)[:size] if size else b"")
        if delay:
            await asyncio.sleep(delay)
    await resp.write_eof()
    return resp


async def sse(request: web.Request) -> web.StreamResponse:
    n = _int_query(request, "n", 5, 100_000)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for i in range(n):
        if i:
            await asyncio.sleep(0.05)
        await resp.write(f"id: {i}\nevent: tick\ndata: {{\"n\": {i}}}\n\n".encode())
    await resp.write_eof()
    return resp


async def download(request: web.Request) -> web.StreamResponse:
    size = _int_query(request, "size", 1024, 1 << 40)
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = size
    await resp.prepare(request)
    for chunk in pattern(size):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def upload(request: web.Request) -> web.Response:
    digest, count = hashlib.sha256(), 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        count += len(chunk)
    return web.json_response({"bytes": count, "sha256": digest.hexdigest()})


def normalize_base(base_url: str) -> str:
    """``lw-workspace/proxy`` → ``/lw-workspace/proxy/``; empty → ``/``."""
    inner = base_url.strip("/")
    return f"/{inner}/" if inner else "/"


def make_app(base_url: str = "/", token: str = "", *, clock: Clock = REAL) -> web.Application:
    """The demo app serving under ``base_url`` (the path the gateway rewrites to). With a
    ``token`` (the gateway's per-workspace secret, ``HATCHWAY_WORKSPACE_TOKEN``) it answers
    only requests that carry it, as Jupyter does with ``JUPYTER_TOKEN``: other local users'
    processes can reach its port, never its contents."""
    base = normalize_base(base_url)
    expected = f"token {token}".encode()

    @web.middleware
    async def only_the_gateway(request: web.Request, handler: _Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.Response(status=403, text="this workspace answers only its gateway\n")
        return await handler(request)

    @web.middleware
    async def track_activity(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path != base + "api/status":  # as Jupyter: polling status is not activity
            state = request.app[STATE]
            state.last_activity = state.now()
        return await handler(request)

    async def close_sockets(app: web.Application) -> None:
        for ws in list(app[STATE].sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"workspace shutting down")

    app = web.Application(middlewares=[only_the_gateway, track_activity] if token
                          else [track_activity])
    app[STATE] = _State(clock)
    app.on_shutdown.append(close_sockets)
    app.router.add_get(base, index)
    if base != "/":

        async def add_slash(request: web.Request) -> web.Response:
            raise web.HTTPFound(base)

        app.router.add_get(base.rstrip("/"), add_slash)
    app.router.add_get(base + "echo", echo)
    app.router.add_get(base + "api/status", api_status)
    app.router.add_route("*", base + "headers", headers)
    app.router.add_get(base + "stream", stream)
    app.router.add_get(base + "sse", sse)
    app.router.add_get(base + "bytes", download)
    app.router.add_post(base + "upload", upload)
    app.router.add_put(base + "upload", upload)
    return app


async def serve(host: str, port: int, base_url: str) -> None:
    """Listen until SIGTERM or SIGINT, then close WebSockets (1001) and exit."""
    token = os.environ.get("HATCHWAY_WORKSPACE_TOKEN", "")
    runner = web.AppRunner(make_app(base_url, token), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=2.0)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = runner.addresses[0][1] if runner.addresses else port
    base = normalize_base(base_url)
    print(f"hatchway demo workspace ready on http://{host}:{bound}{base}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.demo",
                                     description="hatchway's built-in demo workspace")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--base-url", default="/")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, args.base_url))
    except OSError as exc:
        print(f"demo workspace cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
