"""Helpers the tests share: one module, so no test module imports another.

The Hatchery API driven as a portal drives it (``auth``, ``launch``, ``status_becomes``), the
``hatchway`` command as an operator runs it (``serving``, ``run``, ``free_port``), and the
Service a Go Hatchery creates (``hatchery_service``) for the Kubernetes tests.
"""

from __future__ import annotations

import asyncio
import http.client
import inspect
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

if TYPE_CHECKING:
    from .conftest import GatewayUnderTest

NAMESPACE = "jupyter-pods"  # the Kubernetes tests' user namespace (tests.k8s.conftest)

# -- the Hatchery API, as the portal calls it -------------------------------------------------

API = "/lw-workspace/"
NEVER_READY = {"name": "Never ready", "command": ["sleep", "60"]}  # no port is ever opened
CRASHES = {"name": "Crashes", "command": ["sh", "-c", "exit 3"]}


def auth(gw: GatewayUnderTest, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.token(user)}"}


async def get_json(client: aiohttp.ClientSession, gw: GatewayUnderTest, path: str,
                   user: str = "alice") -> Any:
    async with client.get(gw.url(API + path), headers=auth(gw, user)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def option_id(client: aiohttp.ClientSession, gw: GatewayUnderTest, name: str) -> str:
    options = await get_json(client, gw, "options")
    return str(next(o["id"] for o in options if name in o["name"]))


async def launch(client: aiohttp.ClientSession, gw: GatewayUnderTest, name: str = "Demo",
                 user: str = "alice") -> None:
    oid = await option_id(client, gw, name)
    async with client.post(gw.url(f"{API}launch?id={oid}"), headers=auth(gw, user)) as resp:
        assert (resp.status, await resp.text()) == (200, "Success")


async def eventually(check: Callable[[], Any], within: float = 10.0,
                     interval: float = 0.05) -> Any:
    """Poll ``check`` (awaiting it when async) every ``interval`` seconds until it returns
    something truthy, and return that (fails after ``within`` seconds). The one place tests
    wait for something they cannot be told about."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s: {check}")
        await asyncio.sleep(interval)


async def status_becomes(client: aiohttp.ClientSession, gw: GatewayUnderTest, wanted: str,
                         within: float = 20.0, user: str = "alice") -> dict[str, Any]:
    seen: list[dict[str, Any]] = [{}]

    async def reached() -> bool:
        seen[0] = await get_json(client, gw, "status", user)
        return bool(seen[0]["status"] == wanted)
    try:
        await eventually(reached, within, interval=0.1)
    except AssertionError:
        raise AssertionError(f"status stayed {seen[0].get('status')!r}, "
                             f"wanted {wanted!r}") from None
    return seen[0]


async def exchange(port: int, request: str | bytes, *, source: str = "127.0.0.1",
                   head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` exactly as written over a raw loopback socket (from ``source``; no
    client normalises anything) and read the answer until the server closes, or only its head
    (``head_only``, for a connection kept open); returns (status, lower-cased headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(request.encode() if isinstance(request, str) else request)
        await writer.drain()
        data = await asyncio.wait_for(
            reader.readuntil(b"\r\n\r\n") if head_only else reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, body


# -- the hatchway command, as an operator runs it ---------------------------------------------

HATCHWAY = [str(Path(sys.executable).with_name("hatchway"))]
if not Path(HATCHWAY[0]).exists():
    HATCHWAY = [sys.executable, "-m", "proxy"]

DEMO = {"name": "Demo", "command": [sys.executable, "-m", "launcher.demo", "--port", "{port}",
                                   "--base-url", "{base_url}"],
        "path-rewrite": "/lw-workspace/proxy/", "ready-probe": "/lw-workspace/proxy/api/status"}


def free_port() -> int:
    """A free loopback port for a process the test starts later, chosen below the kernel's
    ephemeral range (32768-60999): a port 0 would pick is handed to outgoing connections too,
    and one of those may take it before the process binds (seen: Envoy "Address already in
    use" in CI)."""
    for _ in range(200):
        port = random.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port below the ephemeral range")


def clean_env() -> dict[str, str]:
    """The user's environment minus hatchway's own variables, so the command's defaults apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HATCHWAY_")}


def wait_until(check: Callable[[], bool], within: float, *, interval: float = 0.1,
               failure: Callable[[], str] = lambda: "condition not met") -> None:
    """``eventually`` for code without an event loop (starting a process in a fixture):
    poll ``check`` until it holds, else fail with ``failure()`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, failure()
        time.sleep(interval)


def listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_for_banner_url(out: Path, proc: subprocess.Popen[bytes], within: float = 20) -> str:
    """The URL ``hatchway serve`` tells a newcomer to open, once that URL answers."""
    banner = r"Open (http://([^:/\s]+):(\d+)/\S*) in a browser"

    def answers() -> bool:
        assert proc.poll() is None, f"hatchway serve exited: {out.read_text()}"
        found = re.search(banner, out.read_text())
        return found is not None and listening(found[2], int(found[3]))
    wait_until(answers, within,
               failure=lambda: f"no URL to open in the banner: {out.read_text()!r}")
    found = re.search(banner, out.read_text())
    assert found is not None
    return found[1]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HATCHWAY, *args], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=20, check=False)


@contextmanager
def serving(tmp_path: Path, *args: str) -> Iterator[tuple[str, Path]]:
    """``hatchway serve`` running; yields the URL its banner prints and its stderr file."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([*HATCHWAY, "serve", "--port", str(free_port()), *args],
                                cwd=tmp_path, env=clean_env(), stdout=stdout, stderr=stderr)
    try:
        yield wait_for_banner_url(out, proc), err
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    assert code == 0, f"hatchway serve exited {code} on SIGTERM: {err.read_text()}"


def workers_of(config: str) -> list[int]:
    """The worker processes (multiprocessing spawn children) of ``hatchway serve`` run with
    ``--config config``, read from /proc."""
    procs: dict[int, tuple[int, bytes]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(entry.name)] = (ppid, cmdline)
    parents = {pid for pid, (_, cmd) in procs.items() if config.encode() in cmd}
    return [pid for pid, (ppid, cmd) in procs.items()
            if ppid in parents and b"spawn_main" in cmd]


def get(url: str, **headers: str) -> tuple[int, str, dict[str, str]]:
    """One plain GET with no redirects followed (urllib would follow them)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                     headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), dict(resp.getheaders())
    finally:
        conn.close()


# -- pay models: moto's DynamoDB on loopback (tests/test_paymodels.py, test_hatchery_fixtures.py)

def aws_env(nowhere: Path) -> dict[str, str]:
    """Fake credentials for moto, and no profile of this machine's (``nowhere`` is no file)."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(nowhere),
            "AWS_SHARED_CREDENTIALS_FILE": str(nowhere)}


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server mode: a real HTTP DynamoDB on 127.0.0.1; yields its URL. (moto and boto3
    are imported here: they take ~0.4 s, and most test runs never need them.)"""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def create_paymodel_table(url: str, name: str) -> Any:
    """A pay-model table with Hatchery's keys (user_id, bmh_workspace_id); its boto3 client."""
    import boto3

    db = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=url,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    db.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"},
                   {"AttributeName": "bmh_workspace_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"},
                              {"AttributeName": "bmh_workspace_id", "AttributeType": "S"}])
    return db


# -- Kubernetes: what a Go Hatchery creates ---------------------------------------------------

USER = "alice@example.org"
ESC = "alice-40example-2eorg"
SERVICE = f"h-{ESC}-s"
def hatchery_annotation(namespace: str = NAMESPACE) -> str:
    """Hatchery's pods.go ambassadorYaml, filled in as it fills it (use-tls "false")."""
    return f"""---
apiVersion: ambassador/v1
kind:  Mapping
name:  {ESC}-mapping
prefix: /
headers:
  remote_user: {USER}
service: {SERVICE}.{namespace}.svc.cluster.local:80
bypass_auth: true
timeout_ms: 300000
use_websocket: true
rewrite: /lw-workspace/proxy/
tls: false
"""


HATCHERY_ANNOTATION = hatchery_annotation()


def hatchery_service(namespace: str = NAMESPACE) -> dict[str, object]:
    """The Service a Go Hatchery creates (createLocalK8sPod) in ``namespace``, byte for byte in
    its fields."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": SERVICE, "labels": {"app": f"hatchery-{ESC}"},
                         "annotations": {"getambassador.io/config":
                                         hatchery_annotation(namespace)}},
            "spec": {"type": "ClusterIP", "selector": {"app": f"hatchery-{ESC}"},
                     "ports": [{"name": f"hatchery-{ESC}", "protocol": "TCP", "port": 80,
                                "targetPort": 8888}]}}


def env_of(pod: dict[str, Any], container: str) -> dict[str, str]:
    """A container's environment in a pod object, as a mapping."""
    (c,) = [c for c in pod["spec"]["containers"] if c["name"] == container]
    return {e["name"]: e.get("value", "") for e in c.get("env") or []}


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}
    return {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}


@dataclass
class JWKSServer:
    """A key server that counts the requests it gets; tests change ``doc`` to rotate keys."""

    doc: dict[str, Any]
    url: str = ""
    requests: int = 0
    status: int = 200
    log: list[float] = field(default_factory=list)


# -- deploy/'s manifests (tests/k8s/test_deploy.py, test_monitoring.py) --
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"  # the manifests (tests/k8s)
NOT_KUBERNETES = {"kustomize.config.k8s.io/v1beta1", "kind.x-k8s.io/v1alpha4"}
# Emissary and Prometheus-operator CRDs: no schema in kubernetes-validate
CUSTOM_RESOURCES = ("getambassador.io/", "monitoring.coreos.com/")


def documents(under: Path = DEPLOY) -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes-shaped document in deploy/'s YAML files (not the chart's templates,
    which only helm reads: tests/helm)."""
    docs = []
    for path in sorted(under.rglob("*.yaml")):
        if (DEPLOY / "helm") in path.parents:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "apiVersion" in doc:
                docs.append((f"{path.relative_to(DEPLOY)}:{doc.get('kind')}", doc))
    return docs


def manifests(under: Path = DEPLOY) -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, doc in documents(under)
            if doc["apiVersion"] not in NOT_KUBERNETES
            and not doc["apiVersion"].startswith(CUSTOM_RESOURCES)]


def of_kind(kind: str, under: Path = DEPLOY / "install.yaml") -> list[dict[str, Any]]:
    """The objects of ``kind`` in one of deploy/'s files (default: the kustomize base)."""
    return [doc for doc in yaml.safe_load_all(under.read_text())
            if isinstance(doc, dict) and doc.get("kind") == kind]


# -- Fence-shaped sessions for gateways in jwks mode (the admin view, the stock revproxy) --
FENCE_ISSUER = "https://commons.example.org/user"


def fence_token(key: Any, user: str, *, issuer: str = FENCE_ISSUER, kid: str = "rsa-1",
                **claims: Any) -> str:
    """A Fence access token for ``user``, claims as Fence writes them (no client: ``azp``
    empty, so Arborist judges the user alone)."""
    import uuid

    import jwt

    now = int(time.time())
    body = {"pur": "access", "iss": issuer, "aud": ["gen3", "openid", "user"], "sub": "7",
            "iat": now, "exp": now + 1200, "jti": uuid.uuid4().hex, "azp": "",
            "scope": ["openid", "user", "data"], "context": {"user": {"name": user}}, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})
