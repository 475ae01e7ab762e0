"""Pay models as Hatchery keeps them (paymodels.go): ``default-pay-model`` and ``pay-models``
from hatchery.json, and a DynamoDB table, here moto's server mode (a real HTTP DynamoDB on
127.0.0.1, reached through aiobotocore, never a patched client). The endpoints answer with
Hatchery's codes, texts and Go-marshalled JSON; a launch is refused where Hatchery refuses it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.defaults import demo_container
from launcher.gojson import go_float32
from launcher.paymodels import PayModel

from .conftest import GatewayUnderTest
from .helpers import create_paymodel_table, eventually

API = "/lw-workspace/"
DEFAULT = {"workspace_type": "Trial Workspace", "local": True}
pytestmark = pytest.mark.usefixtures("aws_credentials")


@pytest.fixture
def table(moto_url: str) -> tuple[Any, str]:
    """A fresh table with Hatchery's keys (user_id, bmh_workspace_id), and a way to fill it."""
    name = f"paymodels-{uuid.uuid4().hex[:8]}"
    return create_paymodel_table(moto_url, name), name


def row(user: str, pm_id: str, *, name: str = "Direct Pay", status: str = "active",
        current: bool = False, local: bool = True, ecs: bool = False,
        usage: str = "12.5", limit: str = "100") -> dict[str, Any]:
    """A row as the pay-model service writes it."""
    return {"user_id": {"S": user}, "bmh_workspace_id": {"S": pm_id},
            "workspace_type": {"S": name}, "request_status": {"S": status},
            "account_id": {"S": "123456789012"}, "region": {"S": "us-east-1"},
            "local": {"BOOL": local}, "ecs": {"BOOL": ecs},
            "total-usage": {"N": usage}, "hard-limit": {"N": limit},
            "soft-limit": {"N": "80"}, "current_pay_model": {"BOOL": current}}


def put(table: tuple[Any, str], *rows: dict[str, Any]) -> None:
    db, name = table
    for item in rows:
        db.put_item(TableName=name, Item=item)


def current_flags(table: tuple[Any, str], user: str) -> dict[str, bool]:
    db, name = table
    items = db.scan(TableName=name)["Items"]
    return {i["bmh_workspace_id"]["S"]: i["current_pay_model"]["BOOL"]
            for i in items if i["user_id"]["S"] == user}


@pytest.fixture
def pay_gateway(start_gateway: Callable[..., Any], tmp_path: Path,
                moto_url: str) -> Callable[..., Any]:
    """A gateway whose hatchery.json (the demo option) carries the given pay-model keys."""
    async def start(**hatchery: Any) -> GatewayUnderTest:
        path = tmp_path / f"hatchery-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps({"containers": [demo_container()], **hatchery}))
        gw: GatewayUnderTest = await start_gateway(
            hatchery_config=str(path), paymodels={"endpoint_url": moto_url})
        return gw
    return start


def auth(gw: GatewayUnderTest, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.token(user)}"}


async def call(client: aiohttp.ClientSession, gw: GatewayUnderTest, method: str, path: str,
               user: str = "alice") -> tuple[int, str]:
    async with client.request(method, gw.url(API + path), headers=auth(gw, user)) as resp:
        return resp.status, await resp.text()


async def launch(client: aiohttp.ClientSession, gw: GatewayUnderTest,
                 user: str = "alice") -> tuple[int, str]:
    async with client.get(gw.url(API + "options"), headers=auth(gw, user)) as resp:
        option = next(o for o in await resp.json() if "Demo" in o["name"])
    return await call(client, gw, "POST", f"launch?id={option['id']}", user)


# -- Go's JSON -------------------------------------------------------------------------------

def test_a_pay_model_marshals_as_go_does() -> None:
    pm = PayModel(id="w1", name="Direct Pay <x>", user="alice", status="active", local=True,
                  hard_limit=100, total_usage=0.1, soft_limit=12.3456)
    assert pm.to_json() == (
        '{"bmh_workspace_id":"w1","workspace_type":"Direct Pay \\u003cx\\u003e",'
        '"user_id":"alice","account_id":"","request_status":"active","local":true,'
        '"region":"","ecs":false,"subnet":0,"hard-limit":100,"soft-limit":12.3456,'
        '"total-usage":0.1,"current_pay_model":false}')


@pytest.mark.parametrize(("value", "go"), [(0, "0"), (1e21, "1e+21"), (1.5e-7, "1.5e-07"),
                                           (123456789, "123456790"), (-2.25, "-2.25")])
