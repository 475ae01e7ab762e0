"""Listening sockets for the gateway app. The CLI and the tests start the gateway the same
way, through ``start``, so what the tests exercise is what ``hatchway serve`` runs.

In builtin mode the listening protocol is the fast path (proxy.relay.fast): it relays the proxy's
happy path itself and hands every other request, on the same connection, to aiohttp.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from aiohttp import web

from ..aiohttp_compat import use_request_class
from ..gateway import GATEWAY
from ..observe import logfilter, metrics
from ..relay.fallback.handler import CLIENT, stripped_proxy_handler
from ..relay.fast import FastPath
from ..responses import GatewayRequest
from . import wiring
from .running import Running


def _fast_path(app: web.Application, aiohttp_protocol: Callable[[], asyncio.Protocol]
               ) -> FastPath | None:
    """The fast path for a builtin-mode gateway (Envoy mode has no proxy endpoint to speed
    up), unless settings turn it off."""
    gateway = app.get(GATEWAY)
    if gateway is None or gateway.settings.mode != "builtin" or not gateway.settings.fast_path:
        return None
    fast = FastPath(gateway, aiohttp_protocol)
    gateway.fast_path = fast
    fast.start()
    return fast


async def _listen(factory: Callable[[], asyncio.BaseProtocol], host: str, port: int,
                  reuse_port: bool) -> asyncio.base_events.Server:
    return await asyncio.get_running_loop().create_server(
        factory, host, port, reuse_port=reuse_port or None, backlog=1024,
        family=socket.AF_INET6 if ":" in host else socket.AF_UNSPEC)


async def _aiohttp_server(app: web.Application, *, keepalive: float, shutdown_timeout: float,
                          refusals: logfilter.RefusalLogger) -> web.AppRunner:
    """The aiohttp server behind one listener. Every listener's is made here, so a malformed
    request gets one answer on each: aiohttp's precise 400 (nosniff, as every answer of the
    gateway's own), logged as one INFO line within the gateway's one rate limit (``refusals``),
    never an ERROR with a traceback."""
    # keepalive: aiohttp's one timer closes idle connections and heads that never finish alike
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=shutdown_timeout, keepalive_timeout=keepalive,
                           logger=refusals)
    await runner.setup()
    assert runner.server is not None
    # Requests are GatewayRequests (nosniff on the gateway's own answers); read by every
    # protocol made from here on, the fast path's handoffs included.
    use_request_class(runner.server, app, GatewayRequest)
    return runner


async def _side_listener(app: web.Application, host: str, port: int, reuse_port: bool, *,
                         keepalive: float, shutdown_timeout: float,
                         refusals: logfilter.RefusalLogger, unix_path: str | None = None
                         ) -> tuple[web.AppRunner, asyncio.base_events.Server]:
    """A listener of its own for ``app`` beside the gateway's (ambassador, metrics); on the
    Unix socket ``unix_path`` instead of host:port when given."""
    runner = await _aiohttp_server(app, keepalive=keepalive, shutdown_timeout=shutdown_timeout,
                                   refusals=refusals)
    assert runner.server is not None
    if unix_path is not None:
        return runner, await asyncio.get_running_loop().create_unix_server(
            runner.server, unix_path)
    return runner, await _listen(runner.server, host, port, reuse_port)


async def start(app: web.Application, host: str, port: int, *,
                reuse_port: bool = False, metrics_socket: str | None = None) -> Running:
    """Run ``app`` on host:port (0 picks a free port). ``metrics_socket``: a worker of
    ``serve --workers N`` serves /metrics on this Unix socket, for the parent that scrapes
    every worker (``serve.workers``), instead of on ``metrics_port``."""
    gateway = app.get(GATEWAY)
    keepalive = gateway.settings.limits.keepalive_timeout_seconds if gateway else 75.0
    refusals = logfilter.RefusalLogger()  # one budget of refusal lines for every listener
    runner = await _aiohttp_server(app, keepalive=keepalive, shutdown_timeout=5,
                                   refusals=refusals)
    assert runner.server is not None
    fast = _fast_path(app, runner.server)
    factory: Callable[[], asyncio.BaseProtocol] = fast if fast is not None else runner.server
    try:
        listener = await _listen(factory, host, port, reuse_port)
    except BaseException:  # the port is taken: the app's clients and backend close again
        if fast is not None:
            fast.close()
        await runner.cleanup()
        raise
    running = Running(runner, listener, fast)
    wiring.attach_fast_path(app, lambda: fast)  # metrics read its counters at scrape time
    if gateway is None:
        return running
    settings = gateway.settings
    try:
        if settings.ambassador_port is not None:
            running.ambassador = await _side_listener(
                ambassador_app(app), host, settings.ambassador_port, reuse_port,
                keepalive=keepalive, shutdown_timeout=5, refusals=refusals)
        if settings.metrics_port is not None or metrics_socket is not None:
            # /metrics: its own socket, never the user's
            running.metrics = await _side_listener(
                metrics.metrics_app(app[metrics.METRICS]), settings.metrics_host,
                settings.metrics_port or 0, reuse_port, keepalive=keepalive,
                shutdown_timeout=1, refusals=refusals, unix_path=metrics_socket)
    except BaseException:
        await running.close()
        raise
    return running


def ambassador_app(main: web.Application) -> web.Application:
    """The listener the stock revproxy's ``/lw-workspace/proxy/`` location reaches as
    ambassador-service: every path is a workspace path (prefix stripped). aiohttp only, no
    fast path: the revproxy's callers are identified by REMOTE_USER, which only aiohttp
    honours. It shares the main app's gateway and upstream client."""
    app = web.Application(handler_args={"max_field_size": 65536})
    app[GATEWAY] = main[GATEWAY]
    wiring.share_with_ambassador(main, app)

    async def share_client(app: web.Application) -> None:
        app[CLIENT] = main[CLIENT]

    app.on_startup.append(share_client)
    app.router.add_route("*", "/{tail:.*}", stripped_proxy_handler)
    return app
