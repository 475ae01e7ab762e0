"""A Kubernetes API outage, bounded (seconds, not the soak's minute): the API server's socket
is closed, so every call is refused. Users keep reaching their workspaces from the cached
route table, launches answer 503 with Retry-After, readiness holds (failing it would take
every replica out of the Service while routes still work), and once the API server answers
again the watches re-list at once instead of finishing a backoff grown long; a transient 5xx
is retried. On the emulator (tests/k8s/emulator.py): a real API server cannot be made to
refuse connections on cue or to answer one 503 and then recover."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
from aiohttp import web

from launcher.backend import LAUNCHING
from launcher.clock import ManualClock
from launcher.errors import BackendUnavailable
from launcher.kubernetes import KubernetesBackend
from launcher.options import HatcheryConfig
from launcher.routes import RouteTable
from proxy.api.devlogin import DEV_ISSUER
from proxy.gateway import GATEWAY
from proxy.serve.app import build_app
from proxy.serve.server import start
from proxy.settings import load_settings

from ..helpers import ESC, SERVICE, USER, hatchery_service
from .cluster import Cluster, endpoint_slice
from .conftest import (
    HATCHERY_DOC,
    NAMESPACE,
    PROXY,
    ApiServer,
    BackendFactory,
    api_write,
    eventually,
)
from .kubelet import Kubelet

pytestmark = pytest.mark.emulated
API = "/lw-workspace/"
ALICE, ALICE_POD = "alice@example.org", "hatchery-alice-40example-2eorg"


async def _upstream(aiohttp_server: Any) -> Any:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="workspace")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    return await aiohttp_server(app, host="127.0.0.1")


async def test_routes_serve_launch_is_503_and_readiness_holds_while_the_api_is_away(
        api: ApiServer, cluster: Cluster, kubeconfig: str, tmp_path: Path,
        aiohttp_server: Any) -> None:
    workspace = await _upstream(aiohttp_server)
    await api_write(cluster, "POST", "services", hatchery_service())  # a Go Hatchery's workspace
    await api_write(cluster, "POST", "endpointslices",
                    endpoint_slice(SERVICE, workspace.port, port_name=f"hatchery-{ESC}"))
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps(HATCHERY_DOC))
    settings = load_settings([str(hatchery)], environ={}, overrides={
        "state_dir": str(tmp_path / "state"), "backend": "kubernetes",
        "kubernetes": {"kubeconfig": kubeconfig, "api_keys": False, "route_to": "endpoints",
                       "dropin_ambassador": True, "request_timeout": 1, "retries": 1,
                       "retry_backoff": 0.05, "backoff_max": 0.5}})
    app = build_app(settings)
    running = await start(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{running.port}"
    auth = {"Authorization": f"Bearer {app[DEV_ISSUER].mint(USER)}"}
    try:
        async with aiohttp.ClientSession() as http:
            async def get(path: str) -> tuple[int, Any]:
                async with http.get(base + path, headers=auth) as resp:
                    text = await resp.text()
                    return resp.status, json.loads(text) if path.startswith(API + "_") or \
                        path == API + "options" else text

            await eventually(lambda: _status_is(get, PROXY + "lab", 200))
            demo = (await get(API + "options"))[1][0]["id"]
            await api.stop()
            await eventually(lambda: _watch_is(get, "down"))

            served = failed = 0
            backend = app[GATEWAY].backend
            assert isinstance(backend, KubernetesBackend) and backend.services is not None
            watch = backend.services
            relists_failed = watch.errors + 3
            async with asyncio.timeout(20):  # the outage, as the user sees it: requests
                while served + failed <= 20 or watch.errors < relists_failed:  # all along
                    async with http.get(base + PROXY + "lab", headers=auth) as resp:
                        ok = resp.status == 200 and await resp.text() == "workspace"
                    served, failed = served + ok, failed + (not ok)
            assert (failed, served > 20) == (0, True)

            async with http.post(f"{base}{API}launch?id={demo}", headers=auth) as resp:
                assert resp.status == 503
                assert resp.headers["Retry-After"].isdigit()
                assert "Kubernetes API" in await resp.text()
            assert (await get(API + "_ready"))[0] == 200
            health = await get(API + "_status")
            assert (health[0], health[1]["status"]) == (200, "Healthy")

            await api.start()
            await eventually(lambda: _watch_is(get, "ok"), within=10)
            assert await get(PROXY + "lab") == (200, "workspace")
    finally:
        await running.close()


async def _status_is(get: Callable[[str], Any], path: str, wanted: int) -> bool:
    return bool((await get(path))[0] == wanted)


async def _watch_is(get: Callable[[str], Any], state: str) -> bool:
    return bool((await get(API + "_status"))[1]["backend_health"]["watch"] == state)


async def test_a_watch_backing_off_relists_as_soon_as_the_api_server_answers_again(
        api: ApiServer, make_backend: BackendFactory) -> None:
    # every failed list/watch waits 4-8 s; no Lease renewal falls inside the test's window
    clock = ManualClock()
    backend = await make_backend(retries=0, retry_backoff=8, backoff_max=8,
                                 lease_seconds=120, lease_renew_seconds=60, clock=clock)
    await eventually(lambda: api.emulator.open_watches >= 2)
    clock.advance(1.2)  # watches that have run a while (no "closed at once" pause)
    relists = backend.health()["relists"]
    await api.stop()
    await eventually(lambda: backend.health()["watch"] == "down")
    await api.start()
    began = time.monotonic()
    assert await backend.client.get("pods", "nobody") is None  # any call the server answers
    await eventually(lambda: backend.health()["relists"] >= relists + 2, within=8)
    assert time.monotonic() - began < 2.5  # not the 4-8 s backoff


async def test_api_server_gone_launch_and_status_are_unavailable_routes_keep_serving(
        api: ApiServer, kubelet: Kubelet, make_backend: BackendFactory,
        hatchery: HatcheryConfig) -> None:
    routes = RouteTable()
    backend = await make_backend(routes, route_to="endpoints")
    await backend.launch(ALICE, hatchery.options[0], None)
    route = await eventually(lambda: (r := routes.get(ALICE)) and r.ready and r)
    await api.stop()
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        await backend.launch("bob", hatchery.options[0], None)
    with pytest.raises(BackendUnavailable):
        await backend.status(ALICE)
    assert time.monotonic() - began < 3
    await eventually(lambda: backend.health()["watch"] == "down")
    assert routes.get(ALICE) == route
    async with aiohttp.ClientSession() as http, http.get(
            f"http://{route.host}:{route.port}{route.rewrite}api/status") as resp:
        assert resp.status == 200  # the workspace itself never depended on the API server


async def test_a_transient_api_error_is_retried(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig) -> None:
    backend = await make_backend()
    await backend.launch(ALICE, hatchery.options[0], None)
    calls: list[Any] = []

    def flaky(request: Any) -> Any:
        calls.append(request)
        if len(calls) == 1:
            return kmock.Response(status=503, payload={"kind": "Status", "code": 503,
                                                       "message": "etcd leader changed"})
        raise NotImplementedError  # from now on, the emulator answers
    api.emulator[f"get /api/v1/namespaces/{NAMESPACE}/pods/{ALICE_POD}"] << flaky
    assert (await backend.status(ALICE)).status == LAUNCHING
    assert len(calls) == 2
