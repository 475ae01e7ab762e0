"""Prometheus metrics, served on their own listener (``metrics_port``), never under the user
prefix: what the gateway relays and refuses, its WebSockets, route table, watches, launches,
terminations and culls, and the services it calls.

Two kinds of source, so the hot path pays nearly nothing:

* the fast path keeps plain ``int`` attributes on its ``FastPath`` object, incremented inline,
  and bytes each way and time to first byte in a ``observe.traffic.Traffic`` (ints, and a
  fixed-bucket histogram as a list of counts); ``GatewayCollector`` reads them, the route
  table's size and the watches' health only when Prometheus scrapes;
* the aiohttp path (every refusal, every handed-off request, the API) updates
  prometheus-client metrics in one middleware; it already costs tens of microseconds per
  request, so a counter increment there is noise. Its bytes and time to first byte go to a
  ``Traffic`` of its own, so both paths export one family each with a ``path`` label.

Every gateway has its own ``CollectorRegistry``: two gateways in one process (the tests) never
share or collide on a metric.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sized
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..responses import RelayedResponse
from .traffic import TTFB_BUCKETS, Traffic

if TYPE_CHECKING:
    from launcher.routes import RouteTable

    from ..gateway import Gateway

log = logging.getLogger("hatchway.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The first segment after the proxy prefix, for the path-family label; anything else is
# "other", so a client's made-up paths cannot grow the label set.
FAMILIES = frozenset({"api", "lab", "tree", "notebooks", "static", "files", "terminals",
                      "kernelspecs", "nbextensions", "custom", "edit", "view", "rstudio",
                      "p", "s", "session", "favicon.ico", "login", "logout"})
API_FAMILIES = ("kernels", "contents", "sessions", "terminals", "status", "events")
LATENCY_BUCKETS = TTFB_BUCKETS
LAUNCH_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 900)


class FastCounters(Protocol):
    """What the collector reads of the fast path (``proxy.relay.fast.FastPath``) at scrape time;
    declared here so metrics, which the relay feeds, import nothing of the relay."""

    relayed: int
    handed_off: int
    n_failed: int
    n_websockets: int
    traffic: Traffic

    @property
    def splices(self) -> Sized: ...

    @property
    def fronts(self) -> Sized: ...


def path_family(path: str, proxy_prefix: str) -> str:
    """``api/kernels``, ``lab``, ``static``… of a proxied path: bounded, for a label."""
    rest = path[len(proxy_prefix):] if path.startswith(proxy_prefix) else ""
    first, _, more = rest.partition("/")
    if first == "api":
        second = more.partition("/")[0]
        return f"api/{second}" if second in API_FAMILIES else "api"
    if not first:
        return "root"
    return first if first in FAMILIES else "other"


def launch_failure_cause(text: str) -> str:
    """A launch failure's words (the backend's, or the pod's status) as a bounded cause."""
    low = text.lower()
    if "imagepull" in low or "errimage" in low or "invalidimagename" in low:
        return "image_pull"
    if "crashloop" in low:
        return "crash_loop"
    if "cannot be scheduled" in low or "unschedulable" in low:
        return "unschedulable"
    if "quota" in low:
        return "quota"
    if "exited with code" in low or "stopped" in low:
        return "exited"
    if "timed out" in low or "timeout" in low:
        return "timeout"
    return "other"


