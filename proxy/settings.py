"""hatchway's settings tree: defaults for the embedded default, a YAML/JSON file, environment
overrides. A Hatchery ``hatchery.json`` given as a config file is recognised and read unchanged.

Every section is a typed dataclass whose fields carry their doc (``settings_tree.setting``); the
proxy's sections live here, the launcher's (``local``, ``kubernetes``, ``paymodels``) in
``launcher.settings``. One validator (``launcher.settings_tree.build``) checks them all: a wrong
or unknown field stops start-up with a ConfigError naming the file and the dotted field (the CLI
prints it and exits 2). ``hatchway settings --doc`` prints the tree as the README's table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from launcher import yamlload
from launcher.errors import ConfigError
from launcher.options import HatcheryConfig, load_hatchery_file, parse_hatchery_config
from launcher.settings import KubeSettings, LocalSettings, PayModelSettings
from launcher.settings_tree import build, describe, internal, merge, non_negative, port, positive
from launcher.settings_tree import setting as s

from .sessions.trusted import parse_networks

__all__ = ["AuthzSettings", "EnvoySettings", "KubeSettings", "LimitSettings", "LocalSettings",
           "PayModelSettings", "SessionSettings", "Settings", "load_settings"]

DEV_ISSUER_NAME = "hatchway-dev"  # the dev issuer's default name
_HEADER_NAME = (lambda v: re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", v) is not None,
                "an HTTP header name")


@dataclass
class SessionSettings:
    """``sessions:``: who the caller is (a JWT in the access_token cookie or a Bearer)."""

    mode: Literal["dev", "jwks"] = s("dev", "dev: hatchway's own issuer and JWKS; jwks: Fence "
                                     "(or any JWKS issuer).")
    jwks_url: str = s("", "JWKS URL, e.g. https://commons.example.org/user/.well-known/jwks; "
                      "required in jwks mode.")
    issuer: str = s("", "Expected `iss`; dev mode fills in its own.")
    audience: str = s("gen3", "Must be among the token's `aud`.")
    login_url: str = s("", "Browsers without a session go here with ?redirect=<url>.")
    leeway_seconds: int = s(30, "Clock skew allowed on exp/nbf/iat.", check=non_negative())
    cookie_name: str = s("access_token", "The session cookie's name.")
    jwks_refetch_min_seconds: float = s(30.0, "An unknown kid refetches the JWKS at most this "
                                        "often.", check=non_negative())
    jwks_cache_seconds: float = s(3600.0, "How long fetched keys are kept.", check=positive())
    allow_insecure_dev_on_network: bool = s(
        False, "Dev sessions let anyone sign in as anyone: refused on a non-loopback address "
        "unless set.")


@dataclass
class AuthzSettings:
    """``authz:``: who may use workspaces at all (per-option rules are in hatchery.json)."""

    mode: Literal["all", "allowlist", "arborist"] = s(
        "all", "all: every signed-in user; allowlist: `users`; arborist: Gen3's policy engine.")
    users: list[str] = s(factory=list, doc="allowlist mode: the users admitted.")
    arborist_url: str = s("http://arborist-service", "arborist mode: where Arborist answers.")
    resource: str = s("/workspace", "arborist mode: the resource asked about.")
    service: str = s("jupyterhub", "arborist mode: the service asked about.")
    cache_seconds: float = s(10.0, "How long one token's answer is reused.",
                             check=non_negative())
    timeout_seconds: float = s(5.0, "One Arborist call; past it: 503.", check=positive())


@dataclass
class AdminSettings:
    """``admin:``: who may see every workspace and stop any (``<prefix>/admin/``)."""

    resource: str = s("/services/hatchway/admin", "arborist mode: the resource an operator "
                      "needs `method` on (service: authz.service).")
    method: str = s("admin", "arborist mode: the method asked about.")
    users: list[str] = s(factory=list, doc="Other authz modes: the operators (none by default: "
                         "the admin view refuses everyone).")


_POSITIVE = positive()
_LOG_LEVEL = ((lambda v: v.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
              "DEBUG, INFO, WARNING, ERROR or CRITICAL")
_PORT, _PORT_OR_ZERO = port(), port(allow_zero=True)  # (Settings has a field named port)
_NOT_NEGATIVE = non_negative("a positive number")


@dataclass
class LimitSettings:
    """``limits:``: what one client, and all clients together, may hold of the gateway's
    descriptors, memory and time (builtin mode's listener; aiohttp's keep-alive timer gets
    keepalive_timeout too)."""

    header_timeout_seconds: float = s(10.0, "A head must be whole this soon after connect or "
                                      "its first byte.", check=_POSITIVE)
    keepalive_timeout_seconds: float = s(15.0, "An idle keep-alive browser connection closes.",
                                         check=_POSITIVE)
    body_timeout_seconds: float = s(30.0, "A body under body_min_rate this long: 408.",
                                    check=_POSITIVE)
    body_min_rate: int = s(1024, "Bytes/s a request body must keep up to count as moving.",
                           check=_NOT_NEGATIVE)
    max_connections: int = s(0, "Browser connections at once; 0: half the fd limit "
                             "(RLIMIT_NOFILE).", check=_NOT_NEGATIVE)
    max_connections_per_client: int = s(1000, "Per client address (0: no cap); the "
                                        "trusted_proxies have none.", check=_NOT_NEGATIVE)
    max_pending_bytes: int = s(65536, "Pipelined bytes read ahead per connection while it "
                               "waits.", check=_POSITIVE)
    max_buffered_bytes: int = s(64 * 1024 * 1024, "Read-ahead bytes held over all connections.",
                                check=_POSITIVE)


@dataclass(frozen=True)
class EnvoySettings:
    """``envoy:``: Envoy mode (a real Envoy relays, hatchway authorizes). Hosts and ports are as
    Envoy sees them; empty/0 values are filled in from the rest (``proxy.envoy.config``)."""

    listen_host: str = s("0.0.0.0", "Envoy's listener address.")
    listen_port: int = s(8000, "Envoy's listener port.", check=_PORT)
    admin_host: str = s("127.0.0.1", "Envoy's admin interface address.")
    admin_port: int = s(9901, "Envoy's admin interface port.", check=_PORT)
    dynamic_dir: str = s("", "Shared with Envoy, same path in both; empty: <state_dir>/envoy.")
    hatchway_host: str = s("", "How Envoy reaches hatchway; empty: the address it listens on.")
    hatchway_port: int = s(0, "How Envoy reaches hatchway; 0: hatchway's port.",
                           check=_PORT_OR_ZERO)
    user_header: str = s("remote_user", "The header carrying the user: Envoy routes on it and "
                         "hatchway's check (ext_authz) sets it.", check=_HEADER_NAME)
    idle_timeout_seconds: float = s(3600.0, "Envoy's idle timeout for a connection or stream.",
                                    check=positive("a positive number of seconds"),
                                    was="idle_timeout_s")
    api_passthrough: bool = s(True, "Envoy forwards every other path to hatchway.")
    mapping_flavor: Literal["v1", "v3alpha1"] = s(
        "v1", "Ambassador annotation on Services: v1 (Hatchery's) or v3alpha1.")
    authorization: Literal["jwt", "ext_authz"] = s(
        "jwt", "jwt: Envoy checks sessions itself and asks hatchway only where it must "
        "(WebSocket upgrades, refusals, Arborist); ext_authz: Envoy asks hatchway every time.")
    activity_poll_seconds: float = s(5.0, "jwt mode: how often Envoy's per-user counters are "
                                     "read.", check=positive("a positive number of seconds"),
                                     was="activity_poll_s")


@dataclass
class DrainSettings:
    """What a SIGTERM does (proxy.serve.drain). deploy/: terminationGracePeriodSeconds exceeds
    ``timeout_seconds``; the preStop sleep is shorter than ``delay_seconds``."""

    delay_seconds: float | None = s(
        None, "Readiness fails but the listener still accepts this long, while endpoints "
        "update; null: 5 s with the kubernetes backend, 0 with the local one (no Service in "
        "front, Ctrl-C-fast on a laptop).", check=_NOT_NEGATIVE)
    websocket_grace_seconds: float = s(10.0, "After the listener stops, open WebSockets get "
                                       "this long before a 1001 close.", check=_NOT_NEGATIVE)
    timeout_seconds: float = s(25.0, "SIGTERM to exit, whatever is still in flight (below "
                               "terminationGracePeriodSeconds).", check=_POSITIVE)


@dataclass
class Settings:
    """The root of the tree: the top-level keys of hatchway.yaml."""

    host: str = s("127.0.0.1", "The address hatchway listens on.")
    port: int = s(8080, "The port hatchway listens on.", check=_PORT)
    workers: int = s(1, "Processes sharing the port.", check=positive())
    mode: Literal["builtin", "envoy"] = s("builtin", "builtin: hatchway relays; envoy: an Envoy "
                                          "relays, hatchway authorizes.")
    backend: Literal["local", "kubernetes"] = s("local", "Where workspaces run.")
    prefix: str = s("/lw-workspace", "The API prefix (Hatchery's sub-dir behind revproxy).")
    proxy_path: str = s("proxy", "The proxy lives at <prefix>/<proxy_path>/.")
    public_url: str = s("", "The gateway's external origin, e.g. https://commons.example.org.")
    allowed_origins: list[str] = s(factory=list, doc="Extra WebSocket Origins allowed.")
    state_dir: str = s(".hatchway", "Keys, logs and workspace state.")
    dev_login: bool | None = s(None, "The dev login page; on by default only in dev sessions.")
    sessions: SessionSettings = s(factory=SessionSettings)
    authz: AuthzSettings = s(factory=AuthzSettings)
    admin: AdminSettings = s(factory=AdminSettings)
    local: LocalSettings = s(factory=LocalSettings)
    limits: LimitSettings = s(factory=LimitSettings)
    kubernetes: KubeSettings = s(factory=KubeSettings)
    envoy: EnvoySettings = s(factory=EnvoySettings)
    cull_interval_seconds: float = s(30.0, "How often idle workspaces are looked for.",
                                     check=positive())
    max_age_seconds: int = s(
        0, "A running workspace is stopped this long after it started, whatever its activity "
        "(volume kept; the portal warns 5 min ahead); an option's own max-age-seconds replaces "
        "it. 0: no maximum.", check=non_negative())
    static_routes: dict[str, str] = s(factory=dict, doc="User → fixed upstream URL.")
    fast_path: bool = s(True, "builtin mode: relay the proxy's happy path without aiohttp.")
    websocket_max_message_bytes: int = s(
        16 * 1024 * 1024, "Largest WebSocket message relayed, either direction, on both relay "
        "paths; a bigger one closes the socket with 1009. Above Jupyter's own inbound limit "
        "(tornado's 10 MiB); the aiohttp relay holds up to about twice this per message.",
        check=((lambda v: v >= 126), "at least 126"))  # a control frame's payload must fit
    hatchery_config: str = s("", "Path to hatchery.json; default options when empty.")
    hatchery_reload_seconds: float = s(
        10.0, "How often hatchery.json is looked at for changes (a ConfigMap update, an edited "
        "file): new launches and /options see the new list, running workspaces keep running, "
        "a broken file keeps the old list (log and /_status say why); 0: never.",
        check=((lambda v: v >= 0), "0 or more"))
    trusted_proxies: list[str] = s(
        factory=list, doc="Peers (addresses/CIDRs: Gen3's revproxy, the hatchery-reaper) whose "
        "REMOTE_USER header is believed. Empty: nobody's; REMOTE_USER is then ignored and "
        "stripped. With the local backend, a peer on this host is believed only if it is no "
        "workspace (its socket's owner uid is below local.first_uid); not root, this host's "
        "addresses are refused.")
    ambassador_port: int | None = s(
        None, "A listener serving the workspace proxy at / (ambassador-service's shape behind "
        "the stock revproxy); null: none, 0: any free port.", check=_PORT_OR_ZERO)
    paymodels: PayModelSettings = s(factory=PayModelSettings)
    metrics_port: int | None = s(
        None, "Prometheus metrics on their own listener, never under the user prefix; null: "
        "off, 0: any free port.", check=_PORT_OR_ZERO)
    metrics_host: str = s("127.0.0.1", "The metrics listener's address; a pod's Prometheus "
                          "scrape needs 0.0.0.0 (deploy/).")
    log_level: str = s("INFO", "DEBUG, INFO, WARNING or ERROR (env HATCHWAY_LOG_LEVEL, "
                       "--log-level).", check=_LOG_LEVEL)
    log_format: Literal["text", "json"] = s("text", "text, or json: one JSON object per line.")
    access_log: bool = s(False, "One line per proxied request (user, route, status, bytes, "
                         "time); never a token or cookie.")
    drain: DrainSettings = s(factory=DrainSettings)
    gen3_endpoint: str | None = s(
        None, "The commons' host name, Hatchery's GEN3_ENDPOINT (that variable sets it): "
        "workspaces get it unless kubernetes.gen3_endpoint is set, and per-launch API keys "
        "are minted at https://<it>/user/ unless hatchery.json says "
        "use-internal-services-url; null: unset (http://fence-service/).")
    hatchery: HatcheryConfig | None = internal()

    @property
    def proxy_prefix(self) -> str:
        return f"{self.prefix.rstrip('/')}/{self.proxy_path.strip('/')}/"

    @property
    def dev_sessions(self) -> bool:
        return self.sessions.mode == "dev"

    @property
    def session_issuer(self) -> str:
        """The ``iss`` sessions must carry, for hatchway's check and Envoy's alike:
        ``sessions.issuer``, else the dev issuer's name, else Fence's (its base URL, the JWKS
        URL without /.well-known/jwks)."""
        if self.sessions.issuer:
            return self.sessions.issuer
        if self.dev_sessions:
            return DEV_ISSUER_NAME
        return self.sessions.jwks_url.removesuffix("/.well-known/jwks")


def kube_settings(settings: Settings) -> KubeSettings:
    """``kubernetes:`` as the backend needs it: no flavor of its own means Envoy mode's."""
    kube = dataclasses.replace(settings.kubernetes, commons_endpoint=settings.gen3_endpoint)
    if kube.mapping_flavor:
        return kube
    return dataclasses.replace(kube, mapping_flavor=settings.envoy.mapping_flavor)


