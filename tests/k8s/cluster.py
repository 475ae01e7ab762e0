"""The cluster a Kubernetes test runs against, as the test sees it: an API server URL, the user
namespace, the kubeconfig hatchway uses, and REST calls as an operator (or another Hatchery)
would make them.

Two kinds stand behind the one interface: the real control plane (tests/cluster/: the
default; a fresh namespace per test, hatchway authenticated as its ServiceAccount under the
Role it ships) and the emulator (tests/k8s/emulator.py), which modules doing fault injection
pick by overriding the ``cluster`` fixture.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..cluster import podnetwork
from .kubelet import Kubelet

JSON = "application/json"
MERGE = "application/merge-patch+json"
_GROUPS = {"endpointslices": "apis/discovery.k8s.io/v1", "leases": "apis/coordination.k8s.io/v1",
           "roles": "apis/rbac.authorization.k8s.io/v1",
           "rolebindings": "apis/rbac.authorization.k8s.io/v1"}


def api_path(plural: str, namespace: str, name: str = "", sub: str = "") -> str:
    """The REST path of a namespaced collection, object or subresource."""
    path = f"/{_GROUPS.get(plural, 'api/v1')}/namespaces/{namespace}/{plural}"
    return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


class ApiRefused(AssertionError):
    """The API server said no to a call a test made as the operator."""

    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body
        super().__init__(f"{status}: {body}")


@dataclass
class Cluster:
    url: str
    namespace: str
    kubeconfig: str  # hatchway's
    ssl: ssl.SSLContext | None = None  # the operator's client certificate (real cluster)
    real: bool = True
    _http: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)

    async def __aenter__(self) -> Cluster:
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            ssl=self.ssl if self.ssl is not None else False))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def request(self, method: str, path: str, body: Any = None,
                      content_type: str = JSON) -> tuple[int, Any]:
        assert self._http is not None
        data = None if body is None else json.dumps(body)
        async with self._http.request(method, self.url + path, data=data,
                                      headers={"Content-Type": content_type}) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def write(self, method: str, plural: str, body: Any = None, name: str = "",
                    sub: str = "", content_type: str = "") -> dict[str, Any]:
        """Write as another actor would (an operator, a Go Hatchery): must succeed."""
        kind = content_type or (MERGE if method == "PATCH" else JSON)
        status, answer = await self.request(method, api_path(plural, self.namespace, name, sub),
                                            body, kind)
        if status >= 300:
            raise ApiRefused(status, answer)
        return dict(answer)

    async def get(self, plural: str, name: str) -> dict[str, Any] | None:
        status, answer = await self.request("GET", api_path(plural, self.namespace, name))
        if status == 404:
            return None
        if status >= 300:
            raise ApiRefused(status, answer)
        return dict(answer)

    async def items(self, plural: str) -> list[dict[str, Any]]:
        status, answer = await self.request("GET", api_path(plural, self.namespace))
        if status >= 300:
            raise ApiRefused(status, answer)
        return sorted(answer.get("items") or [], key=lambda o: o["metadata"]["name"])

    async def names(self, plural: str) -> list[str]:
        return [o["metadata"]["name"] for o in await self.items(plural)]

    @property
    def pod_address(self) -> str:
        """Where this cluster's pods listen: loopback on the emulator, the pod network's
        address on the real API server (which refuses loopback endpoints)."""
        return podnetwork.POD_ADDRESS if self.real else "127.0.0.1"

    def kubelet(self, **kw: Any) -> Kubelet:
        """A node for this cluster's namespace (start it with ``async with``); on the real
        API server its pods get the pod network's address, not loopback."""
        if not self.real:
            return Kubelet(self.url, self.namespace, **kw)
        podnetwork.require_pod_address()
        return Kubelet(self.url, self.namespace, ssl_context=self.ssl, register=True,
                       node=f"node-{self.namespace}", address=self.pod_address, **kw)

    async def none(self, plural: str) -> bool:
        return not await self.items(plural)

    async def none_live(self) -> bool:
        return not await self.live_pods()

    async def live_pods(self) -> list[dict[str, Any]]:
        """Pods not being deleted."""
        return [p for p in await self.items("pods")
                if not p["metadata"].get("deletionTimestamp")]


def endpoint_slice(service: str, port: int, ready: bool = True, port_name: str = "",
                   address: str = "127.0.0.1") -> dict[str, Any]:
    """The EndpointSlice the controller keeps for ``service``: one endpoint at ``address``
    (a real API server refuses loopback: pass ``Cluster.pod_address``)."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-abcde",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}],
            "ports": [{"name": port_name, "protocol": "TCP", "port": port}]}
