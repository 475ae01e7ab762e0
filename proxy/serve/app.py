"""The aiohttp application: wires settings, sessions, authorization, the backend, the route
table and the HTTP surface together. ``build_app(settings)`` is all a server or a test needs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from launcher.activity import ActivityTracker
from launcher.backend import Backend, SharedActivity, TracksCosts
from launcher.clock import REAL, Clock
from launcher.culling import IdleCuller
from launcher.errors import ConfigError
from launcher.hatchery_reload import HatcheryReloader
from launcher.options import HatcheryConfig
from launcher.paymodels import PayModels
from launcher.routes import Route, RouteTable

from ..admission.authz import build_authorizer
from ..admission.sequence import ADMISSION, Admission
from ..api import admin, devlogin, events, launchpage, progress
from ..api import hatchery as hatchery_api
from ..api.failures import map_failures
from ..api.last_activity import jupyter_last_ms
from ..api.paymodels import reset_pay_model_when_gone
from ..gateway import GATEWAY, Gateway
from ..relay.fallback.handler import CLIENT, proxy_handler
from ..sessions.devissuer import DevIssuer
from ..sessions.jwks import KeyStore, http_jwks_fetcher
from ..sessions.tokens import SessionValidator
from ..sessions.trusted import trusted_peers
from ..settings import Settings, kube_settings
from . import wiring

log = logging.getLogger("hatchway")
CULLER = web.AppKey("culler", IdleCuller)  # the app's idle culler (tests sweep it directly)


def dev_issuer(settings: Settings) -> DevIssuer:
    """The dev issuer the server and ``hatchway token`` share through the state dir."""
    return DevIssuer(Path(settings.state_dir).expanduser(), issuer=settings.session_issuer)


def _hatchery(settings: Settings) -> HatcheryConfig:
    if settings.hatchery is not None:
        return settings.hatchery
    from launcher.defaults import default_hatchery_config

    return default_hatchery_config()


def _backend(settings: Settings, routes: RouteTable, hatchery: HatcheryConfig,
             clock: Clock) -> Backend:
    if settings.backend == "kubernetes":
        try:
            from launcher.kubernetes import KubernetesBackend
        except ImportError as exc:  # kubernetes_asyncio is an optional dependency
            raise ConfigError("settings", "backend", "kubernetes_asyncio installed "
                              "(pip install 'hatchway[kubernetes]')", str(exc)) from None
        return KubernetesBackend(routes, kube_settings(settings), hatchery, clock=clock,
                                 max_age_seconds=settings.max_age_seconds)
    from launcher.local import LocalBackend

    return LocalBackend(routes, settings.local, proxy_prefix=settings.proxy_prefix,
                        state_dir=settings.state_dir, max_age_seconds=settings.max_age_seconds,
                        clock=clock)


def _static_routes(settings: Settings, routes: RouteTable) -> None:
    """Every static route, into the table in one pass (one change, not one per route)."""
    table: dict[str, Route] = {}
    for user, url in settings.static_routes.items():
        parts = urlsplit(url)
        host, tls = parts.hostname, parts.scheme == "https"
        if parts.scheme not in ("http", "https") or not host:
            raise ConfigError("settings", f"static_routes.{user}", "an http(s):// URL", url)
        port = parts.port or (443 if tls else 80)
        table[user] = Route(host, port, parts.path or "/", tls=tls, source="static")
    routes.replace_all(table, "static")


def _on_cull(app: web.Application, gateway: Gateway) -> Callable[[str, str, str], None]:
    """A cull recorded as every termination is; it also clears the current pay model once
    the workspace is gone, as the reaper's ``/terminate`` does for every cull it makes (idle
    or over the limit: Hatchery's terminate resets it whatever the reason)."""
    record = events.on_cull(app)

    def on_cull(user: str, reason: str, why: str) -> None:
        record(user, reason, why)
        reset_pay_model_when_gone(gateway, user, hatchery_api.workspace_status)
    return on_cull


def _reloader(settings: Settings, gateway: Gateway, clock: Clock) -> HatcheryReloader | None:
    """hatchery.json read again when it changes (a file only: the built-in defaults never
    change); new launches and /options read ``gateway.hatchery``, so swapping it is enough."""
    if settings.hatchery is None or settings.hatchery_reload_seconds <= 0:
        return None

    def apply(config: HatcheryConfig) -> None:
        gateway.hatchery = config
        gateway.backend.use_hatchery(config)

    return HatcheryReloader(settings.hatchery, apply,
                            interval_seconds=settings.hatchery_reload_seconds, clock=clock)


