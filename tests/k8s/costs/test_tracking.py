"""Cost tracking on the Kubernetes backend as a commons relies on it: a terminated workspace
is charged its runtime once — by the Lease leader only, across gateway restarts, leader
changes and table outages — and a charge that reaches the hard limit stops the next launch.
Pods and their lifetimes go through the emulated API server (with the test kubelet where a
workspace runs), rows through moto's DynamoDB server with Hatchery's keys; amounts are worked
out by hand from the option's requests (Hatchery's rule: launcher/costs/pricing.py)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.kubernetes.cost_tracking import FINALIZER
from proxy.app import build_app
from proxy.devlogin import DEV_ISSUER
from proxy.gateway import GATEWAY
from proxy.settings import load_settings

from ...conftest import GatewayUnderTest
from ...helpers import NAMESPACE, create_paymodel_table
from ..conftest import HATCHERY_DOC, api_write, eventually
from ..emulator import ApiServer
from ..kubelet import Kubelet
from .conftest import PRICING, TRIAL, Table, at, delete_at, live_pods, pod_body

T0, T1 = "2026-03-02T09:00:00Z", "2026-03-02T10:30:00Z"  # 1.5 h
# The demo option (0.5 CPU, 256Mi) and its sidecar (0.1 CPU, 64Mi) for 1.5 h:
# 0.6 × 0.0425 × 1.5 + 0.3125 × 0.00575 × 1.5 = 0.0409453125 → "0.0409"
DEMO_90_MIN = Decimal("0.0409")
ONE_CPU_90_MIN = Decimal("0.0638")  # 1 × 0.0425 × 1.5 = 0.06375 (a hair above, in binary)
WORKSPACE = [{"name": "workspace", "requests": {"cpu": "1", "memory": "0"}}]


def a_pod(user: str, pay_model_id: str, **kw: Any) -> dict[str, Any]:
    return pod_body(f"hatchery-{user}", user=user, pay_model_id=pay_model_id, created=T0,
                    containers=WORKSPACE, **kw)


async def lease_write(api: ApiServer, method: str, body: dict[str, Any], name: str = ""
                      ) -> None:
    url = f"{api.url}/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
    async with aiohttp.ClientSession() as http, http.request(
            method, url + (f"/{name}" if name else ""), json=body) as resp:
        assert resp.status < 300, await resp.text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StoppableMoto:
    """moto's DynamoDB on a fixed port that a test takes away and brings back (its tables
    live in the test process and survive)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._make = lambda: ThreadedMotoServer(ip_address="127.0.0.1", port=self.port,
                                                verbose=False)
        self.server = self._make()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = self._make()
        self.server.start()


@pytest.fixture
def flaky_moto() -> Iterator[StoppableMoto]:
    moto = StoppableMoto()
    yield moto
    moto.stop()


async def test_a_terminated_workspace_is_charged_its_runtime_on_a_new_trial_pay_model(
        api: ApiServer, kubelet: Kubelet, table: Table, cost_backend: Any) -> None:
    backend = await cost_backend()
    option = backend.hatchery.options[0]
    api.emulator.now = lambda: at(T0)
    await backend.launch("alice", option, None)
    sent = api.emulator.sent("pods")[0]["metadata"]
    assert sent["finalizers"] == [FINALIZER]
    await eventually(lambda: kubelet.pods.get("hatchery-alice") and
                     kubelet.pods["hatchery-alice"].ready)
    api.emulator.now = lambda: at(T1)
    assert await backend.terminate("alice")
    await eventually(lambda: not live_pods(api))
    [row] = table.rows()
    assert row["bmh_workspace_id"]["S"] == sent["annotations"]["bmh_workspace_id"]
    assert (row["user_id"], row["workspace_type"], row["request_status"]) == (
        {"S": "alice"}, {"S": "Trial Workspace"}, {"S": "active"})
    assert row["current_pay_model"] == {"BOOL": True}
    assert Decimal(row["total-usage"]["N"]) == DEMO_90_MIN


