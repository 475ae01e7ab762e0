"""hatchway's own settings: defaults for the embedded default, a YAML/JSON file, environment
overrides. A Hatchery ``hatchery.json`` given as a config file is recognised and read unchanged.

Every field is typed; a wrong or unknown field stops start-up with a ConfigError that names the
file and the field (the CLI prints it and exits 2).
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from launcher.errors import ConfigError
from launcher.options import HatcheryConfig, load_hatchery_file, parse_hatchery_config

from .trusted import parse_networks


@dataclass
class SessionSettings:
    mode: str = "dev"  # dev: hatchway's own issuer and JWKS; jwks: Fence (or any JWKS issuer)
    jwks_url: str = ""  # e.g. https://commons.example.org/user/.well-known/jwks
    issuer: str = ""  # expected `iss`; dev mode fills in its own
    audience: str = "gen3"  # must be among the token's `aud`
    login_url: str = ""  # browsers without a session go here with ?redirect=<url>
    leeway_seconds: int = 30
    cookie_name: str = "access_token"
    jwks_refetch_min_seconds: float = 30.0  # an unknown kid refetches at most this often
    jwks_cache_seconds: float = 3600.0
    # Dev sessions let anyone sign in as anyone: refused on a non-loopback address unless set.
    allow_insecure_dev_on_network: bool = False


@dataclass
class AuthzSettings:
    mode: str = "all"  # all | allowlist | arborist
    users: list[str] = field(default_factory=list)  # allowlist mode
    arborist_url: str = "http://arborist-service"
    resource: str = "/workspace"
    service: str = "jupyterhub"
    cache_seconds: float = 10.0
    timeout_seconds: float = 5.0


@dataclass
class LocalSettings:
    stop_grace_seconds: float = 5.0  # SIGTERM → SIGKILL
    ready_timeout_seconds: float = 120.0
    probe_interval_seconds: float = 0.2
    log_dir: str = ""  # defaults to <state_dir>/logs
    # Not root, workspaces cannot be kept apart (one uid for all): serve a second user only
    # when the operator says every user may read every other's files and the gateway's key.
    single_trust_domain: bool = False
    # Root: user N's workspaces run as uid/gid first_uid+N, above every range useradd and
    # subuid hand out by default, so they match no account on the machine.
    first_uid: int = 1_000_000_000


@dataclass
class LimitSettings:
    """What one client, and all clients together, may hold of the gateway's descriptors, memory
    and time (builtin mode's listener; aiohttp's keep-alive timer gets keepalive_timeout too)."""

    header_timeout_seconds: float = 10.0  # a head must be whole this soon after connect/1st byte
    keepalive_timeout_seconds: float = 15.0  # an idle keep-alive browser connection closes
    body_timeout_seconds: float = 30.0  # a body under body_min_rate this long: 408
    body_min_rate: int = 1024  # bytes/s a request body must keep up to count as moving
    max_connections: int = 0  # browser connections at once; 0: half the fd limit (RLIMIT_NOFILE)
    max_connections_per_client: int = 1000  # per client address (0: no cap); behind a proxy, raise
    max_pending_bytes: int = 65536  # pipelined bytes read ahead per connection while it waits
    max_buffered_bytes: int = 64 * 1024 * 1024  # read-ahead bytes held over all connections

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 0 or (value == 0 and name.endswith(("seconds", "_bytes"))):
                raise ConfigError("settings", f"limits.{name}", "a positive number", value)


@dataclass
class PayModelSettings:
    """Where the pay-model table is reached; the table itself is named in hatchery.json."""

    region: str = "us-east-1"  # Hatchery's, fixed in its code
    endpoint_url: str = ""  # DynamoDB/STS endpoint override (a local emulator); AWS's if empty


@dataclass
class DrainSettings:
    """What a SIGTERM does (proxy.drain). deploy/: terminationGracePeriodSeconds exceeds
    ``timeout_seconds``; the preStop sleep is shorter than ``delay_seconds``."""

    # readiness fails but the listener accepts, while endpoints update; None: 5 s with the
    # kubernetes backend, 0 with the local one (no Service in front, Ctrl-C-fast on a laptop)
    delay_seconds: float | None = None
    websocket_grace_seconds: float = 10.0  # after the listener stops, WebSockets get 1001
    timeout_seconds: float = 25.0  # SIGTERM to exit, whatever is still in flight


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    mode: str = "builtin"  # builtin: hatchway relays; envoy: an Envoy relays, hatchway authorizes
    backend: str = "local"  # local | kubernetes
    prefix: str = "/lw-workspace"  # the API prefix (Hatchery's sub-dir behind revproxy)
    proxy_path: str = "proxy"  # the proxy lives at <prefix>/<proxy_path>/
    public_url: str = ""  # the gateway's external origin, e.g. https://commons.example.org
    allowed_origins: list[str] = field(default_factory=list)  # extra WebSocket Origins
    state_dir: str = ".hatchway"
    dev_login: bool | None = None  # the dev login page; on by default only in dev sessions
    sessions: SessionSettings = field(default_factory=SessionSettings)
    authz: AuthzSettings = field(default_factory=AuthzSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    kubernetes: dict[str, Any] = field(default_factory=dict)  # read by the kubernetes backend
    envoy: dict[str, Any] = field(default_factory=dict)  # read by Envoy mode
    cull_interval_seconds: float = 30.0  # how often idle workspaces are looked for
    static_routes: dict[str, str] = field(default_factory=dict)  # user → fixed upstream URL
    fast_path: bool = True  # builtin mode: relay the proxy's happy path without aiohttp
    # Largest WebSocket message relayed, either direction, on both relay paths; a bigger one
    # closes the socket with 1009. Above Jupyter's own inbound limit (tornado's 10 MiB), so
    # hatchway never refuses what the workspace would take; the aiohttp relay holds up to
    # about twice this per message in memory.
    websocket_max_message_bytes: int = 16 * 1024 * 1024
    hatchery_config: str = ""  # path to hatchery.json; default options when empty
    # Peers (addresses/CIDRs: Gen3's revproxy, the hatchery-reaper) whose REMOTE_USER header
    # is believed. Empty: nobody's; REMOTE_USER is then ignored and stripped.
    trusted_proxies: list[str] = field(default_factory=list)
    # A listener serving the workspace proxy at / (ambassador-service's shape behind the stock
    # revproxy, which strips <prefix>/proxy/); None: no such listener, 0: any free port.
    ambassador_port: int | None = None
    paymodels: PayModelSettings = field(default_factory=PayModelSettings)
    # -- operations (proxy.metrics, proxy.logs, proxy.drain) --
    # Prometheus metrics on their own listener, never under the user prefix; None: off.
    # Loopback by default: a pod's Prometheus scrape needs metrics_host 0.0.0.0 (deploy/).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    log_format: str = "text"  # text | json (one JSON object per line)
    access_log: bool = False  # one line per proxied request (user, route, status, bytes, time)
    drain: DrainSettings = field(default_factory=DrainSettings)
    hatchery: HatcheryConfig | None = field(default=None, repr=False)

    @property
    def proxy_prefix(self) -> str:
        return f"{self.prefix.rstrip('/')}/{self.proxy_path.strip('/')}/"

    @property
    def dev_sessions(self) -> bool:
        return self.sessions.mode == "dev"


_CHOICES = {
    "mode": ("builtin", "envoy"),
    "backend": ("local", "kubernetes"),
    "sessions.mode": ("dev", "jwks"),
    "authz.mode": ("all", "allowlist", "arborist"),
    "log_format": ("text", "json"),
}
_ENV = {"HATCHWAY_HOST": "host", "HATCHWAY_PORT": "port", "HATCHWAY_STATE_DIR": "state_dir",
        "HATCHWAY_MODE": "mode", "HATCHWAY_BACKEND": "backend",
        "HATCHWAY_PUBLIC_URL": "public_url"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _coerce(source: str, path: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
        origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(source, path, "a mapping", value)
        return _build(source, tp, value, path + ".")
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(source, path, "a list of strings", value)
        return list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, path, "a mapping", value)
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, path, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, path, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(source, path, "a number", value)
        return float(value)
    if tp is str and not isinstance(value, str):
        raise ConfigError(source, path, "a string", value)
    return value


def _build(source: str, cls: Any, doc: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.name != "hatchery"}
    values: dict[str, Any] = {}
    for key, value in doc.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise ConfigError(source, prefix + key, "one of " + ", ".join(sorted(fields)),
                              "an unknown field")
        values[name] = _coerce(source, prefix + key, hints[name], value)
        choices = _CHOICES.get(prefix + name)
        if choices and values[name] not in choices:
            raise ConfigError(source, prefix + key, " or ".join(choices), value)
    return cls(**values)


def _deep_merge(into: dict[str, Any], doc: dict[str, Any]) -> None:
    for key, value in doc.items():
        k = key.replace("-", "_")
        if isinstance(value, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], value)
        else:
            into[k] = value


def _read(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "(file)", "a readable file", exc.strerror) from None
    try:
        if path.endswith(".json"):
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"(line {exc.lineno}, column {exc.colno})", "valid JSON",
                          exc.msg) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"(line {mark.line + 1}, column {mark.column + 1})" if mark else "(document)"
        raise ConfigError(path, where, "valid YAML", str(getattr(exc, "problem", exc))) from None


def load_settings(paths: list[str] | tuple[str, ...] = (), environ: dict[str, str] | None = None,
                  overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults, then each file in order, then ``HATCHWAY_*`` variables, then CLI overrides.
    A file whose top level has ``containers`` is a Hatchery hatchery.json."""
    merged: dict[str, Any] = {}
    hatchery: HatcheryConfig | None = None
    layers: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        doc = _read(path)
        if doc is None:
            continue
        if isinstance(doc, dict) and "containers" in doc:
            hatchery = parse_hatchery_config(doc, path)
            continue
        if not isinstance(doc, dict):
            raise ConfigError(path, "(top level)", "a mapping of settings", type(doc).__name__)
        layer = _build(path, Settings, doc)  # checks this file alone, so errors name it
        if layer.hatchery_config:
            hatchery = load_hatchery_file(str(Path(path).parent / layer.hatchery_config))
        layers.append((path, doc))
    env = os.environ if environ is None else environ
    env_doc: dict[str, Any] = {name: env[var] for var, name in _ENV.items() if var in env}
    if "port" in env_doc:
        port = str(env_doc["port"])
        env_doc["port"] = int(port) if port.isdigit() else port
    if env_doc:
        layers.append(("environment (HATCHWAY_*)", env_doc))
    if overrides:
        layers.append(("command line", {k: v for k, v in overrides.items() if v is not None}))
    for source, doc in layers:
        _build(source, Settings, doc)
        _deep_merge(merged, doc)
    settings: Settings = _build("settings", Settings, merged)
    if hatchery is None and settings.hatchery_config:  # given on the command line / env
        hatchery = load_hatchery_file(settings.hatchery_config)
    settings.hatchery = hatchery
    parse_networks(settings.trusted_proxies)  # a wrong entry stops start-up here
    if settings.ambassador_port is not None and not (0 <= settings.ambassador_port < 65536):
        raise ConfigError("settings", "ambassador_port", "a port number 0-65535",
                          settings.ambassador_port)
    if settings.metrics_port is not None and not (0 <= settings.metrics_port < 65536):
        raise ConfigError("settings", "metrics_port", "a port number 0-65535",
                          settings.metrics_port)
    if not (0 < settings.port < 65536):
        raise ConfigError("settings", "port", "a port number 1-65535", settings.port)
    if settings.websocket_max_message_bytes < 126:  # a control frame's payload must fit
        raise ConfigError("settings", "websocket_max_message_bytes", "at least 126",
                          settings.websocket_max_message_bytes)
    if settings.sessions.mode == "jwks" and not settings.sessions.jwks_url:
        raise ConfigError("settings", "sessions.jwks_url", "a JWKS URL when sessions.mode is jwks",
                          "")
    return settings
