"""Hatchery features hatchway does not provide (Nextflow on AWS Batch, Gen3-supplied licenses,
workspaces in another AWS account, dockstore apps): the start-up and reload warnings name the
file and the field that asks for each, and launching such an option gets Hatchery's 500 with a
sentence saying what is missing, never a workspace started without it.

The fields and their effects are Hatchery's (24f55bc): hatchery.go ``launch`` creates
Nextflow's AWS resources (``createNextflowResources``) or hands out a license
(gen3licenseusermaps.go) before the pod; a current pay model that is not ``local`` launches
an ECS task or a pod in the pay model's account; config.go appends dockstore-compose apps from
``more-configs`` to the containers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.clock import ManualClock
from launcher.defaults import demo_container
from launcher.options import load_hatchery_file, parse_hatchery_config

from .helpers import API, auth, get_json, option_id
from .test_metrics import scrape, value

FIXTURES = Path(__file__).parent / "fixtures" / "hatchery"
NEXTFLOW = {**demo_container(), "name": "Nextflow", "nextflow": {"enabled": True}}
STATA = {**demo_container(), "name": "Stata", "license": {
    "enabled": True, "license-type": "STATA-HEAL", "max-license-ids": 5,
    "g3auto-name": "stata-workspace-gen3-license-g3auto", "g3auto-key": "stata_license.txt",
    "file-path": "stata.lic", "workspace-flavor": "gen3-licensed"}}
LICENSE_TABLE = {"license-user-maps-dynamodb-table": "gen3-license-user-maps",
                 "license-user-maps-global-secondary-index": "activeUsersIndex"}
HEAL_DEFAULT_PAY_MODEL = {"bmh_workspace_id": "blanket_billing_eks", "region": "us-east-1",
                          "account_id": "252835817747", "workspace_type": "healworkspaces"}


@pytest.fixture
def gateway_with(start_gateway: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    async def start(*containers: dict[str, Any], **top: Any) -> Any:
        path = tmp_path / "hatchery.json"
        path.write_text(json.dumps({"containers": list(containers), **top}), encoding="utf-8")
        return await start_gateway(hatchery_config=str(path))
    return start


async def launch(client: aiohttp.ClientSession, gw: Any, name: str) -> tuple[int, str]:
    oid = await option_id(client, gw, name)
    async with client.post(gw.url(API + f"launch?id={oid}"), headers=auth(gw)) as resp:
        return resp.status, await resp.text()


# -- what a user sees ------------------------------------------------------------------------

async def test_a_nextflow_option_is_refused_at_launch_and_nothing_starts(
        gateway_with: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    gw = await gateway_with(demo_container(), NEXTFLOW)
    assert await launch(client, gw, "Nextflow") == (
        500, "Workspace 'Nextflow' needs Nextflow's AWS Batch resources and keys "
             "(nextflow.enabled), which hatchway does not support. Launch forbidden\n")
    assert (await get_json(client, gw, "status"))["status"] == "Not Found"


async def test_a_licensed_option_is_refused_at_launch_and_nothing_starts(
        gateway_with: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    gw = await gateway_with(STATA, **LICENSE_TABLE)
    assert await launch(client, gw, "Stata") == (
        500, "Workspace 'Stata' needs a Gen3-supplied STATA-HEAL license (license.enabled), "
             "which hatchway does not support. Launch forbidden\n")
    assert (await get_json(client, gw, "status"))["status"] == "Not Found"


async def test_an_unsupported_option_keeps_its_place_and_id_in_the_options(
        gateway_with: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    """Listed as Hatchery lists it, so a portal link to it gets the refusal's sentence rather
    than "Invalid 'id' parameter"."""
    gw = await gateway_with(NEXTFLOW)
    [listed] = await get_json(client, gw, "options")
    assert listed["id"] == parse_hatchery_config({"containers": [NEXTFLOW]}, "h").options[0].id


async def test_a_refused_launch_is_counted_as_unsupported(
        start_gateway: Callable[..., Any], tmp_path: Path,
        client: aiohttp.ClientSession) -> None:
    path = tmp_path / "hatchery.json"
    path.write_text(json.dumps({"containers": [NEXTFLOW]}), encoding="utf-8")
    gw = await start_gateway(hatchery_config=str(path), metrics_port=0)
    await launch(client, gw, "Nextflow")
    samples = await scrape(gw)
    assert value(samples, "hatchway_launch_failures_total", cause="unsupported") == 1


async def test_a_default_pay_model_in_another_account_refuses_every_launch(
        gateway_with: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    """healdata.org's hatchery.json: its default pay model is not ``local``, so Hatchery
    launches in account 252835817747's EKS cluster (pods.go createExternalK8sPod)."""
    gw = await gateway_with(demo_container(), **{"default-pay-model": HEAL_DEFAULT_PAY_MODEL})
    assert await launch(client, gw, "Demo") == (
        500, "Pay model 'healworkspaces' runs workspaces in another account's Kubernetes "
             "cluster, which hatchway does not support. Launch forbidden\n")


