"""The emulated Kubernetes API for the soak (tests/k8s/emulator.py's ApiServer, the one the
tests start, on a port fixed up front so it can go away and come back), and the restart with
many routes on the Kubernetes backend: ``--routes`` users' Services and EndpointSlices in the
emulator, hatchway started cold, until every user's route has answered 200 once through it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.procs import Children, free_port
from benchmarks.soak_gateway import HATCHWAY, deployed_only, gateway_env
from benchmarks.soak_restart import Restart, restart_times
from launcher.kubernetes.specs import service_spec
from launcher.options import parse_hatchery_config
from tests.k8s import emulator as emulated
from tests.k8s.cluster import endpoint_slice
from tests.k8s.emulator import write_kubeconfig
from tests.k8s.kubelet import DEMO_IMAGE, SIDECAR_IMAGE

PROXY = "/lw-workspace/proxy/"
NAMESPACE = "jupyter-pods-soak"
HATCHERY = {
    "user-namespace": NAMESPACE, "sub-dir": "/lw-workspace", "user-volume-size": "1Gi",
    "sidecar": {"cpu-limit": "0.1", "memory-limit": "64Mi", "image": SIDECAR_IMAGE},
    "containers": [{
        "name": "Demo workspace", "cpu-limit": "0.5", "memory-limit": "256Mi",
        "image": DEMO_IMAGE, "target-port": 8888, "args": ["--base-url", PROXY],
        "path-rewrite": PROXY, "ready-probe": PROXY + "api/status",
        "user-volume-location": "/home/jovyan/pd"}],
}


class ApiServer(emulated.ApiServer):
    """The tests' API server on a port chosen up front below the ephemeral range, so no
    outgoing connection takes it while it is away (``stop`` refuses connections, ``start``
    serves the same objects on the same port)."""

    def __init__(self) -> None:
        super().__init__(port=free_port())

    def forget_requests(self) -> None:
        """Empty kmock's request log: kmock matches each request against the whole log (its
        cost grows with every request served; 2,000 creates took minutes). The soak asserts
        nothing on it. Only between requests, never with one in flight."""
        self.emulator._requests.clear()

    def refuses(self) -> bool:
        """Whether a connection to the API port is refused right now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return False
        except ConnectionRefusedError:
            return True
        except OSError:
            return False


async def publish_routes(api: ApiServer, users: list[str], upstream_port: int) -> None:
    """Each user's Service as hatchway writes it, and a ready EndpointSlice pointing at the
    benchmark upstream (the pods themselves are not needed for routing)."""
    option = parse_hatchery_config(HATCHERY, "soak hatchery.json").options[0]
    core = f"{api.url}/api/v1/namespaces/{NAMESPACE}"
    discovery = f"{api.url}/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}"
    gate = asyncio.Semaphore(32)

    async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> None:
        async with gate, http.post(url, json=body) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"{url}: {resp.status} {await resp.text()}")

    async def one(http: aiohttp.ClientSession, user: str) -> None:
        service = service_spec(user, option, NAMESPACE, None)
        name = service["metadata"]["name"]
        await post(http, f"{core}/services", service)
        await post(http, f"{discovery}/endpointslices", endpoint_slice(
            name, upstream_port, port_name=service["spec"]["ports"][0].get("name", "")))

    async with aiohttp.ClientSession() as http:
        for at in range(0, len(users), 50):
            await asyncio.gather(*(one(http, u) for u in users[at:at + 50]))
            api.forget_requests()


def k8s_settings(tmp: Path, kubeconfig: Path, hatchery: Path) -> Path:
    """hatchway on the Kubernetes backend, default timings, routes straight to endpoints (no
    cluster DNS here), no Fence (API keys off)."""
    path = tmp / "k8s.yaml"
    path.write_text(yaml.safe_dump({
        "backend": "kubernetes", "hatchery_config": str(hatchery),
        "kubernetes": {"kubeconfig": str(kubeconfig), "api_keys": False,
                       "route_to": "endpoints"},
        "limits": {"max_connections_per_client": 0}}))
    return path


async def restart_k8s(children: Children, tmp: Path, upstream_port: int, port: int,
                      tokens: dict[str, str], runs: int, codes: dict[str, str],
                      stop: Callable[[Any], None]) -> dict[str, list[Restart]]:
    """Cold starts on the Kubernetes backend, as deployed (``deployed_only``): the routes
    come from the first list of the Service and EndpointSlice watches."""
    async with ApiServer() as api:
        await publish_routes(api, list(tokens), upstream_port)
        hatchery = tmp / "hatchery.json"
        hatchery.write_text(json.dumps(HATCHERY))
        settings = k8s_settings(tmp, write_kubeconfig(tmp / "kubeconfig", api.url), hatchery)
        shim = deployed_only(tmp)

        def spawn(variant: str) -> Any:
            return children.spawn(
                [*HATCHWAY, "serve", "-c", str(settings), "--port", str(port),
                 "--state-dir", str(tmp / "state"), "--log-level", "WARNING"],
                log=tmp / "hatchway-k8s.log", role="proxy",
                env=gateway_env(codes[variant], shim))

        return await restart_times(spawn, stop, port, tokens, runs, list(codes))
