"""Cost tracking's test parts: moto's DynamoDB server with Hatchery's key schema
(tests/helpers.py), backends (replicas) that charge to it, pods written as another actor would
write them, and the table read back. Pods go to the ``cluster`` fixture's API server: the real
one unless a module is marked ``emulated``."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from launcher.kubernetes import KubernetesBackend
from launcher.options import parse_hatchery_config
from launcher.paymodels import PayModels
from launcher.routes import RouteTable
from proxy.settings import Settings
from proxy.settings import kube_settings as kube_config

from ...helpers import create_paymodel_table
from ..cluster import Cluster
from ..conftest import eventually, hatchery_doc

# $1 a requested core-second: a 1-CPU pod's charge is its lifetime in seconds, which the API
# server dates to the second (a real one sets both timestamps itself).
PRICING = {"cpu": 3600.0, "memory": 0.0}
TRIAL = {"workspace_type": "Trial Workspace", "local": True, "hard-limit": 100}
Row = dict[str, Any]


def at(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def lifetime(pod: dict[str, Any]) -> int:
    """Whole seconds from a pod's creation to its deletion, as the API server dated them."""
    meta = pod["metadata"]
    return int((at(meta["deletionTimestamp"]) - at(meta["creationTimestamp"])).total_seconds())


async def a_second_old(pod: dict[str, Any]) -> None:
    """Until the pod is a whole second old, so its charge cannot be 0."""
    born = at(pod["metadata"]["creationTimestamp"]).timestamp()
    await eventually(lambda: time.time() >= born + 1.0)


@pytest.fixture(autouse=True)
def _aws_credentials(aws_credentials: None) -> None:
    """Every cost test talks to moto."""


class Table:
    """One fresh pay-model table: rows in and out as DynamoDB items."""

    def __init__(self, url: str) -> None:
        self.name = f"paymodels-{uuid.uuid4().hex[:8]}"
        self.db = create_paymodel_table(url, self.name)

    def put(self, *items: Row) -> None:
        for item in items:
            self.db.put_item(TableName=self.name, Item=item)

    def rows(self) -> list[Row]:
        return list(self.db.scan(TableName=self.name)["Items"])

    def row(self, user: str, pay_model_id: str) -> Row | None:
        item = self.db.get_item(TableName=self.name, Key={
            "user_id": {"S": user}, "bmh_workspace_id": {"S": pay_model_id}}).get("Item")
        return None if item is None else dict(item)

    def usage(self, user: str, pay_model_id: str) -> Decimal | None:
        row = self.row(user, pay_model_id)
        return None if row is None or "total-usage" not in row else Decimal(
            row["total-usage"]["N"])


@pytest.fixture
def table(moto_url: str) -> Table:
    return Table(moto_url)


BackendMaker = Callable[..., Any]


@pytest.fixture
async def cost_backend(kube_settings: Callable[..., Settings], moto_url: str, table: Table,
                       namespace: str) -> AsyncIterator[BackendMaker]:
    """Start a replica whose hatchery.json names ``table`` (pass ``table=""`` for none)
    and its pricing; closed (Lease released) at teardown unless closed before."""
    started: list[tuple[KubernetesBackend, PayModels]] = []

    async def make(*, identity: str = "", hold_seconds: float = 60.0,
                   hatchery: dict[str, Any] | None = None, table_name: str | None = None,
                   paymodels_url: str = "", **kubernetes: Any) -> KubernetesBackend:
        doc = {**hatchery_doc(namespace), "pricing": PRICING, "default-pay-model": TRIAL,
               **(hatchery or {}),
               "pay-models-dynamodb-table": table.name if table_name is None else table_name}
        config = parse_hatchery_config(doc, "test hatchery.json")
        pay = PayModels.from_hatchery(config, endpoint_url=paymodels_url or moto_url)
        settings = {"lease_seconds": 1.0, "lease_renew_seconds": 0.2, **kubernetes}
        backend = KubernetesBackend(RouteTable(), kube_config(kube_settings(
            identity=identity or f"replica-{len(started)}", **settings)), config)
        backend.attach_costs(pay, hold_seconds=hold_seconds)
        await backend.start()
        started.append((backend, pay))
        return backend

    yield make
    for backend, pay in started:
        await backend.close()
        await pay.close()


def pod_body(name: str, *, user: str, pay_model_id: str | None,
             containers: list[dict[str, Any]], init: list[dict[str, Any]] | None = None,
             hatchway: bool = True, created: str = "") -> dict[str, Any]:
    """A workspace pod as a launcher writes it: Hatchery's annotations, each container's
    requests (= limits); hatchway's own also carry its user annotation and finalizer.
    ``created`` only the emulator keeps (a real API server dates a pod itself)."""
    notes = {"gen3username": user}
    if pay_model_id is not None:
        notes["bmh_workspace_id"] = pay_model_id
    meta: dict[str, Any] = {"name": name, "annotations": notes}
    if created:
        meta["creationTimestamp"] = created
    if hatchway:
        meta["annotations"]["hatchway.gen3.org/user"] = user
        meta["finalizers"] = ["hatchway.gen3.org/cost-tracking"]

    def container(c: dict[str, Any]) -> dict[str, Any]:
        return {"name": c["name"], "image": "registry.invalid/x:1",
                "resources": {"requests": c["requests"], "limits": c["requests"]}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [container(c) for c in containers],
                     "initContainers": [container(c) for c in init or []]}}


async def pods_left(cluster: Cluster) -> list[str]:
    """Pods still in the namespace, being deleted or not."""
    return await cluster.names("pods")
