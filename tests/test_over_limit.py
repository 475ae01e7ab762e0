"""A workspace over its pay model's limit is stopped, as gen3-helm's hatchery-reaper stops it
(helm/hatchery/templates/hatchery-reaper-cronjob.yaml at 42cc46b, lines 98-122: for each
Running or Launching workspace it reads ``/paymodels`` ``request_status`` and, when that is
``above limit``, POSTs ``/terminate``, which clears the current pay model once the workspace is
gone). Pay models live in moto's DynamoDB server; the gateway is the whole app on the local
backend, its culler swept on the ManualClock (no background sweep runs: the interval is an
hour)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.backend import RUNNING
from launcher.clock import ManualClock
from launcher.defaults import demo_container
from proxy.serve.app import CULLER

from .conftest import PROXY, GatewayUnderTest
from .helpers import (
    auth,
    create_paymodel_table,
    eventually,
    get_json,
    launch,
    moto_server,
    status_becomes,
)
from .test_metrics import scrape, value
from .test_paymodels import DEFAULT, current_flags, put, row

Table = tuple[Any, str]
pytestmark = pytest.mark.usefixtures("aws_credentials")


@pytest.fixture
def table(moto_url: str) -> Table:
    name = f"paymodels-{uuid.uuid4().hex[:8]}"
    return create_paymodel_table(moto_url, name), name


@pytest.fixture
def over_limit_gateway(start_gateway: Callable[..., Any], tmp_path: Path,
                       clock: ManualClock) -> Callable[..., Any]:
    """A gateway whose hatchery.json (the demo option, a local Trial default pay model) names
    the table at ``url``."""
    async def start(table_name: str, url: str, idle_seconds: int = 0) -> GatewayUnderTest:
        path = tmp_path / "hatchery.json"
        option = demo_container()
        if idle_seconds:
            option["idle-time-limit"] = idle_seconds * 1000  # a local option's own limit, ms
        path.write_text(json.dumps({"containers": [option],
                                    "default-pay-model": DEFAULT,
                                    "pay-models-dynamodb-table": table_name}))
        gw: GatewayUnderTest = await start_gateway(
            hatchery_config=str(path), paymodels={"endpoint_url": url}, clock=clock,
            cull_interval_seconds=3600, metrics_port=0)
        return gw
    return start


async def running(client: aiohttp.ClientSession, gw: GatewayUnderTest, user: str) -> None:
    await launch(client, gw, user=user)
    await status_becomes(client, gw, "Running", user=user)


def goes_over(table: Table, user: str, pm_id: str) -> None:
    """The billing side marks the row ``above limit`` while the workspace runs."""
    put(table, row(user, pm_id, current=True, status="above limit", usage="120"))


async def sweep(gw: GatewayUnderTest) -> list[str]:
    return await gw.server.runner.app[CULLER].sweep()


async def test_a_running_workspace_whose_pay_model_goes_above_limit_is_stopped(
        over_limit_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: Table, moto_url: str) -> None:
    put(table, row("alice", "w1", current=True))
    gw = await over_limit_gateway(table[1], moto_url)
    await running(client, gw, "alice")
    assert await sweep(gw) == []  # active: kept
    goes_over(table, "alice", "w1")
    assert await sweep(gw) == ["alice"]
    assert (await get_json(client, gw, "status"))["status"] == "Not Found"


async def test_one_sweep_stops_only_the_user_above_limit(
        over_limit_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: Table, moto_url: str) -> None:
    """alice goes over; bob's row is active though its usage passed its limit (the status
    decides, as for the reaper); carol has no row (the default pay model is hers)."""
    put(table, row("alice", "w1", current=True), row("bob", "w2", current=True))
    gw = await over_limit_gateway(table[1], moto_url)
    for user in ("alice", "bob", "carol"):
        await running(client, gw, user)
    goes_over(table, "alice", "w1")
    put(table, row("bob", "w2", current=True, usage="150", limit="100"))
    assert await sweep(gw) == ["alice"]
    for user in ("bob", "carol"):
        assert (await get_json(client, gw, "status", user))["status"] == "Running"


async def test_a_pay_model_above_limit_that_is_not_current_stops_nothing(
        over_limit_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: Table, moto_url: str) -> None:
    put(table, row("alice", "w1", current=True))
    gw = await over_limit_gateway(table[1], moto_url)
    await running(client, gw, "alice")
    put(table, row("alice", "w0", status="above limit", usage="120"))
    assert await sweep(gw) == []


async def test_afterwards_the_portal_sees_what_the_reapers_terminate_leaves(
        over_limit_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: Table, moto_url: str) -> None:
    """No workspace, no current pay model (the row kept, above limit), a relaunch refused
    until the user chooses another; an open tab told why."""
    put(table, row("alice", "w1", current=True))
    gw = await over_limit_gateway(table[1], moto_url)
    await running(client, gw, "alice")
    goes_over(table, "alice", "w1")
    assert await sweep(gw) == ["alice"]
    await eventually(lambda: current_flags(table, "alice") == {"w1": False})
    pay = await get_json(client, gw, "allpaymodels")
    assert pay["current_pay_model"] is None
    assert [p["request_status"] for p in pay["all_pay_models"]] == ["above limit"]
    async with client.get(gw.url(PROXY), headers=auth(gw)) as resp:
        assert resp.status == 410
        assert "its pay model is above its limit" in await resp.text()


async def test_an_idle_cull_clears_the_current_pay_model_as_the_reapers_terminate_does(
        over_limit_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: Table, moto_url: str, clock: ManualClock) -> None:
    """The reaper culls an idle workspace through Hatchery's /terminate, which resets the
    current pay model once the pod is gone (hatchery.go terminate); so does hatchway's cull."""
    put(table, row("alice", "w1", current=True))
    gw = await over_limit_gateway(table[1], moto_url, idle_seconds=60)
    await running(client, gw, "alice")
    # past the real time the workspace stamps its own activity with, then its 60 s limit
    clock.advance(max(0.0, time.time() - clock.time()) + 120)
    assert await sweep(gw) == ["alice"]
    await eventually(lambda: current_flags(table, "alice") == {"w1": False})
    assert (await get_json(client, gw, "allpaymodels"))["current_pay_model"] is None


