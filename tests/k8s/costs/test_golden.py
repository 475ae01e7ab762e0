"""hatchway's cost tracking against the rows Hatchery's PodTracker writes for the same pod
lifetimes (tests/fixtures/hatchery/golden/costs/: written by hand from costTracker.go, each
step cited in its README). The pods go through the emulated API server, marked ``emulated``:
the golden's lifetimes need their timestamps dictated, which a real API server never allows
(tests/k8s/costs/test_tracking.py charges real ones). The rows land in moto's DynamoDB.

Where hatchway's rows may differ, each on purpose (launcher/costs/ledger.py, README):

* every row hatchway charges records the last pod charged (``hatchway-charged-pod``), so a
  repeated charge adds nothing;
* ``erin``: a Trial row made beside a current row is not current too (Hatchery's makes two
  current rows, which fail every ``/status`` of that user);
* ``gina``: a row the scan does not see (``inactive``) is not overwritten by a Trial row
  (Hatchery's PutItem resets it): the charge goes onto the row as it is;
* ``harry``: a charge that reaches the positive ``hard-limit`` turns the row ``above limit``.

Numbers are compared as numbers: DynamoDB stores ``0.1552 + 0.0237`` as ``0.1789`` whatever
text each writer sent.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from launcher.costs.pricing import parse_time, pod_cost, runtime_ns
from launcher.options import parse_hatchery_config

from ..cluster import Cluster
from ..conftest import api_write, eventually
from ..emulator import ApiServer
from .conftest import Table, at, pod_body, pods_left

pytestmark = pytest.mark.emulated
GOLDEN = json.loads((Path(__file__).parents[2] / "fixtures" / "hatchery" / "golden" / "costs"
                     / "paymodel-rows.json").read_text())
CHARGED = "hatchway-charged-pod"


def pod_of(case: dict[str, Any]) -> dict[str, Any]:
    notes = case["annotations"]
    return pod_body(f"hatchery-{case['case'].split('-')[0]}", user=notes["gen3username"],
                    pay_model_id=notes.get("bmh_workspace_id"),
                    created=case["creationTimestamp"], containers=case["containers"],
                    init=case["initContainers"], hatchway=case["launched_by"] == "hatchway")


def comparable(item: dict[str, Any]) -> dict[str, Any]:
    return {k: {"N": Decimal(v["N"])} if "N" in v else v for k, v in item.items()
            if k != CHARGED}


def keyed(items: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["user_id"]["S"], i["bmh_workspace_id"]["S"]): comparable(i) for i in items}


def test_hatchways_price_of_each_lifetime_is_the_amount_hatchery_adds() -> None:
    pricing = parse_hatchery_config(GOLDEN["hatchery"], "golden").pricing
    cases = {c["case"]: c for c in GOLDEN["pods"]}
    for write in (w for w in GOLDEN["writes"] if w["call"] == "UpdateItem"):
        case = cases[write["case"]]
        ns = runtime_ns(parse_time(case["creationTimestamp"]),
                        parse_time(case["deletionTimestamp"]))
        assert pod_cost(pod_of(case), ns, pricing).increment == write[":inc"], write["case"]


async def play(api: ApiServer, cluster: Cluster, table: Table, case: dict[str, Any]) -> None:
    """One pod's life: created at its creationTimestamp; deleted at its deletionTimestamp as
    an operator does (grace 30), then as its kubelet does once the containers stopped (grace
    0, which dates the deletion back to the first); waited for until gone (and, with a
    pay-model id, charged)."""
    body = pod_of(case)
    name = body["metadata"]["name"]
    api.emulator.now = lambda: at(case["creationTimestamp"])
    uid = (await api_write(cluster, "POST", "pods", body))["metadata"]["uid"]
    api.emulator.now = lambda: at(case["deletionTimestamp"])
    await api_write(cluster, "DELETE", "pods", {"gracePeriodSeconds": 30}, name=name)
    await api_write(cluster, "DELETE", "pods", {"gracePeriodSeconds": 0}, name=name)
    await eventually(lambda: _gone(cluster, name))
    if "bmh_workspace_id" in case["annotations"]:  # charged: the row names the pod
        user, pay_model_id = case["annotations"].values()
        await eventually(lambda: (table.row(user, pay_model_id) or {}).get(CHARGED) ==
                         {"S": uid})


async def _gone(cluster: Cluster, name: str) -> bool:
    return name not in await pods_left(cluster)


async def test_the_table_ends_as_hatchery_leaves_it(
        api: ApiServer, cluster: Cluster, table: Table, cost_backend: Any) -> None:
    table.put(*GOLDEN["table_before"])
    tracker = (await cost_backend(hatchery=GOLDEN["hatchery"], table_name=table.name)).costs
    assert tracker is not None
    await eventually(lambda: tracker.health()["leader"])
    for case in GOLDEN["pods"]:
        await play(api, cluster, table, case)

    hatchery = keyed(GOLDEN["table_after"])
    ours = keyed(table.rows())
    before = keyed(GOLDEN["table_before"])
    expected = {**hatchery}
    expected[("erin", "erin-trial")] = {**hatchery[("erin", "erin-trial")],
                                        "current_pay_model": {"BOOL": False}}
    expected[("gina", "gina-old")] = {**before[("gina", "gina-old")],
                                      "total-usage": {"N": Decimal("40.0586")}}
    expected[("harry", "h-1")] = {**hatchery[("harry", "h-1")],
                                  "request_status": {"S": "above limit"}}
    assert ours == expected
    assert not [k for k in ours if k[0] == "carol"]  # no pay-model id: never written

