"""One way to talk to the Kubernetes API: where it is (kubeconfig or the pod's service
account), how long a call may take, which failures are retried, and what an answer means.

Objects travel as plain JSON dicts (``_preload_content=False``): the specs are built as dicts,
routes are read from dicts, and no model round-trip can drop a field a newer cluster sends.
A call that cannot reach the server is retried with backoff — writes only when the request
never left (connection refused), so a retry can never turn one launch into a 409 — and then
becomes ``BackendUnavailable`` (the API's 503). 404, 409 and 410 become NotFound, Conflict and
Gone, which the backend and the watches act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.config_exception import ConfigException

from launcher.errors import BackendError, BackendUnavailable, ConfigError

from .config import KubeSettings

# Every (API group, resource) hatchway touches and the verbs it uses. The Role in deploy/
# grants exactly these (tests/k8s checks), and the client refuses any other call.
PERMISSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): ("get", "list", "watch", "create", "delete"),
    ("", "services"): ("list", "watch", "create", "delete", "patch"),  # patch: activity
    ("", "persistentvolumeclaims"): ("get", "create"),
    ("", "events"): ("list", "watch"),
    ("discovery.k8s.io", "endpointslices"): ("list", "watch"),
    ("coordination.k8s.io", "leases"): ("get", "create", "update"),  # the culler's election
}
_API: dict[str, tuple[str, str, str]] = {  # kind → (group, client class, method suffix)
    "pods": ("", "core", "pod"),
    "services": ("", "core", "service"),
    "persistentvolumeclaims": ("", "core", "persistent_volume_claim"),
    "events": ("", "core", "event"),
    "endpointslices": ("discovery.k8s.io", "discovery", "endpoint_slice"),
    "leases": ("coordination.k8s.io", "coordination", "lease"),
}
_METHOD = {"get": "read", "list": "list", "watch": "list", "create": "create",
           "delete": "delete", "patch": "patch", "update": "replace"}


class ApiError(BackendError):
    """The API server answered, and said no."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"Kubernetes API {status}: {message}")


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Gone(ApiError):
    """The resourceVersion a watch asked for is no longer kept: re-list."""


def api_error(status: int, body: Any) -> ApiError:
    """``body`` as read (bytes) or parsed: a Status object's ``message`` is what the API
    server says (the 403 naming the user, verb and resource), not its JSON."""
    if isinstance(body, bytes):
        try:
            body = json.loads(body)
        except ValueError:
            pass
    message = body.get("message") if isinstance(body, dict) else None
    text = str(message or (body.decode(errors="replace") if isinstance(body, bytes) else body))
    cls = {404: NotFound, 409: Conflict, 410: Gone}.get(status, ApiError)
    return cls(status, text[:500])


async def load_configuration(cfg: KubeSettings) -> k8s.Configuration:
    """kubeconfig when one is named; in a pod its service account; else ~/.kube/config."""
    conf = k8s.Configuration()
    try:
        if not cfg.kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=conf)
        else:
            await k8s_config.load_kube_config(config_file=cfg.kubeconfig or None,
                                              context=cfg.context or None,
                                              client_configuration=conf)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        raise ConfigError("settings", "kubernetes.kubeconfig",
                          "a readable kubeconfig, or in-cluster service account credentials",
                          f"{cfg.kubeconfig or '(default)'}: {exc}") from None
    return conf


