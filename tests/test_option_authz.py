"""Per-option ``authz`` as Hatchery's authz.go evaluates it: flat blocks, ``and``/``or`` one level
deep, ``resource_paths`` asked of Arborist (a small contract server on 127.0.0.1 that grants
resources per token), ``pay_models`` against the user's current pay model, failing closed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from launcher.options import WorkspaceOption, parse_hatchery_config
from proxy.admission.authz import Arborist, may_launch_option
from proxy.sessions.tokens import Identity

ALICE = Identity(user="alice", token="token-alice", expires_at=time.time() + 1200)
BOB = Identity(user="bob", token="token-bob", expires_at=time.time() + 1200)
# BRH's Nextflow block, exactly as in cdis-manifest brh.data-commons.org hatchery.json.
BRH_NEXTFLOW = {"version": 0.1, "or": [{"pay_models": ["Direct Pay"]},
                                       {"resource_paths": ["/workspace/jupyter-nextflow"]}]}


@dataclass
class ArboristContract:
    """``/auth/request`` answers ``{"auth": true}`` only when every requested resource is
    granted to the token (Arborist's rule for a multi-request body); it records each body."""

    grants: dict[str, set[str]] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
async def arborist(aiohttp_server: Any) -> ArboristContract:
    state = ArboristContract()

    async def auth_request(request: web.Request) -> web.Response:
        body = await request.json()
        state.bodies.append(body)
        granted = state.grants.get(body["user"]["token"], set())
        return web.json_response({"auth": all(r["resource"] in granted
                                              for r in body["requests"])})

    async def auth_proxy(request: web.Request) -> web.Response:
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/auth/request", auth_request)
    app.router.add_get("/auth/proxy", auth_proxy)
    server = await aiohttp_server(app, host="127.0.0.1")
    state.url = str(server.make_url("/"))
    return state


@pytest.fixture
async def client(arborist: ArboristContract) -> AsyncIterator[Arborist]:
    async with aiohttp.ClientSession() as http:
        yield Arborist(arborist.url, lambda: http, timeout_seconds=2.0)


def option(authz: dict[str, Any] | None) -> WorkspaceOption:
    entry: dict[str, Any] = {"name": "w"} if authz is None else {"name": "w", "authz": authz}
    return parse_hatchery_config({"containers": [entry]}, "hatchery.json").options[0]


def pay_model(name: str | None) -> Callable[[Identity], Any]:
    async def lookup(identity: Identity) -> str | None:
        return name
    return lookup


async def test_no_authz_block_is_open_without_asking(
        client: Arborist, arborist: ArboristContract) -> None:
    assert await may_launch_option(client, BOB, option(None)) is True
    assert arborist.bodies == []


async def test_resource_paths_ask_arborist_once_for_all_paths(
        client: Arborist, arborist: ArboristContract) -> None:
    arborist.grants["token-alice"] = {"/a"}
    opt = option({"version": 0.1, "resource_paths": ["/a", "/b"]})
    assert await may_launch_option(client, ALICE, opt) is False
    assert [[r["resource"] for r in b["requests"]] for b in arborist.bodies] == [["/a", "/b"]]


async def test_or_allows_on_the_resource_path_alone(
        client: Arborist, arborist: ArboristContract) -> None:
    arborist.grants["token-alice"] = {"/workspace/jupyter-nextflow"}
    assert await may_launch_option(client, ALICE, option(BRH_NEXTFLOW)) is True


async def test_or_allows_on_the_pay_model_alone(client: Arborist) -> None:
    assert await may_launch_option(client, BOB, option(BRH_NEXTFLOW),
                                   pay_model("Direct Pay")) is True


async def test_or_denies_when_no_rule_passes(client: Arborist) -> None:
    assert await may_launch_option(client, BOB, option(BRH_NEXTFLOW),
                                   pay_model("STRIDES Credits")) is False


async def test_and_needs_every_rule(client: Arborist, arborist: ArboristContract) -> None:
    arborist.grants["token-alice"] = {"/w"}
    opt = option({"version": 0.1, "and": [{"resource_paths": ["/w"]},
                                          {"pay_models": ["Direct Pay"]}]})
    assert await may_launch_option(client, ALICE, opt, pay_model("Direct Pay")) is True
    assert await may_launch_option(client, ALICE, opt, pay_model("Trial")) is False
    assert await may_launch_option(client, BOB, opt, pay_model("Direct Pay")) is False


async def test_pay_models_without_a_pay_model_source_deny(client: Arborist) -> None:
    opt = option({"version": 0.1, "pay_models": ["Direct Pay", "None"]})
    assert await may_launch_option(client, ALICE, opt) is False


async def test_no_current_pay_model_is_hatcherys_none(client: Arborist) -> None:
    opt = option({"version": 0.1, "pay_models": ["None"]})
    assert await may_launch_option(client, ALICE, opt, pay_model(None)) is True
    assert await may_launch_option(client, ALICE, opt, pay_model("Direct Pay")) is False


async def test_unknown_version_is_never_offered_and_asks_nobody(
        client: Arborist, arborist: ArboristContract) -> None:
    arborist.grants["token-alice"] = {"/w"}
    opt = option({"version": 0.2, "resource_paths": ["/w"]})
    assert await may_launch_option(client, ALICE, opt, pay_model(None)) is False
    assert arborist.bodies == []


async def test_nested_rule_with_neither_key_grants_nothing(client: Arborist) -> None:
    opt = option({"version": 0.1, "or": [{}]})
    assert await may_launch_option(client, ALICE, opt, pay_model(None)) is False


async def test_nested_rule_with_both_keys_needs_both(
        client: Arborist, arborist: ArboristContract) -> None:
    arborist.grants["token-alice"] = {"/w"}
    opt = option({"version": 0.1, "or": [{"resource_paths": ["/w"], "pay_models": ["X"]}]})
    assert await may_launch_option(client, ALICE, opt, pay_model("Y")) is False
    assert await may_launch_option(client, ALICE, opt, pay_model("X")) is True


# -- the attack, over a raw socket -----------------------------------------------------------

async def raw(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture
async def guarded(start_gateway: Callable[..., Any], arborist: ArboristContract,
                  tmp_path: Path) -> Any:
    """A gateway in Arborist mode serving an open option and BRH's pay-model-or-resource one;
    bob has neither the pay model (none is configured) nor the resource."""
    config = tmp_path / "hatchery.json"
    config.write_text(json.dumps({"containers": [
        {"name": "Open", "image": "x"},
        {"name": "Nextflow", "image": "x", "authz": BRH_NEXTFLOW},
    ]}), encoding="utf-8")
    arborist.grants["token-bob"] = set()
    gw = await start_gateway(hatchery_config=str(config),
                             authz={"mode": "arborist", "arborist_url": arborist.url})
    return gw, gw.gateway.hatchery.options[1].id


async def test_guarded_option_is_not_listed_to_a_user_it_does_not_allow(guarded: Any) -> None:
    gw, _ = guarded
    status, body = await raw(gw.server.port, (
        "GET /lw-workspace/options HTTP/1.1\r\nHost: commons\r\n"
        f"Cookie: access_token={gw.token('bob')}\r\nConnection: close\r\n\r\n").encode())
    assert status == 200 and [o["name"] for o in json.loads(body)] == ["Open"]


async def test_guarded_option_by_id_is_invalid_for_a_user_it_does_not_allow(
        guarded: Any) -> None:
    gw, nextflow = guarded
    status, body = await raw(gw.server.port, (
        f"GET /lw-workspace/options?id={nextflow} HTTP/1.1\r\nHost: commons\r\n"
        f"Cookie: access_token={gw.token('bob')}\r\nConnection: close\r\n\r\n").encode())
    assert status in (400, 404) and b"Nextflow" not in body


async def test_guarded_option_cannot_be_launched_by_a_user_it_does_not_allow(
        guarded: Any) -> None:
    gw, nextflow = guarded
    status, body = await raw(gw.server.port, (
        f"POST /lw-workspace/launch?id={nextflow} HTTP/1.1\r\nHost: commons\r\n"
        f"Cookie: access_token={gw.token('bob')}\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n").encode())
    assert (status, body) == (400, f"Invalid 'id' parameter '{nextflow}'\n".encode())
    assert await gw.gateway.backend.status("bob") is not None
    assert (await gw.gateway.backend.status("bob")).status == "Not Found"