def settings_table() -> str:
    """The README's configuration section: every field of the tree, its default and doc."""
    rows = ["| setting | type | default | what it is for |", "|---|---|---|---|"]
    for leaf in describe(Settings):
        default = "null" if leaf.default is None else json.dumps(leaf.default)
        doc = leaf.doc.replace("|", "\\|")
        rows.append(f"| `{leaf.path}` | {leaf.type} | `{default}` | {doc} |")
    return "\n".join(rows) + "\n"


_ENV = {"HATCHWAY_HOST": "host", "HATCHWAY_PORT": "port", "HATCHWAY_STATE_DIR": "state_dir",
        "HATCHWAY_MODE": "mode", "HATCHWAY_BACKEND": "backend",
        "HATCHWAY_PUBLIC_URL": "public_url", "HATCHWAY_LOG_LEVEL": "log_level",
        "GEN3_ENDPOINT": "gen3_endpoint"}  # Hatchery's own variable, read as Hatchery does


def _read(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "(file)", "a readable file", exc.strerror) from None
    try:
        if path.endswith(".json"):
            return json.loads(text)
        return yamlload.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"(line {exc.lineno}, column {exc.colno})", "valid JSON",
                          exc.msg) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"(line {mark.line + 1}, column {mark.column + 1})" if mark else "(document)"
        raise ConfigError(path, where, "valid YAML", str(getattr(exc, "problem", exc))) from None


