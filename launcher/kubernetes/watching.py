"""A reflector: one resource's objects in one namespace, kept current by list-then-watch.

The discipline KubeSpawner's reflectors lacked (they could stop silently):

* list, then watch from the list's resourceVersion, so no change between the two is missed;
* a watch that ends (server timeout, dropped connection) resumes from the last version seen;
* 410 Gone (the version was compacted away) or any error → re-list, with exponential backoff
  and jitter after errors, so a sick API server is not hammered by every replica at once; the
  backoff ends early once any other call of this replica's client gets an answer (the API
  server is back: re-list now, not up to ``backoff_max_seconds`` later);
* a watch silent past its server timeout is a stalled connection: it is cut (socket read
  timeout) and re-listed;
* a full re-list every ``relist_seconds`` heals anything a watch may ever have missed;
* while the API server is unreachable the cache is kept as it was: routes keep serving;
* ``health()`` says which of this is happening, for ``/_status``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from launcher.errors import BackendError

from .client import Gone, KubeClient
from .config import KubeSettings

log = logging.getLogger("hatchway.kubernetes")
STARTING, OK, STALE, DOWN = "starting", "ok", "stale", "down"
Listener = Callable[[str | None], None]  # a changed object's name; None after a re-list
Farewell = Callable[[dict[str, Any]], None]  # a deleted object, as the DELETED event had it


class Reflector:
    def __init__(self, client: KubeClient, kind: str, cfg: KubeSettings, *,
                 label_selector: str = "", on_change: Listener | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.kind, self.cfg = client, kind, cfg
        self.label_selector = label_selector
        self.cache: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self._listeners: list[Listener] = [on_change] if on_change else []
        self._farewells: list[Farewell] = []
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._state, self._error = STARTING, ""
        self._last_contact = self._last_event = clock()
        self.lists = self.gone = self.errors = 0
        self.watches = 0  # watch requests made (a server ending one makes the next)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def subscribe_deleted(self, farewell: Farewell) -> None:
        """``farewell`` gets each object a DELETED event removes, in its last state (the
        cache no longer has it then)."""
        self._farewells.append(farewell)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"reflector-{self.kind}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _notify(self, name: str | None) -> None:
        for listener in self._listeners:
            try:
                listener(name)
            except Exception:  # a listener's bug must not stop the watch
                log.exception("route update for %s %s failed", self.kind, name)

    async def _run(self) -> None:
        backoff = self.cfg.retry_backoff_seconds
        while True:
            try:
                version = await self._list()
                backoff = self.cfg.retry_backoff_seconds
                relist_at = self._clock() + self.cfg.relist_seconds
                while (left := relist_at - self._clock()) > 0:
                    began = self._clock()
                    version = await self._watch(version, max(1, min(self.cfg.watch_seconds,
                                                                    int(left) + 1)))
                    if self._clock() - began < 1.0:  # a server closing at once: don't spin
                        await asyncio.sleep(self.cfg.retry_backoff_seconds)
            except Gone as exc:
                self.gone += 1
                log.info("%s watch expired (%s): re-listing", self.kind, exc)
                await asyncio.sleep(self.cfg.retry_backoff_seconds * random.random())
            except asyncio.CancelledError:
                raise
            except (BackendError, OSError, TimeoutError, ValueError) as exc:
                self.errors += 1
                self._state, self._error = DOWN, str(exc) or type(exc).__name__
                log.warning("%s watch failed (%s): re-listing in %.1fs", self.kind,
                            self._error, backoff)
                await self.client.until_answered(self._jittered(backoff))
                backoff = min(backoff * 2, self.cfg.backoff_max_seconds)
            except Exception as exc:  # aiohttp's payload errors and the like
                self.errors += 1
                self._state, self._error = DOWN, repr(exc)
                log.exception("%s watch failed: re-listing in %.1fs", self.kind, backoff)
                await self.client.until_answered(self._jittered(backoff))
                backoff = min(backoff * 2, self.cfg.backoff_max_seconds)

    def _jittered(self, backoff: float) -> float:
        """``backoff`` ±50 %, so replicas spread out, never past ``backoff_max_seconds``: the wait
        after a long outage is what bounds recovery once the API server is back."""
        return min(self.cfg.backoff_max_seconds, backoff * (0.5 + random.random()))

    async def _list(self) -> str:
        body = await self.client.list(self.kind, label_selector=self.label_selector)
        self.cache = {item["metadata"]["name"]: item for item in body.get("items") or []}
        self.lists += 1
        self._contact(event=True)
        self.synced.set()
        self._notify(None)
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, version: str, seconds: int) -> str:
        self.watches += 1
        async for event in self.client.watch(self.kind, version, timeout_seconds=seconds,
                                             label_selector=self.label_selector):
            obj = event.get("object") or {}
            meta = obj.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            kind = event.get("type")
            if kind == "BOOKMARK":
                self._contact()
                continue
            name = meta.get("name")
            if not name:
                continue
            if kind == "DELETED":
                self.cache.pop(name, None)
                for farewell in self._farewells:
                    farewell(obj)
            elif kind in ("ADDED", "MODIFIED"):
                self.cache[name] = obj
            else:
                continue
            self._contact(event=True)
            self._notify(name)
        self._contact()
        return version

    def _contact(self, event: bool = False) -> None:
        self._state, self._error = OK, ""
        self._last_contact = self._clock()
        if event:
            self._last_event = self._last_contact

    @property
    def state(self) -> str:
        if self._task is not None and self._task.done():
            return DOWN
        if self._state == OK and self._clock() - self._last_contact > (
                self.cfg.watch_seconds + 2 * self.cfg.watch_stall_seconds):
            return STALE  # no word from the server for longer than a watch may last
        return self._state

    @property
    def alive(self) -> bool:
        """False only when the reflector itself has died: a restart would fix that, an
        unreachable API server it would not."""
        return self._task is None or not self._task.done()

    def health(self) -> dict[str, Any]:
        now = self._clock()
        body: dict[str, Any] = {
            "state": self.state, "objects": len(self.cache),
            "last_event_age_s": round(now - self._last_event, 3),
            "relists": max(0, self.lists - 1), "expired": self.gone, "errors": self.errors,
        }
        if self._error:
            body["last_error"] = self._error
        return body