async def test_a_pod_deleted_while_no_gateway_runs_is_charged_once_when_one_is_back(
        api: ApiServer, table: Table, cost_backend: Any) -> None:
    first = await cost_backend()
    await eventually(lambda: first.is_leader)
    await api_write(api, "POST", "pods", a_pod("bob", "b-1"))
    await eventually(lambda: table.row("bob", "b-1"))  # the Trial row, when first seen
    await first.close()  # the only gateway is down (a restart, a rollout)...
    await delete_at(api, "hatchery-bob", T1)  # ...when the workspace goes
    assert live_pods(api) == ["hatchery-bob"]  # held for its charge
    second = await cost_backend()
    await eventually(lambda: not live_pods(api))
    assert table.usage("bob", "b-1") == ONE_CPU_90_MIN
    await second.close()
    restarted = await cost_backend()  # and again: nothing is charged twice
    await eventually(lambda: restarted.costs is not None and restarted.costs.health()["leader"])
    assert table.usage("bob", "b-1") == ONE_CPU_90_MIN


async def test_a_charge_repeated_after_a_crash_adds_nothing(
        api: ApiServer, table: Table, cost_backend: Any) -> None:
    pod = await api_write(api, "POST", "pods", a_pod("carl", "c-1"))
    # The leader before had charged the pod and died before letting it go:
    table.put({"user_id": {"S": "carl"}, "bmh_workspace_id": {"S": "c-1"},
               "request_status": {"S": "active"}, "current_pay_model": {"BOOL": True},
               "total-usage": {"N": "7.0638"},
               "hatchway-charged-pod": {"S": pod["metadata"]["uid"]}})
    await delete_at(api, "hatchery-carl", T1)
    await cost_backend()
    await eventually(lambda: not live_pods(api))  # let go...
    assert table.usage("carl", "c-1") == Decimal("7.0638")  # ...not charged again


async def test_a_replica_without_the_lease_writes_nothing_and_the_next_leader_charges(
        api: ApiServer, table: Table, cost_backend: Any) -> None:
    await lease_write(api, "POST", {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "hatchway-culler"},
        "spec": {"holderIdentity": "another-gateway", "leaseDurationSeconds": 60,
                 "acquireTime": "2026-03-02T09:00:00.000000Z",
                 "renewTime": "2026-03-02T09:00:00.000000Z", "leaseTransitions": 0}})
    follower = await cost_backend(lease_seconds=60.0, lease_renew_seconds=0.1)
    await api_write(api, "POST", "pods", a_pod("dana", "d-1"))
    await delete_at(api, "hatchery-dana", T1)
    await eventually(lambda: follower.pods is not None and follower.pods.synced.is_set())
    with pytest.raises(AssertionError):  # a second of waiting: the pod stays, no row
        await eventually(lambda: not live_pods(api) or table.rows(), within=1.0)
    await lease_write(api, "PUT", {  # the leader stops and releases the Lease
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "hatchway-culler"},
        "spec": {"holderIdentity": "", "leaseDurationSeconds": 1}}, name="hatchway-culler")
    await eventually(lambda: not live_pods(api))
    assert follower.is_leader
    assert table.usage("dana", "d-1") == ONE_CPU_90_MIN


async def test_two_replicas_charge_a_pod_once(
        api: ApiServer, table: Table, cost_backend: Any) -> None:
    replicas = [await cost_backend(), await cost_backend()]
    await eventually(lambda: sum(r.is_leader for r in replicas) == 1)
    await api_write(api, "POST", "pods", a_pod("eve", "e-1"))
    await delete_at(api, "hatchery-eve", T1)
    await eventually(lambda: not live_pods(api))
    await eventually(lambda: table.usage("eve", "e-1") == ONE_CPU_90_MIN)


async def test_while_the_table_is_unreachable_the_pod_waits_and_is_charged_when_it_is_back(
        api: ApiServer, flaky_moto: StoppableMoto, cost_backend: Any,
        kube_settings: Any) -> None:
    name = "flaky-paymodels"
    db = create_paymodel_table(flaky_moto.url, name)
    backend = await cost_backend(table_name=name, paymodels_url=flaky_moto.url)
    await api_write(api, "POST", "pods", a_pod("finn", "f-1"))
    flaky_moto.stop()
    await delete_at(api, "hatchery-finn", T1)
    assert backend.costs is not None
    await eventually(lambda: backend.costs.health()["waiting"] == 1)  # type: ignore[union-attr]
    assert live_pods(api) == ["hatchery-finn"]  # Terminating: held, not forgotten
    flaky_moto.start()
    await eventually(lambda: not live_pods(api), within=20)
    row = db.get_item(TableName=name, Key={"user_id": {"S": "finn"},
                                           "bmh_workspace_id": {"S": "f-1"}})["Item"]
    assert Decimal(row["total-usage"]["N"]) == ONE_CPU_90_MIN


