"""The API answers as Hatchery (hatchery/hatchery.go, pods.go) does wherever a client can tell:
the texts of its ``http.Error`` answers, ``gpu`` a bool, ``null`` for no options, ``Not Found``
when the Kubernetes API fails, and one idle-time-limit rule for ``/options`` and ``/status``.
Real gateway on 127.0.0.1; the Kubernetes case talks to a port where nothing listens."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from launcher.idle import option_idle_limit_ms, pod_idle_limit_ms
from launcher.kubernetes.status import idle_time_limit
from launcher.options import parse_hatchery_config

from .conftest import GatewayUnderTest

API = "/lw-workspace/"


def auth(gw: GatewayUnderTest, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.token(user)}"}


async def call(client: aiohttp.ClientSession, gw: GatewayUnderTest, method: str,
               path: str) -> aiohttp.ClientResponse:
    resp = await client.request(method, gw.url(API + path), headers=auth(gw))
    await resp.read()
    return resp


def hatchery_file(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = tmp_path / "hatchery.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


# -- /options --------------------------------------------------------------------------------

async def test_an_unknown_option_id_is_400_with_hatcherys_text(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    resp = await call(client, gw, "GET", "options?id=nope")
    assert (resp.status, await resp.text()) == (400, "Invalid 'id' parameter 'nope'\n")
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_an_empty_option_id_lists_every_option(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    resp = await call(client, gw, "GET", "options?id=")
    assert resp.status == 200 and isinstance(await resp.json(), list)


async def test_gpu_is_false_never_null(gw: GatewayUnderTest,
                                       client: aiohttp.ClientSession) -> None:
    resp = await call(client, gw, "GET", "options")
    assert all(o["gpu"] is False for o in await resp.json())


async def test_no_options_is_null_as_go_marshals_an_empty_list(
        start_gateway: Callable[..., Any], tmp_path: Path,
        client: aiohttp.ClientSession) -> None:
    gw = await start_gateway(hatchery_config=hatchery_file(tmp_path, {"containers": []}))
    resp = await call(client, gw, "GET", "options")
    assert (resp.status, await resp.text()) == (200, "null")


async def test_options_answer_any_method_as_hatchery_does(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    assert (await call(client, gw, "POST", "options")).status == 200


# -- /launch and /terminate ------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "status", "text"), [
    ("GET", "launch?id=x", 405, "Method Not Allowed\n"),
    ("POST", "launch", 400, "Missing 'id' parameter\n"),
    ("POST", "launch?id=x", 400, "Invalid 'id' parameter 'x'\n"),
    ("GET", "terminate", 405, "Method Not Allowed\n"),
    ("POST", "terminate", 500,
     'a workspace pod was not found: pods "hatchery-alice" not found\n'),
])
async def test_launch_and_terminate_refuse_with_hatcherys_codes_and_texts(
        gw: GatewayUnderTest, client: aiohttp.ClientSession, method: str, path: str,
        status: int, text: str) -> None:
    resp = await call(client, gw, method, path)
    assert (resp.status, await resp.text()) == (status, text)


# -- /status ---------------------------------------------------------------------------------

async def test_not_found_has_gos_zero_values(gw: GatewayUnderTest,
                                             client: aiohttp.ClientSession) -> None:
    resp = await call(client, gw, "GET", "status")
    assert await resp.json() == {"status": "Not Found", "conditions": None,
                                 "containerStates": None, "idleTimeLimit": 0,
                                 "lastActivityTime": 0, "workspaceType": "Local"}


async def test_a_kubernetes_api_error_is_not_found_as_in_hatchery(
        start_gateway: Callable[..., Any], tmp_path: Path,
        client: aiohttp.ClientSession) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({  # nothing listens on port 9
        "apiVersion": "v1", "kind": "Config", "current-context": "down",
        "clusters": [{"name": "down", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "down", "context": {"cluster": "down", "user": "u"}}]}))
    gw = await start_gateway(backend="kubernetes", kubernetes={
        "kubeconfig": str(kubeconfig), "namespace": "jupyter-pods",
        "connect_timeout_seconds": 0.5, "retries": 0, "request_timeout_seconds": 1})
    resp = await call(client, gw, "GET", "status")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "Not Found" and body["workspaceType"] == "Kubernetes"


# -- one idle-time-limit rule ----------------------------------------------------------------

@pytest.mark.parametrize(("args", "ms"), [
    (["--NotebookApp.shutdown_no_activity_timeout=5400"], 5_400_000),
    (["--x", "--ServerApp.shutdown_no_activity_timeout=+60"], 60_000),  # Go's Atoi takes +
    (["--NotebookApp.shutdown_no_activity_timeout=1.5"], -1),  # ... and no fractions
    (["--a.shutdown_no_activity_timeout=x", "--b.shutdown_no_activity_timeout=9"], -1),
    (["--MappingKernelManager.cull_idle_timeout=60"], -1),
    (["shutdown_no_activity_timeout = 5"], -1),  # the marker includes "="
])
def test_options_find_the_idle_limit_as_hatchery_does(args: list[str], ms: int) -> None:
    assert option_idle_limit_ms(args) == ms


@pytest.mark.parametrize("args", [
    ["--NotebookApp.shutdown_no_activity_timeout=5400"],
    ["--ServerApp.shutdown_no_activity_timeout=60", "--x=1"],
    ["--NotebookApp.shutdown_no_activity_timeout=oops"],
])
def test_options_and_status_apply_the_same_rule(args: list[str]) -> None:
    config = parse_hatchery_config({"containers": [{"name": "j", "args": args}]}, "t")
    pod = {"spec": {"containers": [{"name": "hatchery-container", "args": args},
                                   {"name": "sidecar", "args": []}]}}
    listed = config.options[0].idle_time_limit
    assert idle_time_limit(pod) == (listed if listed > 0 else 0)


def test_a_later_containers_limit_replaces_an_earlier_one_in_status() -> None:
    assert pod_idle_limit_ms([["--a.shutdown_no_activity_timeout=1"],
                              ["--b.shutdown_no_activity_timeout=2"]]) == 2000