def load_settings(paths: list[str] | tuple[str, ...] = (), environ: dict[str, str] | None = None,
                  overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults, then each file in order, then ``HATCHWAY_*`` variables (and Hatchery's
    ``GEN3_ENDPOINT``), then CLI overrides.
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
        layer: Settings = build(Settings, doc, source=path)  # errors name this file
        if layer.hatchery_config:
            hatchery = load_hatchery_file(str(Path(path).parent / layer.hatchery_config))
        merge(Settings, merged, doc)
    env = os.environ if environ is None else environ
    env_doc: dict[str, Any] = {name: env[var] for var, name in _ENV.items() if var in env}
    if "port" in env_doc:
        port = str(env_doc["port"])
        env_doc["port"] = int(port) if port.isdigit() else port
    if env_doc:
        layers.append(("environment (HATCHWAY_*, GEN3_ENDPOINT)", env_doc))
    if overrides:
        layers.append(("command line", {k: v for k, v in overrides.items() if v is not None}))
    for source, doc in layers:  # each checked alone first, so errors name it
        build(Settings, doc, source=source)
        merge(Settings, merged, doc)
    settings: Settings = build(Settings, merged, source="settings")
    if hatchery is None and settings.hatchery_config:  # given on the command line / env
        hatchery = load_hatchery_file(settings.hatchery_config)
    settings.hatchery = hatchery
    parse_networks(settings.trusted_proxies)  # a wrong entry stops start-up here
    if settings.sessions.mode == "jwks" and not settings.sessions.jwks_url:
        raise ConfigError("settings", "sessions.jwks_url", "a JWKS URL when sessions.mode is jwks",
                          "")
    return settings
