"""Listening sockets for the gateway app. The CLI and the tests start the gateway the same
way, through ``start``, so what the tests exercise is what ``hatchway serve`` runs."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from aiohttp import web


@dataclass
class Running:
    runner: web.AppRunner
    server: asyncio.base_events.Server

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        await self.runner.cleanup()


async def start(app: web.Application, host: str, port: int, *,
                reuse_port: bool = False) -> Running:
    """Run ``app`` on host:port (0 picks a free port)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    assert runner.server is not None
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        runner.server, host, port, reuse_port=reuse_port or None, backlog=1024,
        family=socket.AF_INET6 if ":" in host else socket.AF_UNSPEC)
    return Running(runner, server)