async def test_a_charge_not_written_within_the_hold_is_logged_as_lost_and_the_pod_goes(
        api: ApiServer, flaky_moto: StoppableMoto, cost_backend: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    create_paymodel_table(flaky_moto.url, "lost-paymodels")
    backend = await cost_backend(table_name="lost-paymodels", paymodels_url=flaky_moto.url,
                                 hold_seconds=1.0)
    await api_write(api, "POST", "pods", a_pod("gus", "g-1"))
    flaky_moto.stop()
    await delete_at(api, "hatchery-gus", T1)
    await eventually(lambda: not live_pods(api), within=20)
    assert backend.costs is not None and backend.costs.health()["lost"] == 1
    lost = [r for r in caplog.records if r.levelno == logging.ERROR and "lost" in r.message]
    assert lost and "0.0638" in lost[0].message and "gus" in lost[0].message


async def test_with_tracking_off_pods_an_earlier_run_held_are_let_go_uncharged(
        api: ApiServer, table: Table, cost_backend: Any) -> None:
    await api_write(api, "POST", "pods", a_pod("hana", "h-1"))  # held by an earlier run
    backend = await cost_backend(table_name="")  # the table is gone from hatchery.json
    await delete_at(api, "hatchery-hana", T1)
    await eventually(lambda: not live_pods(api))
    assert backend.costs is not None and not backend.costs.tracking
    assert table.rows() == []


async def test_with_tracking_off_and_no_held_pod_no_pod_is_watched(
        api: ApiServer, cost_backend: Any) -> None:
    backend = await cost_backend(table_name="")
    await eventually(lambda: backend._costs_start is not None and backend._costs_start.done())
    assert backend.pods is None and backend.costs is None


async def test_a_charge_over_the_hard_limit_stops_the_next_launch(
        api: ApiServer, kubelet: Kubelet, kubeconfig: str, moto_url: str, table: Table,
        tmp_path: Path, aiohttp_server: Any) -> None:
    """Through the gateway: the portal's launch, terminate, and launch again."""
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps({
        **HATCHERY_DOC, "pricing": PRICING, "pay-models-dynamodb-table": table.name,
        "default-pay-model": {**TRIAL, "hard-limit": 0.04}}))
    settings = load_settings([str(hatchery)], environ={}, overrides={
        "state_dir": str(tmp_path / "state"), "backend": "kubernetes",
        "paymodels": {"endpoint_url": moto_url},
        "kubernetes": {"kubeconfig": kubeconfig, "api_keys": False,
                       "request_timeout_seconds": 2, "retries": 1,
                       "retry_backoff_seconds": 0.05, "lease_seconds": 1,
                       "lease_renew_seconds": 0.2}})
    app = build_app(settings)
    gw = GatewayUnderTest(await aiohttp_server(app, host="127.0.0.1"), app[GATEWAY],
                          app.get(DEV_ISSUER))
    headers = {"Authorization": f"Bearer {gw.token('ivy')}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(gw.url("/lw-workspace/options"), headers=headers) as resp:
            demo = (await resp.json())[0]["id"]

        async def launch() -> tuple[int, str]:
            async with http.post(gw.url(f"/lw-workspace/launch?id={demo}"),
                                 headers=headers) as resp:
                return resp.status, await resp.text()

        api.emulator.now = lambda: at(T0)
        assert await launch() == (200, "Success")
        api.emulator.now = lambda: at(T1)  # 1.5 h: 0.0409, over the limit of 0.04
        async with http.post(gw.url("/lw-workspace/terminate"), headers=headers) as resp:
            assert resp.status == 200
        await eventually(lambda: not live_pods(api))

        async with http.get(gw.url("/lw-workspace/allpaymodels"), headers=headers) as resp:
            current = (await resp.json())["current_pay_model"]
        assert (current["request_status"], current["total-usage"]) == ("above limit", 0.0409)
        assert await launch() == (500, "Paymodel is not active. Launch forbidden\n")
