"""kmock's Kubernetes emulator with the API-server behaviours hatchway's watches rely on: the
tests' API server for **fault injection only** (outages, dropped, held and stalled watches,
injected 5xx and 409 storms), what a real one cannot be made to do on cue. API semantics,
RBAC and admission are tested on the real kube-apiserver (tests/cluster/); the soak
(benchmarks/) runs here too.

kmock 0.8 serves create/read/list/patch/delete and streams watch events, but (measured here)
it lacks what a reflector is built on. This subclass adds exactly those, on the server side, so
the real ``kubernetes_asyncio`` client is used unchanged:

* ``?watch=True`` (what the Python client sends) is a watch, not only ``?watch=true``;
* ``labelSelector`` and ``fieldSelector`` filter lists and watches (equality, inequality,
  ``in``/``notin`` and existence, as the API server parses them);
* every write stamps ``metadata.resourceVersion`` from one counter (plus ``uid``, ``namespace``
  and ``creationTimestamp`` on create); lists carry the collection's resourceVersion;
* a watch resumes *after* the resourceVersion it is given, replaying a bounded event history,
  and answers an ``ERROR`` event with code 410 (``Expired``) when that version was compacted
  away — the same as etcd compaction does to a real API server;
* ``timeoutSeconds`` ends a watch, and tests can drop every open watch at once
  (``drop_watches``), hold new ones back (``hold_watches``), end all of them while the server
  goes down (``close_watches``) and compact the history (``compact``) to force 410s;
* a replace (PUT) is served as an update, and an update or patch that carries
  ``metadata.resourceVersion`` is refused with 409 unless that version is current (the
  compare-and-swap a Lease is built on; ``coordination.k8s.io/v1`` Leases are served);
* deleting a Pod with a grace period only marks it (``deletionTimestamp``), as the API server
  does; the kubelet removes it for good with ``gracePeriodSeconds=0``.

``ApiServer`` serves it over HTTP on 127.0.0.1 and can go away and come back on the same port;
``write_kubeconfig`` points a client at it. The tests (tests/k8s/conftest.py) and the soak
(benchmarks/soak_k8s.py) both start it through these.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Self

import aiohttp.web
import attrs
import kmock
import yaml
from kmock import Bus

RESOURCES = (
    "v1/pods", "v1/services", "v1/events", "v1/persistentvolumeclaims",
    "discovery.k8s.io/v1/endpointslices", "coordination.k8s.io/v1/leases",
)
_MUTATIONS = (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)
_KINDS = {"pods": "Pod", "services": "Service", "events": "Event",
          "persistentvolumeclaims": "PersistentVolumeClaim", "endpointslices": "EndpointSlice",
          "leases": "Lease"}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rv_of(obj: Mapping[str, Any]) -> int:
    return int(obj.get("metadata", {}).get("resourceVersion") or 0)


class _Selector:
    """A label or field selector, as ``k8s.io/apimachinery/pkg/labels`` reads one."""

    _SET = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
    _CMP = re.compile(r"^\s*([\w./-]+)\s*(==|=|!=)\s*([\w./@:-]*)\s*$")

    def __init__(self, text: str, *, fields: bool) -> None:
        self.fields = fields
        self.terms: list[tuple[str, str, frozenset[str]]] = []
        for part in re.split(r",(?![^(]*\))", text or ""):
            if not part.strip():
                continue
            if m := self._CMP.match(part):
                op = "!=" if m[2] == "!=" else "="
                self.terms.append((m[1], op, frozenset([m[3]])))
            elif (m := self._SET.match(part)) and not fields:
                values = frozenset(v.strip() for v in (m[4] or "").split(",") if v.strip())
                op = m[3] or ("!exists" if m[1] else "exists")
                self.terms.append((m[2], op, values))
            else:
                raise ValueError(f"unable to parse requirement: {part!r}")

    def _value(self, obj: Mapping[str, Any], key: str) -> str | None:
        if not self.fields:
            return (obj.get("metadata", {}).get("labels") or {}).get(key)
        node: Any = obj
        for step in key.split("."):
            node = node.get(step) if isinstance(node, Mapping) else None
        return None if node is None else str(node)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for key, op, values in self.terms:
            value = self._value(obj, key)
            if op == "=" and value not in values:
                return False
            if op == "!=" and value in values:
                return False
            if op == "in" and value not in values:
                return False
            if op == "notin" and value in values:
                return False
            if op == "exists" and value is None:
                return False
            if op == "!exists" and value is not None:
                return False
        return True


class _StampingBus(Bus[Any]):
    """kmock's per-resource event bus; each event is stamped and recorded on its way in."""

    record: Callable[[Any], Any]

    async def put(self, *items: Any) -> None:
        await super().put(*(self.record(item) for item in items))


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    history_limit: int = 2000
    _rv: int = attrs.field(default=0, init=False)
    _write_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    _history: dict[Any, collections.deque[tuple[int, dict[str, Any]]]] = attrs.field(
        factory=dict, init=False)
    _compacted: dict[Any, int] = attrs.field(factory=dict, init=False)
    _drops: set[asyncio.Event] = attrs.field(factory=set, init=False)
    _current_resource: Any = attrs.field(default=None, init=False)
    _watch_gate: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _closing: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = collections.defaultdict(self._new_bus)
        for name in RESOURCES:
            self.resources[name] = {}
        self._watch_gate.set()

    # -- test controls -------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def open_watches(self) -> int:
        return len(self._drops)

    def drop_watches(self) -> None:
        """End every open watch stream, as an API server restart or a load balancer would."""
        for drop in list(self._drops):
            drop.set()

    def compact(self, advance: int = 0) -> None:
        """Forget the event history (etcd compaction): older resourceVersions now get 410.
        ``advance`` first moves the revision on, as writes to other resources do in etcd,
        so even a watcher that saw every event here holds a version now too old."""
        self._rv += advance
        for resource in list(self._history):
            self._history[resource].clear()
        for resource in self._get_resources():
            self._compacted[resource] = self._rv

    def close_watches(self) -> None:
        """End every watch, open or arriving, until ``reopen_watches`` (a server going down
        must not wait for watches that reconnect while it stops)."""
        self._closing.set()
        self.drop_watches()

    def reopen_watches(self) -> None:
        self._closing.clear()

    def hold_watches(self) -> None:
        """New watch requests wait (as behind a slow load balancer) until released."""
        self._watch_gate.clear()

    def release_watches(self) -> None:
        self._watch_gate.set()

    def items(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The live objects of a resource, for assertions."""
        return [obj.raw for (res, ns, _), obj in list(self.objects.items())
                if res.plural == plural and (namespace is None or ns == namespace)
                and not obj.deleted]

    def sent(self, plural: str) -> list[dict[str, Any]]:
        """The bodies of the creates of a resource, as the client sent them (before any
        stamping): the real request, for tests comparing whole objects."""
        return [json.loads(r.body) for r in list(self)
                if r.action == kmock.action.CREATE and r.resource is not None
                and r.resource.plural == plural]

    # -- write path: stamping, history, graceful deletion ---------------------------------

    def _new_bus(self) -> _StampingBus:
        bus = _StampingBus()
        bus.record = self._record
        return bus

    def _record(self, event: dict[str, Any]) -> dict[str, Any]:
        event = {"type": event["type"], "object": copy.deepcopy(event["object"])}
        event["object"].setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        resource = self._current_resource
        log = self._history.setdefault(resource, collections.deque(maxlen=self.history_limit))
        if log.maxlen and len(log) == log.maxlen:
            self._compacted[resource] = log[0][0]
        log.append((self._rv, event))
        return event

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        watch = str(request.params.get("watch", "")).lower() in ("true", "1")
        if request.resource is not None and watch and request.action != kmock.action.WATCH:
            # kmock matches reactions against its own request log, by identity
            at = next(i for i in range(len(self._requests) - 1, -1, -1)
                      if self._requests[i] is request)
            request = self._requests[at] = attrs.evolve(request, action=kmock.action.WATCH)
        if (request.resource is not None and request.name is not None
                and request.method == "PUT" and request.action != kmock.action.UPDATE):
            # a replace (PUT), which kmock does not know: an update of every field sent
            at = next(i for i in range(len(self._requests) - 1, -1, -1)
                      if self._requests[i] is request)
            request = self._requests[at] = attrs.evolve(request, action=kmock.action.UPDATE)
        if request.resource is None or request.action not in _MUTATIONS:
            return await super()._handle(request)
        async with self._write_lock:
            stale = self._stale(request)
            if stale is not None:
                return stale
            self._rv += 1
            self._current_resource = request.resource
            if isinstance(request.data, dict) and request.action != kmock.action.DELETE:
                meta = request.data.setdefault("metadata", {})
                meta["resourceVersion"] = str(self._rv)
                if request.action == kmock.action.CREATE:
                    meta.setdefault("namespace", request.namespace)
                    meta.setdefault("uid", str(uuid.uuid4()))
                    meta.setdefault("creationTimestamp", _now())
                    request.data.setdefault("kind", _KINDS.get(request.resource.plural or ""))
            if request.action == kmock.action.DELETE and request.resource.plural == "pods":
                graceful = await self._mark_deleting(request)
                if graceful is not None:
                    return graceful
            return await super()._handle(request)

    def _stale(self, request: kmock.Request) -> aiohttp.web.Response | None:
        """A replace or patch carrying ``metadata.resourceVersion`` applies only to that
        version (optimistic concurrency): otherwise 409 Conflict, as the API server answers."""
        if request.action != kmock.action.UPDATE or not isinstance(request.data, dict):
            return None
        asked = str((request.data.get("metadata") or {}).get("resourceVersion") or "")
        key = (request.resource, request.namespace, request.name)
        if not asked or key not in self.objects or self.objects[key].deleted:
            return None
        obj = self.objects[key]
        current = str(obj.get("metadata", {}).get("resourceVersion") or "")
        if asked == current:
            return None
        return aiohttp.web.json_response({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
            "code": 409, "message": f"the object has been modified ({asked} != {current})"},
            status=409)

    async def _mark_deleting(self, request: kmock.Request) -> aiohttp.web.Response | None:
        """A Pod deleted with a grace period is only marked; its kubelet finishes the job."""
        body = request.data if isinstance(request.data, dict) else {}
        grace = request.params.get("gracePeriodSeconds", body.get("gracePeriodSeconds", 30))
        key = (request.resource, request.namespace, request.name)
        if int(grace) <= 0 or key not in self.objects or self.objects[key].deleted:
            return None
        obj = self.objects[key]
        if not obj.get("metadata", {}).get("deletionTimestamp"):
            obj.patch({"metadata": {"deletionTimestamp": _now(),
                                    "deletionGracePeriodSeconds": int(grace),
                                    "resourceVersion": str(self._rv)}})
            await self._buses[request.resource].put({"type": "MODIFIED", "object": obj.raw})
        return aiohttp.web.json_response(obj.raw)

    # -- read path: selectors, resourceVersions, resumable watches ------------------------

    def _selected(self, request: kmock.Request) -> Callable[[Mapping[str, Any]], bool]:
        labels = _Selector(request.params.get("labelSelector", ""), fields=False)
        fields = _Selector(request.params.get("fieldSelector", ""), fields=True)

        def check(obj: Mapping[str, Any]) -> bool:
            meta = obj.get("metadata", {})
            if request.namespace is not None and meta.get("namespace") != request.namespace:
                return False
            if request.name is not None and meta.get("name") != request.name:
                return False
            return labels.matches(obj) and fields.matches(obj)
        return check

    def _snapshot(self, request: kmock.Request) -> list[dict[str, Any]]:
        check = self._selected(request)
        return [obj.raw for (res, _, _), obj in list(self.objects.items())
                if res == request.resource and not obj.deleted and check(obj.raw)]

    async def _serve_list(self, request: kmock.Request) -> dict[str, Any]:
        if request.resource not in self._get_resources():
            raise kmock.KubernetesResourceNotFoundError()
        async with self._write_lock:
            items = self._snapshot(request)
            rv = self._rv
        kind = _KINDS.get(request.resource.plural or "", "Object") + "List"
        return {"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": str(rv)},
                "items": items}

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        await self._first(self._watch_gate.wait(), self._closing.wait())
        yield b""  # headers now (a quiet watch is still a live watch); never yield nothing:
        if self._closing.is_set():  # kmock would disable a stream that yields nothing
            return
        assert request.resource is not None
        check = self._selected(request)
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        bus = self._buses[request.resource]
        mark = await bus.mark()
        drop = asyncio.Event()
        self._drops.add(drop)
        try:
            async with self._write_lock:
                since, replay = self._replay(request, check)
            for event in replay:
                yield event
            if since < 0:
                return
            stream = bus.stream(since=mark)
            while True:
                event = await self._next(stream, drop, deadline)
                if event is None:
                    return
                if _rv_of(event["object"]) > since and check(event["object"]):
                    yield event
        finally:
            self._drops.discard(drop)
            await bus.unmark(mark)

    def _replay(self, request: kmock.Request, check: Callable[[Mapping[str, Any]], bool]
                ) -> tuple[int, list[dict[str, Any]]]:
        """What a watch starts with: every object (no version given), the history after the
        given version, or one 410 ERROR event (version compacted away; ``since`` is -1)."""
        asked = str(request.params.get("resourceVersion") or "")
        if asked in ("", "0"):
            return self._rv, [{"type": "ADDED", "object": obj} for obj in self._snapshot(request)]
        since = int(asked)
        if since < self._compacted.get(request.resource, 0):
            return -1, [{"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": f"too old resource version: {since} "
                           f"({self._compacted[request.resource]})",
                "reason": "Expired", "code": 410}}]
        log = self._history.get(request.resource, ())
        events = [event for rv, event in log if rv > since and check(event["object"])]
        return max(since, self._rv), events

    @staticmethod
    async def _first(*waits: Any, within: float | None = None) -> set[asyncio.Future[Any]]:
        """Await whichever finishes first; cancel the rest."""
        futures = [asyncio.ensure_future(w) for w in waits]
        done, pending = await asyncio.wait(futures, timeout=within,
                                           return_when=asyncio.FIRST_COMPLETED)
        for future in pending:
            future.cancel()
        return done

    async def _next(self, stream: AsyncIterator[Any], drop: asyncio.Event,
                    deadline: float | None) -> Any | None:
        loop = asyncio.get_running_loop()
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        nxt = asyncio.ensure_future(anext(stream))
        done = await self._first(nxt, drop.wait(), self._closing.wait(), within=remaining)
        return nxt.result() if nxt in done else None


class ApiServer:
    """The emulator served over HTTP; ``stop()``/``start()`` take the API server away (its
    listening socket closed, every watch ended) and bring it back on the same port, keeping
    every object. ``port`` None lets the first start pick one."""

    def __init__(self, port: int | None = None) -> None:
        self.emulator = Emulator()
        self._server: kmock.Server | None = None
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.emulator.reopen_watches()
        self._server = kmock.Server(self.emulator, port=self.port)
        await self._server.__aenter__()
        self.port = self._server.port

    async def stop(self) -> None:
        self.emulator.close_watches()
        if self._server is not None:
            server, self._server = self._server, None
            await server.__aexit__(None, None, None)

    async def __aenter__(self) -> Self:
        await self.emulator.__aenter__()
        try:
            await self.start()
        except BaseException:
            await self.emulator.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.stop()
        finally:
            await self.emulator.__aexit__(*exc)


def write_kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig whose one context is the API server at ``url`` (the token is not checked)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "hatchway", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator",
                                                       "user": "hatchway"}}],
    }))
    return path
