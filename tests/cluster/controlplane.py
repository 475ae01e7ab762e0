"""A real Kubernetes control plane for the tests: etcd and kube-apiserver on loopback.

Both are built from their Go modules by ``make cluster`` (tests/cluster/apiserver and
tests/cluster/etcd, into .build/bin). The API server runs as a cluster's does where hatchway
meets it: TLS with a client CA, RBAC (``--authorization-mode=Node,RBAC``), bound
service-account tokens from the TokenRequest API, and the default admission plugins plus
kubeadm's NodeRestriction (NamespaceLifecycle, ServiceAccount, LimitRanger, ResourceQuota,
PodSecurity, StorageObjectInUseProtection, DefaultTolerationSeconds, Priority, ...).

What no cluster component here does: no scheduler, kubelet or controller-manager runs. Nothing
creates a namespace's ``default`` ServiceAccount, binds or provisions volumes, removes the
``kubernetes.io/pvc-protection`` finalizer, finishes deleting a namespace, or runs a pod: the
tests' own node (tests/k8s/kubelet.py) schedules, runs and reports pods, and fixtures create
what controllers would.

Everything is synchronous (subprocess, http.client) so that any test, sync or async, and any
fixture scope can use it; one control plane serves a whole session (tests/conftest.py).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import ipaddress
import itertools
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".build" / "bin"
BUILD_COMMAND = "make cluster"
ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.96.0.0/16"  # ClusterIPs are only allocated, never routed to, here


class ControlPlaneError(RuntimeError):
    """The control plane is missing or did not come up; the message says what to do."""


def binaries() -> dict[str, Path]:
    """The built binaries, or ControlPlaneError naming the command that builds them."""
    found = {name: BIN / name for name in ("etcd", "kube-apiserver")}
    missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
    if missing:
        raise ControlPlaneError(
            f"{', '.join(missing)} not built in {BIN}: run `{BUILD_COMMAND}` (make test runs "
            "it) to build the tests' control plane from tests/cluster/")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, so no server outlives a crash."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# -- certificates ----------------------------------------------------------------------------

def _pem_key(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def _cert(subject: x509.Name, key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool,
          sans: Sequence[x509.GeneralName] = (), client: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        usage = x509.oid.ExtendedKeyUsageOID
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [usage.CLIENT_AUTH if client else usage.SERVER_AUTH]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _name(common: str, org: str = "") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


class _Pki:
    """A cluster CA, the API server's serving certificate, client certificates and the
    service-account signing key, written as files the API server reads."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_name = _name("hatchway-test-ca")
        ca = _cert(self.ca_name, self.ca_key, self.ca_name, self.ca_key, ca=True)
        self.ca_file = self._write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))
        key = ec.generate_private_key(ec.SECP256R1())
        serving = _cert(_name("kube-apiserver"), key, self.ca_name, self.ca_key, ca=False, sans=[
            x509.DNSName("localhost"), x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        self.serving = (self._write("apiserver.crt",
                                    serving.public_bytes(serialization.Encoding.PEM)),
                        self._write("apiserver.key", _pem_key(key)))
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # kubeadm's
        self.sa_key = self._write("sa.key", _pem_key(sa_key))
        self.sa_pub = self._write("sa.pub", sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def _write(self, name: str, data: bytes) -> Path:
        path = self.where / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def client(self, user: str, *groups: str) -> tuple[Path, Path]:
        """A client certificate: the API server reads CN as the user, O as the groups."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        subject = x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, user)])
        cert = _cert(subject, key, self.ca_name, self.ca_key, ca=False, client=True)
        stem = user.replace(":", "-")
        return (self._write(f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
                self._write(f"{stem}.key", _pem_key(key)))


# -- processes -------------------------------------------------------------------------------

class _Server:
    """One server process with its log file; ``tail`` is what an error shows."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ApiServer:
    """One kube-apiserver process of the control plane (a second one is an HA replica)."""

    def __init__(self, plane: ControlPlane, name: str, extra_args: Sequence[str]) -> None:
        self.plane, self.name = plane, name
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        pki = plane._pki
        argv = [
            str(plane.binaries["kube-apiserver"]),
            f"--etcd-servers={plane.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}", f"--cert-dir={plane.workdir / name}",
            f"--tls-cert-file={pki.serving[0]}", f"--tls-private-key-file={pki.serving[1]}",
            f"--client-ca-file={pki.ca_file}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",  # kubeadm's, beside the defaults
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The 'kubernetes' Service's endpoints would name 127.0.0.1, which Endpoints
            # validation refuses; nothing here reaches the API server through that Service.
            "--endpoint-reconciler-type=none",
            "--profiling=false", "-v=1",
            *extra_args,
        ]
        (plane.workdir / name).mkdir(exist_ok=True)
        self.server = _Server(name, argv, plane.workdir / f"{name}.log")
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.plane.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.server.alive():
                raise ControlPlaneError(f"{self.name} exited ({self.server.process.returncode})"
                                        f"; its log ({self.server.log}) ends:\n"
                                        f"{self.server.tail()}")
            try:
                status, body = self.plane.request("GET", "/readyz", server=self.url)
                if status == 200:
                    return
                last = f"/readyz answered {status}: {str(body)[-300:]}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.2)
        self.server.stop(0)
        raise ControlPlaneError(
            f"{self.name} not ready within {self.plane.start_timeout:.0f} s ({last}); its log "
            f"({self.server.log}) ends:\n{self.server.tail()}")

    def stop(self) -> None:
        self.server.stop()


class ControlPlane:
    """etcd + kube-apiserver on loopback, in a temporary directory.

    ``url``, ``ca_file`` and ``admin_kubeconfig`` reach it as the cluster admin (a client
    certificate in ``system:masters``); ``service_account_token`` and ``kubeconfig_for_token``
    reach it as a ServiceAccount, which RBAC then governs.
    """

    def __init__(self, workdir: Path | None = None, *, start_timeout: float = 120.0,
                 apiserver_args: Sequence[str] = ()) -> None:
        self.binaries = binaries()
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="hatchway-cluster-")) if workdir is None \
            else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_timeout = start_timeout
        self.apiserver_args = tuple(apiserver_args)
        self._pki = _Pki(self.workdir)
        self.ca_file = self._pki.ca_file
        self.admin_cert, self.admin_key = self._pki.client("hatchway-admin", "system:masters")
        self.etcd_url = ""
        self.etcd: _Server | None = None
        self.apiserver: ApiServer | None = None
        self.replicas: list[ApiServer] = []
        self._kubeconfigs = itertools.count(1)
        self._ssl: dict[bool, ssl.SSLContext] = {}

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        try:
            self._start_etcd()
            self.apiserver = ApiServer(self, "kube-apiserver", self.apiserver_args)
        except BaseException:
            self.stop()
            raise
        self.admin_kubeconfig = self._write_kubeconfig("admin", {
            "client-certificate": str(self.admin_cert), "client-key": str(self.admin_key)})
        return self

    def _start_etcd(self) -> None:
        client, peer = _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self.etcd = _Server("etcd", [
            str(self.binaries["etcd"]), f"--data-dir={self.workdir / 'etcd'}",
            f"--client-url={self.etcd_url}", f"--peer-url=http://127.0.0.1:{peer}"],
            self.workdir / "etcd.log")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not self.etcd.alive():
                raise ControlPlaneError(f"etcd exited ({self.etcd.process.returncode}); its "
                                        f"log ends:\n{self.etcd.tail()}")
            with contextlib.suppress(OSError, ValueError):
                if self.etcd_call("/health").get("health") == "true":
                    return
            time.sleep(0.1)
        raise ControlPlaneError(f"etcd not healthy within {self.start_timeout:.0f} s; its log "
                                f"ends:\n{self.etcd.tail()}")

    def stop(self) -> None:
        for server in [*self.replicas, self.apiserver]:
            if server is not None:
                server.stop()
        if self.etcd is not None:
            self.etcd.stop()
        if self._own_dir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_apiserver(self, name: str, extra_args: Sequence[str] = ()) -> ApiServer:
        """Another kube-apiserver on the same etcd (an HA replica, possibly configured
        otherwise, e.g. ``--watch-cache=false``); stopped with the control plane."""
        replica = ApiServer(self, name, [*self.apiserver_args, *extra_args])
        self.replicas.append(replica)
        return replica

    # -- reaching it -------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.apiserver is not None, "the control plane is not started"
        return self.apiserver.url

    def ssl_context(self, *, admin: bool = True) -> ssl.SSLContext:
        """Trusts the cluster CA; with ``admin`` also presents the admin certificate."""
        if admin not in self._ssl:
            ctx = ssl.create_default_context(cafile=str(self.ca_file))
            if admin:
                ctx.load_cert_chain(self.admin_cert, self.admin_key)
            self._ssl[admin] = ctx
        return self._ssl[admin]

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json", token: str | None = None,
                server: str | None = None, timeout: float = 30.0) -> tuple[int, Any]:
        """One API call, as the admin (or as ``token``'s owner): (status, decoded JSON or
        text)."""
        where = urlsplit(server or self.url)
        conn = http.client.HTTPSConnection(
            where.hostname or "127.0.0.1", where.port, timeout=timeout,
            context=self.ssl_context(admin=token is None))
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """``request`` that must succeed (2xx); anything else raises with the server's
        answer."""
        status, answer = self.request(method, path, body, **kw)
        if status >= 300:
            raise ControlPlaneError(f"{method} {path} → {status}: {answer}")
        return answer

    def etcd_call(self, path: str, body: Any = None) -> dict[str, Any]:
        """etcd's JSON gateway (``/health``; ``/v3/...`` as POSTs), for what only etcd does
        (compaction)."""
        where = urlsplit(self.etcd_url)
        conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port,
                                          timeout=10)
        try:
            if body is None:
                conn.request("GET", path)
            else:
                conn.request("POST", path, body=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
            answer: dict[str, Any] = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return answer

    def compact_etcd(self) -> int:
        """Compact etcd's history up to its current revision (what the API servers'
        compactor does every ``--etcd-compaction-interval``); returns that revision."""
        revision = int(self.etcd_call("/v3/kv/range", {"key": base64.b64encode(b"/").decode()}
                                      )["header"]["revision"])
        self.etcd_call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    # -- identities ----------------------------------------------------------------------

    def service_account_token(self, namespace: str, name: str,
                              audiences: Sequence[str] | None = None,
                              seconds: int = 3600) -> str:
        """A bound token for ServiceAccount ``namespace/name`` from the TokenRequest API, as
        the kubelet gets one for a pod's projected volume."""
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        answer = self.call(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        return str(answer["status"]["token"])

    def kubeconfig_for_token(self, token: str) -> Path:
        """A kubeconfig that reaches the API server with ``token`` (and trusts its CA)."""
        return self._write_kubeconfig(f"token-{next(self._kubeconfigs)}", {"token": token})

    def _write_kubeconfig(self, name: str, user: dict[str, str],
                          server: str | None = None) -> Path:
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {
                "server": server or self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": name}}],
        }
        path = self.workdir / f"kubeconfig-{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path

    def kubeconfig_at(self, kubeconfig: Path, server: str) -> Path:
        """A copy of ``kubeconfig`` pointing at another API server (a replica)."""
        doc = yaml.safe_load(kubeconfig.read_text())
        doc["clusters"][0]["cluster"]["server"] = server
        path = kubeconfig.with_name(f"{kubeconfig.stem}-{urlsplit(server).port}.yaml")
        path.write_text(yaml.safe_dump(doc))
        path.chmod(0o600)
        return path
