"""The operator's view on the Kubernetes backend (the real API server, the test kubelet): the
list comes from the pods in the API (so every replica shows the same), with the option's id and name
as the pod records them, and stopping deletes pod and Service and keeps the PVC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from proxy.api.devlogin import DEV_ISSUER
from proxy.gateway import GATEWAY
from proxy.serve.app import build_app
from proxy.settings import load_settings

from ..conftest import GatewayUnderTest
from .cluster import Cluster
from .conftest import eventually, hatchery_doc
from .kubelet import Kubelet

API = "/lw-workspace/"
OPERATOR = "ops"


def auth(gw: GatewayUnderTest, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.token(user)}"}


async def test_an_operator_lists_and_stops_a_pod_workspace(
        cluster: Cluster, kubelet: Kubelet, kubeconfig: str, tmp_path: Path,
        aiohttp_server: Any) -> None:
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps(hatchery_doc(cluster.namespace)))
    settings = load_settings([str(hatchery)], environ={}, overrides={
        "state_dir": str(tmp_path / "state"), "backend": "kubernetes",
        "admin": {"users": [OPERATOR]},
        "kubernetes": {"kubeconfig": kubeconfig, "api_keys": False, "route_to": "endpoints",
                       "request_timeout_seconds": 2, "retries": 1}})

    async def replica() -> GatewayUnderTest:
        app = build_app(settings)
        server = await aiohttp_server(app, host="127.0.0.1")
        return GatewayUnderTest(server, app[GATEWAY], app.get(DEV_ISSUER))

    gw, other = await replica(), await replica()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with http.get(gw.url(API + "options"), headers=auth(gw, "alice")) as r:
            demo = next(o for o in await r.json() if o["name"] == "Demo workspace")
        async with http.post(gw.url(f"{API}launch?id={demo['id']}"),
                             headers=auth(gw, "alice")) as r:
            assert (r.status, await r.text()) == (200, "Success")

        async def listed(on: GatewayUnderTest) -> list[dict[str, Any]]:
            async with http.get(on.url(API + "admin/workspaces"),
                                headers=auth(on, OPERATOR)) as r:
                assert r.status == 200, await r.text()
                return list((await r.json())["workspaces"])

        async def running() -> bool:
            rows = await listed(other)  # the other replica: the list is the cluster's
            return bool(rows) and rows[0]["status"] == "Running"

        await eventually(running, within=20)
        [row] = await listed(other)
        assert row["user"] == "alice"
        assert row["option"] == {"id": demo["id"], "name": "Demo workspace", "offered": True}
        assert row["age_seconds"] is not None and row["age_seconds"] >= 0

        async with http.get(gw.url(API + "admin/workspaces"), headers=auth(gw, "alice")) as r:
            assert r.status == 403

        async with http.post(other.url(API + "admin/workspaces/stop?user=alice"),
                             headers=auth(other, OPERATOR)) as r:
            assert (r.status, await r.json()) == (200, {"stopped": "alice"})
        await eventually(cluster.none_live, within=20)
        assert await cluster.names("services") == []
        assert await cluster.names("persistentvolumeclaims") == ["claim-alice"]  # it stays
        async def gone() -> bool:  # each replica hears of the deletion from its own watch
            return await listed(gw) == []

        await eventually(gone, within=20)
