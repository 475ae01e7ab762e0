"""A started gateway: its listening sockets and what closes them. Its own module so that the
server (which makes it) and the drain (which winds it down) meet here, not in each other."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from ..relay.fast import FastPath


@dataclass
class Running:
    runner: web.AppRunner
    server: asyncio.base_events.Server
    fast_path: FastPath | None = None
    # the ambassador listener (settings.ambassador_port), when there is one
    ambassador: tuple[web.AppRunner, asyncio.base_events.Server] | None = None
    # the metrics listener (settings.metrics_port), when there is one (proxy.observe.metrics)
    metrics: tuple[web.AppRunner, asyncio.base_events.Server] | None = None

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def ambassador_port(self) -> int | None:
        if self.ambassador is None:
            return None
        return int(self.ambassador[1].sockets[0].getsockname()[1])

    @property
    def metrics_port(self) -> int | None:
        if self.metrics is None:
            return None
        name = self.metrics[1].sockets[0].getsockname()
        return None if isinstance(name, str) else int(name[1])  # a worker's: a Unix socket

    async def close(self) -> None:
        self.server.close()
        if self.metrics is not None:
            self.metrics[1].close()
            await self.metrics[0].cleanup()
        if self.ambassador is not None:
            self.ambassador[1].close()
            await self.ambassador[0].cleanup()
        if self.fast_path is not None:
            self.fast_path.close()
        await self.runner.cleanup()
        await self.server.wait_closed()
