"""Cost tracking on the Kubernetes backend as a commons relies on it: a terminated workspace
is charged its runtime once — by the Lease leader only, across gateway restarts, leader
changes and table outages — and a charge that reaches the hard limit stops the next launch.
Pods live on the real API server (with the test node where a workspace runs): its graceful
deletion, finalizers and RBAC are the real ones. Rows go to moto's DynamoDB server with
Hatchery's keys. At $1 a requested core-second a charge is the pod's lifetime in whole
seconds, which the API server dates (the amounts Hatchery's rule gives for dictated lifetimes
are the golden's: test_golden.py)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.kubernetes.cost_tracking import FINALIZER
from launcher.options import parse_hatchery_config
from proxy.api.devlogin import DEV_ISSUER
from proxy.gateway import GATEWAY
from proxy.serve.app import build_app
from proxy.settings import load_settings

from ...conftest import GatewayUnderTest
from ...helpers import create_paymodel_table
from ..cluster import Cluster
from ..conftest import eventually, hatchery_doc
from ..kubelet import Kubelet
from .conftest import PRICING, TRIAL, Table, a_second_old, at, lifetime, pod_body, pods_left

WORKSPACE = [{"name": "workspace", "requests": {"cpu": "1", "memory": "64Mi"}}]
DEMO_CPU = Decimal("0.6")  # the demo option's 0.5 CPU and its sidecar's 0.1


def a_pod(user: str, pay_model_id: str) -> dict[str, Any]:
    """A 1-CPU workspace pod as hatchway launches it (its finalizer included)."""
    return pod_body(f"hatchery-{user}", user=user, pay_model_id=pay_model_id,
                    containers=WORKSPACE)


async def create_aged(cluster: Cluster, user: str, pay_model_id: str) -> dict[str, Any]:
    pod = await cluster.write("POST", "pods", a_pod(user, pay_model_id))
    await a_second_old(pod)
    return pod


async def delete(cluster: Cluster, name: str) -> int:
    """Delete a pod as an operator does (not yet on a node: at once, but for finalizers);
    the whole seconds it lived, as its charge will count them."""
    return lifetime(await cluster.write("DELETE", "pods", name=name))


async def gone(cluster: Cluster) -> bool:
    return not await pods_left(cluster)


def lease(holder: str) -> dict[str, Any]:
    """The culler's Lease as another gateway holding it wrote it."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "hatchway-culler"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 60,
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}


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
        cluster: Cluster, kubelet: Kubelet, table: Table, cost_backend: Any) -> None:
    backend = await cost_backend()
    await backend.launch("alice", backend.hatchery.options[0], None)
    pod = await cluster.get("pods", "hatchery-alice")
    assert pod is not None and pod["metadata"]["finalizers"] == [FINALIZER]
    await eventually(lambda: kubelet.pods.get("hatchery-alice") and
                     kubelet.pods["hatchery-alice"].ready, within=20)
    await a_second_old(pod)
    before = int(time.time())
    assert await backend.terminate("alice")  # grace 20; the node stops it and confirms
    after = int(time.time())
    await eventually(lambda: gone(cluster), within=20)
    [row] = table.rows()
    assert row["bmh_workspace_id"]["S"] == pod["metadata"]["annotations"]["bmh_workspace_id"]
    assert (row["user_id"], row["workspace_type"], row["request_status"]) == (
        {"S": "alice"}, {"S": "Trial Workspace"}, {"S": "active"})
    assert row["current_pay_model"] == {"BOOL": True}
    born = int(at(pod["metadata"]["creationTimestamp"]).timestamp())
    # deletion is dated when terminate asked (the node's confirmation dates it back)
    assert Decimal(row["total-usage"]["N"]) in {
        DEMO_CPU * (second - born) for second in range(before, after + 1)}


