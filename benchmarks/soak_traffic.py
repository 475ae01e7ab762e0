"""Mixed traffic for the soak: each client holds one WebSocket (a message echoed every second)
and makes plain GETs and 64 KiB downloads in a loop through the gateway; the gateway's RSS and
open descriptors are read from /proc every ``sample_seconds`` (goal: flat after warm-up)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

import aiohttp

from benchmarks.procs import rss_kib

PROXY = "/lw-workspace/proxy/"


@dataclass
class Sample:
    at: float
    rss_mib: float
    fds: int
    requests: int
    failures: int
    ws_messages: int


@dataclass
class Tally:
    requests: int = 0
    failures: int = 0
    ws_messages: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def fail(self, why: BaseException | str) -> None:
        self.failures += 1
        key = why if isinstance(why, str) else type(why).__name__
        self.errors[key] = self.errors.get(key, 0) + 1

    def why(self) -> str:
        return ("(" + ", ".join(f"{k}: {v}" for k, v in self.errors.items()) + ")"
                if self.errors else "")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def client(http: aiohttp.ClientSession, base: str, token: str, tally: Tally,
                 stop: asyncio.Event, *, websocket: bool = True, pause: float = 0.05) -> None:
    """One user's traffic until ``stop``: GETs (every 4th a 64 KiB download) and, with
    ``websocket``, one echo per second over a WebSocket held open throughout."""
    cookies = {"access_token": token}
    header = {"Cookie": f"access_token={token}"}
    ws = None
    if websocket:
        try:
            ws = await http.ws_connect(base + PROXY + "ws", headers=header)
        except Exception as exc:  # noqa: BLE001 - counted, the client carries on with HTTP
            tally.fail(exc)
    last_ws = 0.0
    n = 0
    while not stop.is_set():
        n += 1
        path = "bytes-65536" if n % 4 == 0 else "small"
        try:
            async with http.get(base + PROXY + path, cookies=cookies) as resp:
                await resp.read()
                if resp.status != 200:
                    tally.fail(f"HTTP {resp.status}")
                else:
                    tally.requests += 1
            now = time.monotonic()
            if ws is not None and now - last_ws >= 1.0:
                last_ws = now
                await ws.send_str("ping")
                msg = await ws.receive(timeout=10)
                if msg.type is aiohttp.WSMsgType.TEXT:
                    tally.ws_messages += 1
                else:
                    tally.fail(f"WebSocket {msg.type.name}")
                    ws = None
        except Exception as exc:  # noqa: BLE001 - counted, never fatal
            tally.fail(exc)
            await asyncio.sleep(0.1)
        await asyncio.sleep(pause)  # ~20 requests/s per client at most: a steady load
    if ws is not None:
        await ws.close()


async def soak(base: str, pid: int, tokens: list[str], minutes: float,
               sample_seconds: float) -> tuple[list[Sample], Tally]:
    tally = Tally()
    stop = asyncio.Event()
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        clients = [asyncio.ensure_future(client(http, base, t, tally, stop)) for t in tokens]
        began = time.monotonic()
        end = began + minutes * 60
        while True:
            now = time.monotonic()
            samples.append(Sample(now - began, rss_kib(pid) / 1024, open_fds(pid),
                                  tally.requests, tally.failures, tally.ws_messages))
            print(f"  {samples[-1].at:6.0f} s  RSS {samples[-1].rss_mib:7.1f} MiB  "
                  f"fds {samples[-1].fds:5d}  requests {tally.requests:8d}  "
                  f"failures {tally.failures}", flush=True)
            if now >= end:
                break
            await asyncio.sleep(min(sample_seconds, max(0.0, end - now)))
        stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
    return samples, tally
