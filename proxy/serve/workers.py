"""Running the gateway: one process, or (``serve --workers N``) N worker processes sharing the
port through SO_REUSEPORT and the parent that keeps them.

The parent serves no user traffic. It starts the workers, starts another in the place of one
that dies (its counts stay in the sums, ``observe.merged``), passes SIGTERM (drain) and Ctrl-C
on to every worker and exits once all of them have. With ``metrics_port`` it is the one
listener Prometheus scrapes: each worker serves its own /metrics on a private Unix socket and
the parent asks them all at each scrape, so the workers' hot path pays nothing more than one
process's does. ``/metrics/workers/<i>`` there answers worker i's own figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..observe.merged import Scrapes
from ..observe.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger("hatchway.workers")
SCRAPE_TIMEOUT_SECONDS = 5.0
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after the 1st, 2nd… crash in a row
STEADY_SECONDS = 60.0  # a worker that ran this long before it died starts a new row
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve_until_signalled(settings: Settings, reuse_port: bool,
                                 app: web.Application | None, metrics_socket: str | None,
                                 ready: Event | None) -> None:
    from .server import start

    if app is None:
        from .app import build_app

        app = build_app(settings)
    try:
        running = await start(app, settings.host, settings.port, reuse_port=reuse_port,
                              metrics_socket=metrics_socket)
    except OSError as exc:  # a port taken: one line, exit status 1, no traceback
        raise SystemExit(f"hatchway: cannot listen: {exc}") from None
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    got: list[int] = []

    def signalled(sig: int) -> None:
        got.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled, sig)
    await stop.wait()
    if got[0] == signal.SIGTERM:  # Kubernetes rolling: drain (proxy.serve.drain); Ctrl-C: stop now
        from .drain import DRAIN, drain

        await drain(running, running.runner.app[DRAIN], settings.drain)
    await running.close()


def run_one(settings: Settings, app: web.Application) -> None:
    """``serve`` with one process: ``app`` (built already, to fail before the banner) serves."""
    _install_uvloop()
    asyncio.run(_serve_until_signalled(settings, False, app, None, None))


def _drain_when_orphaned(parent: int) -> None:
    """Linux: a SIGTERM (the drain) to this worker when its parent dies, since a SIGKILLed
    parent would otherwise leave its workers serving the port with nobody to stop them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def run_worker(settings: Settings, metrics_socket: str, ready: Event, parent: int) -> None:
    """A spawned worker: its own process, log handler and app; ``ready`` once it listens."""
    from ..observe.logs import configure

    _drain_when_orphaned(parent)
    configure(settings.log_level, settings.log_format)
    _install_uvloop()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the handlers are in place
        asyncio.run(_serve_until_signalled(settings, True, None, metrics_socket, ready))


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker ``index``'s settings. A configured Lease identity gets the worker's number:
    workers sharing one identity would each believe they hold the Lease, and all cull."""
    kube = settings.kubernetes
    if settings.backend != "kubernetes" or not kube.identity:
        return settings
    return dataclasses.replace(settings, kubernetes=dataclasses.replace(
        kube, identity=f"{kube.identity}-w{index}"))


@dataclass
class Slot:
    """One worker's place: the process now in it and its metrics socket."""

    index: int
    socket: str
    proc: BaseProcess | None = None
    ready: Event | None = None
    started: float = 0.0
    crashes: int = 0  # in a row, each soon after the start before it