# -- what the operator is told ---------------------------------------------------------------

def test_healdata_is_told_of_its_license_and_its_default_pay_model() -> None:
    notes = load_hatchery_file(
        str(FIXTURES / "cdis-manifest__healdata.org__hatchery.json")).unsupported
    assert notes == [
        "containers[2].license.enabled ('(Generic, Limited Gen3-licensed) Stata Notebook'): "
        "Gen3-supplied STATA-HEAL licenses are not handed out; its launch is refused (500)",
        "default-pay-model.local is not true ('healworkspaces'): Hatchery launches its "
        "workspaces in AWS account 252835817747's EKS cluster, hatchway does not; a user on "
        "it gets 500 at launch"]


def test_brh_is_told_of_its_nextflow_options() -> None:
    notes = load_hatchery_file(
        str(FIXTURES / "cdis-manifest__brh.data-commons.org__hatchery.json")).unsupported
    fields = [note.split(" ", 1)[0] for note in notes]
    assert fields == ["containers[2].nextflow.enabled", "containers[3].nextflow.enabled",
                      "nextflow-global:"]


def test_ecs_pay_models_and_dockstore_apps_are_named_by_field() -> None:
    notes = parse_hatchery_config({
        "containers": [],
        "more-configs": [{"type": "dockstore-compose:1.0.0", "path": "/c/app.yaml",
                          "name": "App"}],
        "default-pay-model": {"workspace_type": "Direct Pay", "ecs": True,
                              "account_id": "123456789012"},
        "prisma": {"enable": True},
    }, "h.json").unsupported
    assert notes == [
        "more-configs[0] 'App' (/c/app.yaml): dockstore-compose apps are not offered (absent "
        "from /options; a launch of its id is 400 Invalid 'id' parameter)",
        "prisma.enable: Prisma Cloud agents (Hatchery adds them to ECS workspaces) are not "
        "deployed",
        "default-pay-model.ecs ('Direct Pay'): ECS workspaces in AWS account 123456789012 are "
        "not launched; a user on it gets 500 at launch"]


def test_a_local_default_pay_model_is_not_a_note() -> None:
    assert parse_hatchery_config({"default-pay-model": {"workspace_type": "Trial Workspace",
                                                        "local": True}}, "h").unsupported == []


async def test_a_reloaded_file_asking_for_nextflow_is_named_in_a_warning(
        start_gateway: Callable[..., Any], clock: ManualClock, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hatchery.json"
    path.write_text(json.dumps({"containers": [demo_container()]}), encoding="utf-8")
    await start_gateway(clock=clock, hatchery_config=str(path), hatchery_reload_seconds=5)
    caplog.set_level(logging.WARNING, "hatchway.options")
    path.write_text(json.dumps({"containers": [demo_container(), NEXTFLOW]}), encoding="utf-8")
    clock.advance(5)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"{path}: not supported by hatchway (yet): ")
    assert "containers[1].nextflow.enabled ('Nextflow')" in warning