async def test_a_pod_deleted_while_no_gateway_runs_is_charged_once_when_one_is_back(
        cluster: Cluster, table: Table, cost_backend: Any) -> None:
    first = await cost_backend()
    await eventually(lambda: first.is_leader)
    await create_aged(cluster, "bob", "b-1")
    await eventually(lambda: table.row("bob", "b-1"))  # the Trial row, when first seen
    await first.close()  # the only gateway is down (a restart, a rollout)...
    lived = await delete(cluster, "hatchery-bob")  # ...when the workspace goes
    assert await pods_left(cluster) == ["hatchery-bob"]  # held for its charge
    second = await cost_backend()
    await eventually(lambda: gone(cluster))
    assert table.usage("bob", "b-1") == lived
    await second.close()
    restarted = await cost_backend()  # and again: nothing is charged twice
    await eventually(lambda: restarted.costs is not None and restarted.costs.health()["leader"])
    assert table.usage("bob", "b-1") == lived


async def test_a_reloaded_pricing_prices_the_pods_that_go_after_it(
        cluster: Cluster, table: Table, cost_backend: Any) -> None:
    backend = await cost_backend()
    await create_aged(cluster, "jo", "j-1")
    backend.use_hatchery(parse_hatchery_config(  # hatchery.json changed: $2 a core-second
        {**hatchery_doc(cluster.namespace), "pricing": {"cpu": 7200.0}}, "hatchery.json"))
    lived = await delete(cluster, "hatchery-jo")
    await eventually(lambda: gone(cluster))
    assert table.usage("jo", "j-1") == 2 * lived


async def test_a_charge_repeated_after_a_crash_adds_nothing(
        cluster: Cluster, table: Table, cost_backend: Any) -> None:
    pod = await create_aged(cluster, "carl", "c-1")
    # The leader before had charged the pod and died before letting it go:
    table.put({"user_id": {"S": "carl"}, "bmh_workspace_id": {"S": "c-1"},
               "request_status": {"S": "active"}, "current_pay_model": {"BOOL": True},
               "total-usage": {"N": "7.5"},
               "hatchway-charged-pod": {"S": pod["metadata"]["uid"]}})
    await delete(cluster, "hatchery-carl")
    await cost_backend()
    await eventually(lambda: gone(cluster))  # let go...
    assert table.usage("carl", "c-1") == Decimal("7.5")  # ...not charged again


async def test_a_replica_without_the_lease_writes_nothing_and_the_next_leader_charges(
        cluster: Cluster, table: Table, cost_backend: Any) -> None:
    await cluster.write("POST", "leases", lease("another-gateway"))
    follower = await cost_backend(lease_seconds=60.0, lease_renew_seconds=0.1)
    await create_aged(cluster, "dana", "d-1")
    lived = await delete(cluster, "hatchery-dana")
    await eventually(lambda: follower.pods is not None and follower.pods.synced.is_set())
    with pytest.raises(AssertionError):  # a second of waiting: the pod stays, no row
        await eventually(lambda: _charged_or_gone(cluster, table), within=1.0)
    await cluster.write("PATCH", "leases", {"spec": {"holderIdentity": ""}},  # released
                        name="hatchway-culler")
    await eventually(lambda: gone(cluster))
    assert follower.is_leader
    assert table.usage("dana", "d-1") == lived


async def _charged_or_gone(cluster: Cluster, table: Table) -> bool:
    return bool(table.rows()) or await gone(cluster)


async def test_two_replicas_charge_a_pod_once(
        cluster: Cluster, table: Table, cost_backend: Any) -> None:
    replicas = [await cost_backend(), await cost_backend()]
    await eventually(lambda: sum(r.is_leader for r in replicas) == 1)
    await create_aged(cluster, "eve", "e-1")
    lived = await delete(cluster, "hatchery-eve")
    await eventually(lambda: gone(cluster))
    await eventually(lambda: table.usage("eve", "e-1") == lived)