class Supervisor:
    """The parent of ``serve --workers N`` (module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.scrapes = Scrapes()
        self.restarts = 0
        self.scrape_failures: dict[int, int] = {}
        self.stopping: int | None = None  # the signal passed on, once one came
        self.exit_code = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._dir = ""
        self._slots: list[Slot] = []
        self._clients: dict[int, aiohttp.ClientSession] = {}
        self._done: asyncio.Event | None = None

    # -- processes ------------------------------------------------------------------------
    def _start(self, slot: Slot) -> None:
        if self.stopping is not None:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(slot.socket)  # a dead worker's
        slot.ready = self._ctx.Event()
        proc = self._ctx.Process(
            target=run_worker, name=f"hatchway-worker-{slot.index}",
            args=(worker_settings(self.settings, slot.index), slot.socket, slot.ready,
                  os.getpid()))
        proc.start()
        slot.proc, slot.started = proc, loop.time()
        loop.add_reader(proc.sentinel, self._exited, slot)

    def _exited(self, slot: Slot) -> None:
        proc, ready = slot.proc, slot.ready
        assert proc is not None and ready is not None
        loop = asyncio.get_running_loop()
        loop.remove_reader(proc.sentinel)
        proc.join()
        slot.proc = None
        self.scrapes.retire(slot.index)
        code = proc.exitcode
        if self.stopping is not None:
            log.info("worker %d (pid %s) exited (%s)", slot.index, proc.pid, code)
        elif not ready.is_set():  # never listened: its successor would fail alike
            log.error("worker %d (pid %s) exited with %s before it served; stopping",
                      slot.index, proc.pid, code)
            self.exit_code = 1
            self.stop(signal.SIGTERM)
        else:
            if loop.time() - slot.started >= STEADY_SECONDS:
                slot.crashes = 0
            delay = RESTART_DELAYS[min(slot.crashes, len(RESTART_DELAYS) - 1)]
            slot.crashes += 1
            self.restarts += 1
            log.warning("worker %d (pid %s) exited with %s; starting another in %.1f s",
                        slot.index, proc.pid, code, delay)
            loop.call_later(delay, self._start, slot)
        self._check_done()

    def _check_done(self) -> None:
        if self.stopping is not None and self._done is not None \
                and all(s.proc is None for s in self._slots):
            self._done.set()

    def stop(self, sig: int) -> None:
        """Pass ``sig`` on to every worker (SIGTERM: each drains) and start no more."""
        self.stopping = sig
        for slot in self._slots:
            if slot.proc is not None and slot.proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.proc.pid, sig)
        self._check_done()

    def alive(self) -> int:
        return sum(1 for s in self._slots if s.proc is not None and s.ready is not None
                   and s.ready.is_set())

    # -- metrics --------------------------------------------------------------------------
    async def fetch(self, index: int) -> str | None:
        """Worker ``index``'s exposition, None when it does not answer."""
        slot = self._slots[index]
        if slot.proc is None or slot.ready is None or not slot.ready.is_set():
            return None
        try:
            async with self._clients[index].get("http://worker/metrics") as resp:
                if resp.status == 200:
                    return await resp.text()
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        self.scrape_failures[index] = self.scrape_failures.get(index, 0) + 1
        return None

    async def scrape(self) -> None:
        """Ask every worker at once; one that does not answer counts as it last did."""
        asked = [s.proc for s in self._slots]
        texts = await asyncio.gather(*(self.fetch(s.index) for s in self._slots))
        for slot, proc, text in zip(self._slots, asked, texts, strict=True):
            if text is not None and slot.proc is proc:  # not retired meanwhile
                self.scrapes.seen(slot.index, text)

    def _metrics_app(self) -> web.Application:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_ParentCollector(self))

        async def merged(request: web.Request) -> web.Response:
            await self.scrape()
            return web.Response(body=generate_latest(registry),
                                headers={"Content-Type": CONTENT_TYPE})

        async def one(request: web.Request) -> web.Response:
            raw = request.match_info["index"]
            if not raw.isdigit() or int(raw) >= len(self._slots):
                raise web.HTTPNotFound(text=f"no worker {raw}: 0 to {len(self._slots) - 1}")
            text = await self.fetch(int(raw))
            if text is None:
                raise web.HTTPServiceUnavailable(text=f"worker {raw} did not answer")
            return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

        app = web.Application()
        app.router.add_get("/metrics", merged)
        app.router.add_get("/metrics/workers/{index}", one)
        return app

    # -- the whole run --------------------------------------------------------------------
    async def run(self) -> int:
        settings = self.settings
        loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        self._dir = tempfile.mkdtemp(prefix="hatchway-workers-")  # 0700: the parent's alone
        self._slots = [Slot(i, os.path.join(self._dir, f"worker-{i}.sock"))
                       for i in range(settings.workers)]
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_SECONDS)
        for slot in self._slots:  # no keep-alive: a restarted worker's socket is a new one
            self._clients[slot.index] = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=slot.socket, force_close=True),
                timeout=timeout)
        runner: web.AppRunner | None = None
        try:
            if settings.metrics_port is not None:  # bound before any worker: fails first
                runner = web.AppRunner(self._metrics_app(), access_log=None,
                                       handle_signals=False)
                await runner.setup()
                try:
                    await web.TCPSite(runner, settings.metrics_host,
                                      settings.metrics_port).start()
                except OSError as exc:
                    raise SystemExit(f"hatchway: cannot listen on metrics_port: {exc}") from None
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop, sig)
            for slot in self._slots:
                self._start(slot)
            await self._done.wait()
        finally:
            for slot in self._slots:  # only on an error of the parent's own
                if slot.proc is not None and slot.proc.is_alive():
                    slot.proc.terminate()
                    slot.proc.join(10)
            for client in self._clients.values():
                await client.close()
            if runner is not None:
                await runner.cleanup()
            shutil.rmtree(self._dir, ignore_errors=True)
        return self.exit_code


class _ParentCollector(Collector):
    """The merged families of every worker, and the parent's own."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        sup = self.supervisor
        yield from sup.scrapes.collect()
        yield GaugeMetricFamily("hatchway_workers", "Worker processes serving (serve "
                                "--workers)", value=sup.alive())
        yield CounterMetricFamily("hatchway_worker_restarts", "Workers started again after "
                                  "one exited unasked", value=sup.restarts)
        failures = CounterMetricFamily(
            "hatchway_worker_scrape_failures", "Scrapes a worker did not answer (its last "
            "answer counted instead)", labels=["worker"])
        for index, n in sorted(sup.scrape_failures.items()):
            failures.add_metric([str(index)], n)
        yield failures


def run_workers(settings: Settings) -> int:
    """``serve --workers N`` (N > 1): the parent's whole life; its exit status."""
    return asyncio.run(Supervisor(settings).run())