def test_float32_limits_print_as_go_prints_them(value: float, go: str) -> None:
    assert go_float32(value) == go.replace("e-07", "e-7")


# -- no pay models: Hatchery's "not set" -----------------------------------------------------

@pytest.mark.parametrize(("method", "path", "status", "text"), [
    ("GET", "paymodels", 404, "Current paymodel not set\n"),
    ("GET", "allpaymodels", 404, "No paymodel set\n"),
    ("POST", "paymodels", 404, "Not Found\n"),
    ("GET", "setpaymodel", 405, "Method Not Allowed\n"),
    ("POST", "setpaymodel", 400, "Missing ID argument\n"),
])
async def test_without_pay_models_the_endpoints_answer_as_hatchery(
        gw: GatewayUnderTest, client: aiohttp.ClientSession, method: str, path: str,
        status: int, text: str) -> None:
    assert await call(client, gw, method, path) == (status, text)


async def test_without_pay_models_a_launch_is_not_gated(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    assert await launch(client, gw) == (200, "Success")


async def test_without_a_table_setting_a_pay_model_fails_as_in_hatchery(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    status, text = await call(client, gw, "POST", "setpaymodel?id=x")
    assert status == 500 and "pay-models-dynamodb-table" in text


# -- the default pay model -------------------------------------------------------------------

async def test_the_default_pay_model_is_current_when_there_is_no_table(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    gw = await pay_gateway(**{"default-pay-model": DEFAULT})
    status, text = await call(client, gw, "GET", "paymodels")
    assert status == 200
    assert json.loads(text)["workspace_type"] == "Trial Workspace"
    status, text = await call(client, gw, "GET", "allpaymodels")
    body = json.loads(text)
    assert status == 200 and body["current_pay_model"]["local"] is True
    assert body["all_pay_models"] == [body["current_pay_model"]]


async def test_a_local_default_pay_model_lets_the_launch_go_on(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    gw = await pay_gateway(**{"default-pay-model": DEFAULT})
    assert await launch(client, gw) == (200, "Success")


# -- the DynamoDB table ----------------------------------------------------------------------

async def test_the_current_row_is_the_current_pay_model(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True), row("alice", "w2", name="STRIDES"),
        row("bob", "w3", current=True))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    status, text = await call(client, gw, "GET", "paymodels")
    assert status == 200
    assert text == PayModel(id="w1", name="Direct Pay", user="alice",
                            aws_account_id="123456789012", status="active", local=True,
                            region="us-east-1", hard_limit=100, soft_limit=80,
                            total_usage=12.5, current=True).to_json()


async def test_all_pay_models_are_the_users_active_and_above_limit_rows(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True), row("alice", "w2", status="above limit"),
        row("alice", "w3", status="pending"), row("bob", "w4"))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    status, text = await call(client, gw, "GET", "allpaymodels")
    body = json.loads(text)
    assert status == 200 and list(body) == ["current_pay_model", "all_pay_models"]
    assert body["current_pay_model"]["bmh_workspace_id"] == "w1"
    assert sorted(p["bmh_workspace_id"] for p in body["all_pay_models"]) == ["w1", "w2"]


async def test_rows_without_a_current_one_mean_no_current_pay_model(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1"))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1],
                              "default-pay-model": DEFAULT})
    assert await call(client, gw, "GET", "paymodels") == (404, "Current paymodel not set\n")
    assert await launch(client, gw) == (
        500, "Current Paymodel is not set. Launch forbidden\n")


async def test_a_user_without_rows_gets_the_default(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1],
                              "default-pay-model": DEFAULT})
    status, text = await call(client, gw, "GET", "paymodels")
    assert status == 200 and json.loads(text)["workspace_type"] == "Trial Workspace"


async def test_two_current_rows_are_an_error(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True), row("alice", "w2", current=True))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    assert await call(client, gw, "GET", "paymodels") == (
        500, "multiple current pay models set\n")


async def test_setpaymodel_makes_that_row_the_only_current_one(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True), row("alice", "w2", name="STRIDES"))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    status, text = await call(client, gw, "POST", "setpaymodel?id=w2")
    assert status == 200 and json.loads(text)["workspace_type"] == "STRIDES"
    assert current_flags(table, "alice") == {"w1": False, "w2": True}


async def test_setpaymodel_with_an_id_not_the_users_is_500(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("bob", "w9"))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    assert await call(client, gw, "POST", "setpaymodel?id=w9") == (
        500, "no paymodel with id w9 found for user alice\n")