async def test_while_the_table_is_unreachable_the_pod_waits_and_is_charged_when_it_is_back(
        cluster: Cluster, flaky_moto: StoppableMoto, cost_backend: Any) -> None:
    name = "flaky-paymodels"
    db = create_paymodel_table(flaky_moto.url, name)
    backend = await cost_backend(table_name=name, paymodels_url=flaky_moto.url)
    await create_aged(cluster, "finn", "f-1")
    flaky_moto.stop()
    lived = await delete(cluster, "hatchery-finn")
    assert backend.costs is not None
    await eventually(lambda: backend.costs.health()["waiting"] == 1)  # type: ignore[union-attr]
    assert await pods_left(cluster) == ["hatchery-finn"]  # Terminating: held, not forgotten
    flaky_moto.start()
    await eventually(lambda: gone(cluster), within=20)
    row = db.get_item(TableName=name, Key={"user_id": {"S": "finn"},
                                           "bmh_workspace_id": {"S": "f-1"}})["Item"]
    assert Decimal(row["total-usage"]["N"]) == lived


async def test_a_charge_not_written_within_the_hold_is_logged_as_lost_and_the_pod_goes(
        cluster: Cluster, flaky_moto: StoppableMoto, cost_backend: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    create_paymodel_table(flaky_moto.url, "lost-paymodels")
    backend = await cost_backend(table_name="lost-paymodels", paymodels_url=flaky_moto.url,
                                 hold_seconds=1.0)
    await create_aged(cluster, "gus", "g-1")
    flaky_moto.stop()
    lived = await delete(cluster, "hatchery-gus")
    await eventually(lambda: gone(cluster), within=20)
    assert backend.costs is not None and backend.costs.health()["lost"] == 1
    lost = [r for r in caplog.records if r.levelno == logging.ERROR and "lost" in r.message]
    assert lost and f"{lived:.4f}" in lost[0].message and "gus" in lost[0].message


async def test_with_tracking_off_pods_an_earlier_run_held_are_let_go_uncharged(
        cluster: Cluster, table: Table, cost_backend: Any) -> None:
    await create_aged(cluster, "hana", "h-1")  # held by an earlier run
    backend = await cost_backend(table_name="")  # the table is gone from hatchery.json
    await delete(cluster, "hatchery-hana")
    await eventually(lambda: gone(cluster))
    assert backend.costs is not None and not backend.costs.tracking
    assert table.rows() == []


async def test_with_tracking_off_and_no_held_pod_no_pod_is_watched(
        cluster: Cluster, cost_backend: Any) -> None:
    backend = await cost_backend(table_name="")
    await eventually(lambda: backend._costs_start is not None and backend._costs_start.done())
    assert backend.pods is None and backend.costs is None


async def test_a_charge_over_the_hard_limit_stops_the_next_launch(
        cluster: Cluster, kubelet: Kubelet, kubeconfig: str, moto_url: str, table: Table,
        tmp_path: Path, aiohttp_server: Any) -> None:
    """Through the gateway: the portal's launch, terminate, and launch again."""
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps({
        **hatchery_doc(cluster.namespace), "pricing": PRICING,
        "pay-models-dynamodb-table": table.name,
        "default-pay-model": {**TRIAL, "hard-limit": 0.5}}))  # under a second of the demo
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

        assert await launch() == (200, "Success")
        pod = await cluster.get("pods", "hatchery-ivy")
        assert pod is not None
        await a_second_old(pod)  # 0.6 or more: over the limit
        async with http.post(gw.url("/lw-workspace/terminate"), headers=headers) as resp:
            assert resp.status == 200
        await eventually(lambda: gone(cluster), within=20)

        async with http.get(gw.url("/lw-workspace/allpaymodels"), headers=headers) as resp:
            current = (await resp.json())["current_pay_model"]
        assert current["request_status"] == "above limit"
        assert current["total-usage"] >= 0.6
        assert await launch() == (500, "Paymodel is not active. Launch forbidden\n")
