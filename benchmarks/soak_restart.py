"""Restart with many routes: the time from a new ``hatchway serve`` process's start until every
route has answered 200 once (the issue's goal: < 2 s for 1,000 routes).

The routes are static (settings), so all of them exist once the process listens; the figure
is therefore start-up time plus the time to prove each route works. The proof must not be the
bottleneck: ``CONNECTIONS`` keep-alive connections over raw asyncio streams (no client library
per request) share the users, each retrying a user until it answers 200. Listening is the
first accepted connection, polled every 10 ms.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROXY = "/lw-workspace/proxy/"
CONNECTIONS = 32
POLL = 0.01


@dataclass
class Restart:
    listening_s: float
    served_s: float
    cpu_s: float = 0.0  # the gateway's CPU time (user + system) until every route served


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far: a figure other processes' load barely moves."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _connect(port: int, deadline: float) -> tuple[asyncio.StreamReader,
                                                        asyncio.StreamWriter]:
    while True:
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(POLL)


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
               ) -> int:
    """One keep-alive GET; the status, or -1 when the connection cannot be reused."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = -1
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length < 0:
        return -1
    await reader.readexactly(length)
    return status


async def serve_every_route(port: int, tokens: dict[str, str], started: float,
                            deadline_s: float = 60.0) -> Restart:
    """``started`` is the process's start (monotonic); both figures count from it."""
    deadline = started + deadline_s
    users = list(tokens)
    listening: list[float] = []

    async def worker(mine: list[str]) -> None:
        reader, writer = await _connect(port, deadline)
        listening.append(time.monotonic())
        try:
            for user in mine:
                request = (f"GET {PROXY}small HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           f"Cookie: access_token={tokens[user]}\r\n\r\n").encode()
                while True:
                    try:
                        if await _get(reader, writer, request) == 200:
                            break
                    except (OSError, asyncio.IncompleteReadError, ValueError):
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{user}'s route not served after {deadline_s} s")
                    writer.close()  # a refused answer or a broken connection: start afresh
                    await asyncio.sleep(POLL)
                    reader, writer = await _connect(port, deadline)
        finally:
            writer.close()

    await asyncio.gather(*(worker(users[i::CONNECTIONS]) for i in range(CONNECTIONS)))
    return Restart(min(listening) - started, time.monotonic() - started)


async def restart_times(spawn: Any, stop: Any, port: int, tokens: dict[str, str], runs: int,
                        variants: list[str]) -> dict[str, list[Restart]]:
    """``runs`` cold starts of each variant, interleaved (the machine's load then weighs on
    every variant alike): ``spawn(variant)`` starts the gateway and returns its process,
    ``stop(proc)`` ends it."""
    out: dict[str, list[Restart]] = {v: [] for v in variants}
    for _ in range(runs):
        for variant in variants:
            started = time.monotonic()
            proc = spawn(variant)
            try:
                result = await serve_every_route(port, tokens, started)
                result.cpu_s = cpu_seconds(proc.pid)
            finally:
                await asyncio.to_thread(stop, proc)
            out[variant].append(result)
            print(f"  {variant}: listening after {result.listening_s:.2f} s, every route "
                  f"served after {result.served_s:.2f} s (gateway CPU {result.cpu_s:.2f} s)",
                  flush=True)
    return out


def median(runs: list[Restart]) -> Restart:
    return Restart(statistics.median(r.listening_s for r in runs),
                   statistics.median(r.served_s for r in runs),
                   statistics.median(r.cpu_s for r in runs))