def build_app(settings: Settings, *, clock: Clock = REAL) -> web.Application:
    """The whole gateway as one aiohttp app (no sockets opened until it starts); ``clock``
    is the time activity, culling, sessions and the Lease are judged by."""
    hatchery = _hatchery(settings)
    routes = RouteTable()
    _static_routes(settings, routes)
    http_holder: list[aiohttp.ClientSession] = []

    def http() -> aiohttp.ClientSession:
        return http_holder[0]

    issuer: DevIssuer | None = None
    if settings.dev_sessions:
        issuer = dev_issuer(settings)
        keys = KeyStore(issuer.fetch_jwks, cache_seconds=settings.sessions.jwks_cache_seconds,
                        refetch_min_seconds=settings.sessions.jwks_refetch_min_seconds,
                        clock=clock)
    else:
        keys = KeyStore(http_jwks_fetcher(settings.sessions.jwks_url, http),
                        cache_seconds=settings.sessions.jwks_cache_seconds,
                        refetch_min_seconds=settings.sessions.jwks_refetch_min_seconds,
                        clock=clock)
    sessions = SessionValidator(
        keys, issuer=settings.session_issuer, audience=settings.sessions.audience,
        leeway_seconds=settings.sessions.leeway_seconds,
        cookie_name=settings.sessions.cookie_name, clock=clock)
    backend = _backend(settings, routes, hatchery, clock)
    gateway = Gateway(
        settings=settings, hatchery=hatchery, routes=routes, backend=backend, sessions=sessions,
        authz=build_authorizer(settings.authz, http, clock=clock),
        activity=ActivityTracker(clock=clock),
        paymodels=PayModels.from_hatchery(hatchery, region=settings.paymodels.region,
                                          endpoint_url=settings.paymodels.endpoint_url),
        trusted=trusted_peers(settings.trusted_proxies, isolation=backend.isolation,
                              first_workspace_uid=settings.local.first_uid),
        clock=clock)

    # On Kubernetes the replicas share activity (a Service annotation) and elect one culler
    # (a Lease); the local backend has neither and culls alone.
    if gateway.paymodels is not None and isinstance(backend, TracksCosts):
        backend.attach_costs(gateway.paymodels,
                             hold_seconds=settings.paymodels.charge_hold_seconds)
    last_activity = gateway.activity.last_ms
    is_leader: Callable[[], bool] = lambda: True  # noqa: E731
    default_limit_ms = 0
    if isinstance(backend, SharedActivity):
        backend.attach_activity(gateway.activity.last_ms)
        last_activity = backend.last_activity_ms
        is_leader = lambda: backend.is_leader  # noqa: E731
        default_limit_ms = backend.default_idle_ms
    app = web.Application(handler_args={"max_field_size": 65536},
                          middlewares=[map_failures])
    app[GATEWAY] = gateway
    app[ADMISSION] = Admission.of(gateway)  # the sequence every path to a workspace asks
    wiring.install(app, settings, keys)  # metrics, readiness, drain, stopped page
    culler = IdleCuller(backend, routes, last_activity,
                        interval_seconds=settings.cull_interval_seconds,
                        is_leader=is_leader, default_limit_ms=default_limit_ms,
                        on_cull=_on_cull(app, gateway),
                        workspace_last_ms=lambda user: jupyter_last_ms(gateway, user),
                        clock=clock, paymodels=gateway.paymodels)
    app[CULLER] = culler
    reloader = gateway.hatchery_reload = _reloader(settings, gateway, clock)
    prefix = settings.prefix.rstrip("/")
    if issuer is not None:
        app[devlogin.DEV_ISSUER] = issuer
        app.router.add_get(f"{prefix}/.well-known/jwks", devlogin.jwks)
        if settings.dev_login is not False:
            app.router.add_route("*", f"{prefix}/login", devlogin.login_page)
            app.router.add_get(f"{prefix}/logout", devlogin.logout)
    # Under the prefix, and as the stock revproxy sends them to hatchery-service (prefix
    # stripped: its /lw-workspace/ location reaches Hatchery's "/", its home page).
    for mount in dict.fromkeys((prefix, "")):
        hatchery_api.add_routes(app, mount)
        admin.add_routes(app, mount)  # the operator's view (Arborist's admin grant)
        wiring.add_routes(app, mount)  # /_status, /_ready, /favicon.ico
        app.router.add_get(f"{mount}/progress", progress.progress)
        app.router.add_get(f"{mount}/", launchpage.launch_page)
    if prefix:
        app.router.add_get(prefix, _to_launch_page)
    envoy_writer = None
    envoy_activity = None
    if settings.mode == "envoy":
        from proxy.envoy.config import activity_poller_args, writer_for_settings

        from ..envoy.ext_authz import ext_authz_check

        # Envoy relays; hatchway answers its ext_authz checks and keeps its route files current.
        app.router.add_route("*", f"{prefix}/_ext_authz{{tail:.*}}", ext_authz_check)
        envoy_writer = writer_for_settings(settings, routes)
        gateway.envoy = envoy_writer
        poll = activity_poller_args(settings)
        if poll is not None:  # jwt mode: activity from Envoy's counters (proxy.envoy.activity)
            from ..envoy.activity import EnvoyActivityPoller

            envoy_activity = EnvoyActivityPoller(routes, gateway.activity, poll[0],
                                                 interval_s=poll[1])
            gateway.envoy_activity = envoy_activity
    else:
        app.router.add_route("*", settings.proxy_prefix + "{tail:.*}", proxy_handler)
        app.router.add_route("*", settings.proxy_prefix.rstrip("/"), proxy_handler)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        http_holder.append(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                                 trace_configs=wiring.trace_configs(app, settings)))
        gateway.http = http_holder[0]
        # One pooled client for every upstream: no session per request, no cookie jar
        # (workspaces' cookies belong to the browser), bodies passed through undecoded.
        app[CLIENT] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=30,
                                           enable_cleanup_closed=True),
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        gateway.activity.start()
        if envoy_writer is not None:
            await envoy_writer.start()
        if envoy_activity is not None:
            envoy_activity.start()
        await gateway.backend.start()
        culler.start()
        if reloader is not None:
            reloader.start()
        yield
        if reloader is not None:
            reloader.stop()
        await culler.stop()
        await gateway.backend.close()
        if gateway.paymodels is not None:
            await gateway.paymodels.close()
        if envoy_activity is not None:
            await envoy_activity.stop()
        if envoy_writer is not None:
            await envoy_writer.stop()
        gateway.activity.stop()
        await app[CLIENT].close()
        await http_holder[0].close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _to_launch_page(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(request.path + "/")