async def test_setpaymodel_may_choose_the_users_pay_model_from_the_config(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1], "pay-models": [
        {"user_id": "alice", "bmh_workspace_id": "cfg", "workspace_type": "Config Pay",
         "local": True}]})
    status, text = await call(client, gw, "POST", "setpaymodel?id=cfg")
    assert status == 200 and json.loads(text)["workspace_type"] == "Config Pay"
    assert current_flags(table, "alice") == {"w1": False}


async def test_pay_models_cannot_change_while_a_workspace_exists(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True), row("alice", "w2"))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    assert await launch(client, gw) == (200, "Success")
    assert await call(client, gw, "POST", "setpaymodel?id=w2") == (
        500, "Can not update paymodel when workspace is running\n")
    assert await call(client, gw, "POST", "resetpaymodels") == (
        500, "Can not reset paymodels when workspace is running\n")


async def test_resetpaymodels_leaves_no_current_row(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True), row("alice", "w2"))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    assert await call(client, gw, "POST", "resetpaymodels") == (
        200, "Current Paymodel has been reset")
    assert current_flags(table, "alice") == {"w1": False, "w2": False}


async def test_terminate_clears_the_current_pay_model_once_the_workspace_is_gone(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    assert await launch(client, gw) == (200, "Success")
    assert await call(client, gw, "POST", "terminate") == (200, "Terminated workspace")
    await eventually(lambda: current_flags(table, "alice") == {"w1": False})
    assert current_flags(table, "alice") == {"w1": False}


# -- launches Hatchery refuses ---------------------------------------------------------------

async def test_a_launch_on_a_pay_model_above_its_limit_is_refused(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True, status="above limit"))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    assert await launch(client, gw) == (500, "Paymodel is not active. Launch forbidden\n")


async def test_the_launch_check_reads_request_status_not_total_usage(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    """Hatchery's launch (hatchery.go 581-619) never compares total-usage with hard-limit:
    a row turns ``above limit`` by a write (hatchway's cost tracking makes it when a charge
    reaches the limit: tests/k8s/costs/test_tracking.py), and only that status refuses."""
    put(table, row("alice", "w1", current=True, usage="150", limit="100"))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    assert await launch(client, gw) == (200, "Success")


async def test_a_launch_on_an_ecs_pay_model_is_refused(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True, local=False, ecs=True))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    status, text = await launch(client, gw)
    assert status == 500 and "ECS" in text and text.endswith("Launch forbidden\n")


async def test_an_unreachable_table_refuses_launches_and_fails_status(
        start_gateway: Callable[..., Any], tmp_path: Path,
        client: aiohttp.ClientSession) -> None:
    path = tmp_path / "hatchery.json"
    path.write_text(json.dumps({"containers": [demo_container()],
                                "pay-models-dynamodb-table": "t"}))
    gw = await start_gateway(hatchery_config=str(path),  # nothing listens on port 9
                             paymodels={"endpoint_url": "http://127.0.0.1:9"})
    status, _ = await launch(client, gw)
    assert status == 503
    status, text = await call(client, gw, "GET", "status")
    assert status == 500 and "pay models" in text


async def test_a_role_arn_is_assumed_before_reading_the_table(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1],
                              "pay-models-dynamodb-arn": "arn:aws:iam::123456789012:role/pm"})
    status, text = await call(client, gw, "GET", "paymodels")
    assert status == 200 and json.loads(text)["bmh_workspace_id"] == "w1"


# -- the launch page -------------------------------------------------------------------------

async def test_the_launch_page_shows_the_current_pay_model(
        pay_gateway: Callable[..., Any], client: aiohttp.ClientSession,
        table: tuple[Any, str]) -> None:
    put(table, row("alice", "w1", current=True, name="Direct Pay"))
    gw = await pay_gateway(**{"pay-models-dynamodb-table": table[1]})
    async with client.get(gw.url(API), headers=auth(gw)) as resp:
        page = await resp.text()
    config = json.loads(page.split("const CONFIG = ", 1)[1].split(";\n", 1)[0])
    assert config["payModel"]["workspace_type"] == "Direct Pay"
    assert 'id="paymodel"' in page


async def test_the_launch_page_has_no_pay_model_where_none_is_configured(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(gw.url(API), headers=auth(gw)) as resp:
        page = await resp.text()
    assert '"payModel": null' in page