async def test_the_stop_is_one_info_line_with_user_and_pay_model_counted_as_over_limit(
        over_limit_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: Table, moto_url: str, caplog: pytest.LogCaptureFixture) -> None:
    put(table, row("alice", "w1", current=True))
    gw = await over_limit_gateway(table[1], moto_url)
    await running(client, gw, "alice")
    goes_over(table, "alice", "w1")
    with caplog.at_level(logging.INFO):
        assert await sweep(gw) == ["alice"]
    lines = [r for r in caplog.records if "alice" in r.getMessage()
             and r.levelno == logging.INFO and "over_limit" in r.getMessage()]
    assert len(lines) == 1
    assert "'Direct Pay' (w1) is above limit" in lines[0].getMessage()
    assert value(await scrape(gw), "hatchway_terminations_total", reason="over_limit") == 1


async def test_an_unreachable_table_stops_nobody_and_says_so(
        over_limit_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    with moto_server() as url:  # a table of its own, taken away once alice runs
        table = create_paymodel_table(url, "going"), "going"
        put(table, row("alice", "w1", current=True, status="active"))
        gw = await over_limit_gateway("going", url)
        await running(client, gw, "alice")
        goes_over(table, "alice", "w1")
    with caplog.at_level(logging.WARNING):
        assert await sweep(gw) == []
    assert (await gw.gateway.backend.status("alice")).status == RUNNING
    assert any("could not read pay models" in r.getMessage() for r in caplog.records)


async def test_a_user_with_two_current_pay_models_is_left_alone_and_logged(
        over_limit_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: Table, moto_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Hatchery answers ``/paymodels`` 500 then (``multiple current pay models set``), which
    the reaper does not act on; the rest of the sweep goes on."""
    put(table, row("alice", "w1", current=True), row("bob", "w2", current=True))
    gw = await over_limit_gateway(table[1], moto_url)
    for user in ("alice", "bob"):
        await running(client, gw, user)
    put(table, row("alice", "w0", current=True, status="above limit", usage="120"))
    goes_over(table, "bob", "w2")
    with caplog.at_level(logging.WARNING):
        assert await sweep(gw) == ["bob"]
    assert (await gw.gateway.backend.status("alice")).status == RUNNING
    assert any("alice" in r.getMessage() and "multiple current pay models" in r.getMessage()
               for r in caplog.records)