class Metrics:
    """One gateway's metrics and the registry Prometheus scrapes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "hatchway_proxy_requests", "Workspace proxy requests answered on the aiohttp path "
            "(every refusal, and what the fast path hands over), by outcome and path family",
            ["outcome", "family"], registry=r)
        # the aiohttp relay's bytes and time to first byte (GatewayCollector exports them)
        self.aiohttp_traffic = Traffic()
        self.websockets = Gauge("hatchway_aiohttp_websockets_open",
                                "WebSockets open on the aiohttp relay", registry=r)
        self.launches = Counter("hatchway_launches", "Workspace launches accepted, by option",
                                ["option"], registry=r)
        self.launch_failures = Counter(
            "hatchway_launch_failures", "Launches that failed, by cause", ["cause"], registry=r)
        self.terminations = Counter(
            "hatchway_terminations", "Workspaces terminated, by reason (user: Terminate; "
            "idle: culled; max_age: past its maximum age; over_limit: its current pay model "
            "above limit; admin: an operator)", ["reason"], registry=r)
        self.launch_seconds = Histogram(
            "hatchway_launch_to_running_seconds", "From an accepted launch to its route being "
            "ready", buckets=LAUNCH_BUCKETS, registry=r)
        self.service_seconds = Histogram(
            "hatchway_service_call_seconds", "Calls to Arborist, Fence (JWKS) and other "
            "services, by service and outcome", ["service", "outcome"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.ext_authz = Counter(
            "hatchway_ext_authz_decisions", "Envoy ext_authz checks answered, by decision",
            ["decision"], registry=r)
        self.draining = Gauge("hatchway_draining", "1 once a SIGTERM has started the drain",
                              registry=r)
        self.collector: GatewayCollector | None = None
        self._pending: dict[str, float] = {}  # user → monotonic time of an accepted launch
        self._routes: RouteTable | None = None  # set by attach

    def attach(self, gateway: Gateway, fast_path: Callable[[], FastCounters | None]) -> None:
        """Read the gateway's route table, watches and fast path at scrape time."""
        self.collector = GatewayCollector(gateway, fast_path, self.aiohttp_traffic)
        self.registry.register(self.collector)
        gateway.routes.subscribe(self._routes_changed)
        self._routes = gateway.routes

    # -- the launcher's events ------------------------------------------------------------
    def launched(self, user: str, option: str) -> None:
        self.launches.labels(option).inc()
        self._pending[user] = time.monotonic()
        self._routes_changed()  # a backend may have published a ready route already

    def launch_failed(self, text: str, cause: str | None = None) -> None:
        self.launch_failures.labels(cause or launch_failure_cause(text)).inc()

    def terminated(self, user: str, reason: str) -> None:
        self.terminations.labels(reason).inc()
        self._pending.pop(user, None)

    def _routes_changed(self) -> None:
        pending = self._pending
        if not pending:
            return
        routes = self._routes
        if routes is None:
            return
        now = time.monotonic()
        for user in [u for u in pending if (r := routes.get(u)) is not None and r.ready]:
            self.launch_seconds.observe(now - pending.pop(user))

    def pending_failed(self, user: str, detail: str) -> None:
        """A pending launch seen failed (its status says why)."""
        if self._pending.pop(user, None) is not None:
            self.launch_failed(detail)

    def pending_items(self) -> list[tuple[str, float]]:
        return list(self._pending.items())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class GatewayCollector(Collector):
    """What is read only at scrape time: the fast path's counters, both relays' bytes and
    time to first byte, open WebSockets, the route table and the Kubernetes watches'
    health."""

    def __init__(self, gateway: Gateway, fast_path: Callable[[], FastCounters | None],
                 aiohttp_traffic: Traffic) -> None:
        self.gateway = gateway
        self.fast_path = fast_path
        self.aiohttp_traffic = aiohttp_traffic

    def describe(self) -> list[Metric]:
        return []  # names depend on the backend; the registry learns them from collect()

    def collect(self) -> Iterator[Metric]:
        gateway = self.gateway
        yield GaugeMetricFamily("hatchway_routes", "Routes in the route table",
                                value=len(gateway.routes))
        fast = self.fast_path()
        paths = [("aiohttp", self.aiohttp_traffic)]
        if fast is not None:
            paths.append(("fast", fast.traffic))
        yield from _traffic_families(paths)
        if fast is not None:
            requests = CounterMetricFamily(
                "hatchway_fastpath_requests", "Requests the fast path relayed itself, "
                "connections it handed to aiohttp at a request (any refusal, other paths, "
                "anything odd; aiohttp then serves the rest of that connection), and its own "
                "error answers once a request could not be handed over (502, 408, 400, 503)",
                labels=["result"])
            requests.add_metric(["relayed"], fast.relayed)
            requests.add_metric(["handed_off"], fast.handed_off)
            requests.add_metric(["failed"], fast.n_failed)
            yield requests
            yield CounterMetricFamily("hatchway_fastpath_websockets",
                                      "WebSockets the fast path spliced",
                                      value=fast.n_websockets)
            yield GaugeMetricFamily("hatchway_fastpath_websockets_open",
                                    "WebSockets open on the fast path's splice",
                                    value=len(fast.splices) // 2)
            yield GaugeMetricFamily("hatchway_fastpath_connections",
                                    "Browser connections the fast path serves",
                                    value=len(fast.fronts))
        watches = (gateway.backend.health() or {}).get("watches")
        if watches:
            up = GaugeMetricFamily("hatchway_watch_up", "1 while a watch is current (ok)",
                                   labels=["watch"])
            age = GaugeMetricFamily("hatchway_watch_last_event_age_seconds",
                                    "Seconds since a watch last saw an event or list",
                                    labels=["watch"])
            relists = CounterMetricFamily("hatchway_watch_relists", "Re-lists after the first",
                                          labels=["watch"])
            errors = CounterMetricFamily("hatchway_watch_errors", "Watch failures",
                                         labels=["watch"])
            for kind, h in watches.items():
                up.add_metric([kind], 1.0 if h.get("state") == "ok" else 0.0)
                age.add_metric([kind], float(h.get("last_event_age_s") or 0.0))
                relists.add_metric([kind], float(h.get("relists") or 0))
                errors.add_metric([kind], float(h.get("errors") or 0))
            yield from (up, age, relists, errors)


def _traffic_families(paths: list[tuple[str, Traffic]]) -> Iterator[Metric]:
    ttfb = HistogramMetricFamily(
        "hatchway_proxy_time_to_first_byte_seconds", "From a proxied request being admitted "
        "(session checked, workspace found) to the workspace's answer head, by relay path "
        "(fast: the fast path; aiohttp: handed-off connections and the fallback relay)",
        labels=["path"])
    moved = CounterMetricFamily(
        "hatchway_proxy_bytes", "Bytes relayed, by direction (to_workspace: request bodies "
        "as sent; to_browser: answers, head and body, as written; on the fast path also "
        "WebSocket frames both ways) and relay path", labels=["direction", "path"])
    for path, traffic in paths:
        ttfb.add_metric([path], traffic.cumulative(), sum_value=traffic.ttfb_sum_ns / 1e9)
        moved.add_metric(["to_workspace", path], traffic.to_workspace)
        moved.add_metric(["to_browser", path], traffic.to_browser)
    yield ttfb
    yield moved


# -- the aiohttp side ---------------------------------------------------------------------
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
_STARTED: web.RequestKey[int] = web.RequestKey("metrics_started", int)
_WS_COUNTED: web.RequestKey[bool] = web.RequestKey("metrics_ws", bool)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _outcome(response: web.StreamResponse) -> str:
    if isinstance(response, RelayedResponse | web.WebSocketResponse):
        return "relayed"
    status = response.status
    if 300 <= status < 400:
        return "redirect"
    return str(status)


def _decision(status: int) -> str:
    return {200: "allow", 401: "unauthenticated", 302: "login_redirect", 403: "forbidden",
            503: "unavailable"}.get(status, "other")


def middleware_for(metrics: Metrics, proxy_prefix: str, ext_authz_mount: str,
                   *, stripped: bool = False) -> Any:
    """The middleware counting proxied requests by outcome and family and ext_authz
    decisions; ``stripped``: the ambassador listener, where every path is a proxy path."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if stripped:
            path = proxy_prefix + path.lstrip("/")
        if path.startswith(ext_authz_mount):
            response = await handler(request)
            metrics.ext_authz.labels(_decision(response.status)).inc()
            return response
        if not path.startswith(proxy_prefix):
            return await handler(request)
        request[_STARTED] = time.monotonic_ns()
        family = path_family(path, proxy_prefix)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.requests.labels(_outcome(exc), family).inc()
            raise
        except BaseException:
            metrics.requests.labels("error", family).inc()
            raise
        finally:
            if request.get(_WS_COUNTED):
                metrics.websockets.dec()
        metrics.requests.labels(_outcome(response), family).inc()
        traffic = metrics.aiohttp_traffic
        if request.body_exists:
            traffic.to_workspace += request.content.total_bytes
        if response.prepared:
            traffic.to_browser += response.body_length
        return response

    return count


def on_prepare_for(metrics: Metrics) -> Callable[[web.Request, web.StreamResponse],
                                                 Awaitable[None]]:
    """Time to first byte (a relayed answer's head going out) and open aiohttp WebSockets."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        started = request.get(_STARTED)
        if started is None:
            return
        if isinstance(response, web.WebSocketResponse):
            metrics.websockets.inc()
            request[_WS_COUNTED] = True
            return
        if isinstance(response, RelayedResponse):
            metrics.aiohttp_traffic.first_byte(time.monotonic_ns() - started)

    return on_prepare


def service_of(url: str, services: dict[str, str]) -> str:
    """Which configured service (by URL prefix, or host) a call goes to."""
    for name, base in services.items():
        if base and url.startswith(base):
            return name
    host = urlsplit(url).hostname or ""
    if "arborist" in host:
        return "arborist"
    if "fence" in host:
        return "fence"
    return "other"


def trace_config(metrics: Metrics, services: dict[str, str]) -> aiohttp.TraceConfig:
    """Latency and errors of every call the gateway's service client makes (JWKS, Arborist,
    Fence): hooked into the client, so none of the callers carries metrics code."""
    trace = aiohttp.TraceConfig()

    async def start(_: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
        ctx.began = time.monotonic()
        ctx.service = service_of(str(params.url), services)

    async def end(_: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
        status = params.response.status
        outcome = "ok" if status < 400 else ("client_error" if status < 500 else "server_error")
        metrics.service_seconds.labels(ctx.service, outcome).observe(
            time.monotonic() - ctx.began)

    async def failed(_: aiohttp.ClientSession, ctx: Any, params: Any) -> None:
        metrics.service_seconds.labels(ctx.service, "error").observe(
            time.monotonic() - ctx.began)

    trace.on_request_start.append(start)
    trace.on_request_end.append(end)
    trace.on_request_exception.append(failed)
    return trace


def metrics_app(metrics: Metrics) -> web.Application:
    """The metrics listener's app: ``/metrics`` and nothing else."""

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    return app