class KubeClient:
    """Namespaced calls for the resources in PERMISSIONS, answering JSON dicts."""

    def __init__(self, api: k8s.ApiClient, namespace: str, cfg: KubeSettings) -> None:
        self.api, self.namespace, self.cfg = api, namespace, cfg
        self._apis = {"core": k8s.CoreV1Api(api), "discovery": k8s.DiscoveryV1Api(api),
                      "coordination": k8s.CoordinationV1Api(api)}
        self._timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_seconds,
                                              connect=cfg.connect_timeout_seconds,
                                              sock_connect=cfg.connect_timeout_seconds)
        self._answer: asyncio.Future[None] | None = None  # see until_answered

    async def until_answered(self, seconds: float) -> None:
        """Sleep ``seconds``, or less: until any call of this client gets a healthy answer
        (below 500) from the API server. A watch backing off after an outage then re-lists
        as soon as the server is known to be back (a launch, a status read, the culler's
        Lease renewal every few seconds), not after a backoff grown to ``backoff_max_seconds``."""
        if self._answer is None or self._answer.done():
            self._answer = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._answer), seconds)

    def _answered(self, status: int) -> None:
        if status < 500 and self._answer is not None and not self._answer.done():
            self._answer.set_result(None)

    @classmethod
    async def connect(cls, cfg: KubeSettings, namespace: str) -> KubeClient:
        return cls(k8s.ApiClient(await load_configuration(cfg)), namespace, cfg)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    async def close(self) -> None:
        await self.api.close()

    def _fn(self, kind: str, verb: str) -> Callable[..., Any]:
        group, api, suffix = _API[kind]
        if verb not in PERMISSIONS[(group, kind)]:
            raise PermissionError(f"hatchway does not {verb} {kind} (see PERMISSIONS)")
        return getattr(self._apis[api], f"{_METHOD[verb]}_namespaced_{suffix}")  # type: ignore[no-any-return]

    async def _call(self, kind: str, verb: str, *, idempotent: bool = True,
                    **kwargs: Any) -> dict[str, Any]:
        fn = self._fn(kind, verb)
        delay, error = self.cfg.retry_backoff_seconds, ""
        for attempt in range(self.cfg.retries + 1):
            try:
                resp = await fn(namespace=self.namespace, _preload_content=False,
                                _request_timeout=self._timeout, **kwargs)
                async with resp:
                    status, body = resp.status, await resp.read()
                self._answered(status)
            except aiohttp.ClientConnectorError as exc:
                error = str(exc) or type(exc).__name__
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = str(exc) or type(exc).__name__
                if not idempotent:
                    break
            else:
                if status < 300:
                    return json.loads(body) if body else {}
                retryable = status >= 500 or status == 429
                if not (retryable and idempotent and attempt < self.cfg.retries):
                    raise api_error(status, body)
                error = f"HTTP {status}"
            if attempt < self.cfg.retries:
                await asyncio.sleep(delay)
                delay *= 2
        raise BackendUnavailable(f"the Kubernetes API at {self.host} cannot be reached "
                                 f"({error})")

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(kind, "get", name=name)
        except NotFound:
            return None

    async def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(kind, "create", body=body, idempotent=False)

    async def delete(self, kind: str, name: str, grace_seconds: int | None = None) -> bool:
        """False when there was nothing to delete."""
        extra: dict[str, Any] = {"propagation_policy": "Background"}
        if grace_seconds is not None:
            extra["grace_period_seconds"] = grace_seconds
        try:
            await self._call(kind, "delete", name=name, **extra)
        except NotFound:
            return False
        return True

    async def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386): only the keys given change."""
        return await self._call(kind, "patch", name=name, body=body,
                                _content_type="application/merge-patch+json")

    async def update(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace ``name``; the API server answers 409 (Conflict) when ``body``'s
        resourceVersion is no longer current: the compare-and-swap a Lease relies on."""
        return await self._call(kind, "update", name=name, body=body, idempotent=False)

    async def list(self, kind: str, *, label_selector: str = "",
                   field_selector: str = "") -> dict[str, Any]:
        selectors: dict[str, Any] = _selectors(label_selector, field_selector)
        return await self._call(kind, "list", **selectors)

    async def watch(self, kind: str, resource_version: str, *, label_selector: str = "",
                    field_selector: str = "", timeout_seconds: int = 240
                    ) -> AsyncIterator[dict[str, Any]]:
        """The events after ``resource_version`` until the server ends the stream. Raises Gone
        (re-list), BackendUnavailable (no server) or a timeout when the stream stalls."""
        fn = self._fn(kind, "watch")
        timeout = aiohttp.ClientTimeout(total=None, connect=self.cfg.connect_timeout_seconds,
                                        sock_connect=self.cfg.connect_timeout_seconds,
                                        sock_read=timeout_seconds + self.cfg.watch_stall_seconds)
        try:
            resp = await fn(namespace=self.namespace, watch=True, allow_watch_bookmarks=True,
                            resource_version=resource_version, timeout_seconds=timeout_seconds,
                            _preload_content=False, _request_timeout=timeout,
                            **_selectors(label_selector, field_selector))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnavailable(f"the Kubernetes API at {self.host} cannot be reached "
                                     f"({exc or type(exc).__name__})") from None
        self._answered(resp.status)
        try:
            if resp.status >= 300:
                raise api_error(resp.status, await resp.read())
            while line := await resp.content.readline():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise api_error(int(status.get("code") or 500), status)
                yield event
        finally:
            resp.close()


def _selectors(label_selector: str, field_selector: str) -> dict[str, str]:
    out = {}
    if label_selector:
        out["label_selector"] = label_selector
    if field_selector:
        out["field_selector"] = field_selector
    return out
