"""The Hatchery-compatible API drives the local backend end to end: options → launch →
``Launching`` → ``Running`` → traffic through the proxy → terminate → ``Not Found``, with the
status codes and bodies an existing Gen3 portal expects. Real gateway, real workspace processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.clock import ManualClock
from proxy.api.devlogin import DEV_ISSUER
from proxy.gateway import GATEWAY
from proxy.serve.app import build_app
from proxy.settings import load_settings

from .conftest import PROXY, GatewayUnderTest
from .helpers import API, CRASHES, NEVER_READY, auth, get_json, launch, option_id, status_becomes


async def gateway_with_options(aiohttp_server: Any, tmp_path: Path,
                               containers: list[dict[str, Any]]) -> GatewayUnderTest:
    """A gateway reading an operator's hatchery.json, as ``--config hatchery.json`` does."""
    path = tmp_path / "hatchery.json"
    path.write_text(json.dumps({"containers": containers}), encoding="utf-8")
    settings = load_settings([str(path)], environ={}, overrides={
        "state_dir": str(tmp_path / "state"), "local": {"stop_grace_seconds": 1.0}})
    app = build_app(settings)
    server = await aiohttp_server(app, host="127.0.0.1")
    return GatewayUnderTest(server, app[GATEWAY], app.get(DEV_ISSUER))


@pytest.fixture
async def running(gw: GatewayUnderTest, client: aiohttp.ClientSession) -> GatewayUnderTest:
    """alice's demo workspace launched through the API and Running."""
    await launch(client, gw)
    await status_becomes(client, gw, "Running")
    return gw


@pytest.fixture
async def timed(start_gateway: Callable[..., Any], clock: ManualClock,
                client: aiohttp.ClientSession) -> GatewayUnderTest:
    """``running`` on a ManualClock: activity times move only with ``clock.advance``."""
    gw: GatewayUnderTest = await start_gateway(clock=clock)
    await launch(client, gw)
    await status_becomes(client, gw, "Running")
    return gw


# -- options ---------------------------------------------------------------------------------

async def test_options_list_the_demo_in_hatcherys_shape(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    options = await get_json(client, gw, "options")
    demo = next(o for o in options if "Demo" in o["name"])
    assert set(demo) == {"name", "cpu-limit", "memory-limit", "id", "gpu", "idle-time-limit"}
    assert len(demo["id"]) == 32 and int(demo["id"], 16) >= 0  # an MD5, as Hatchery's
    assert demo["idle-time-limit"] == -1


async def test_option_ids_are_the_same_after_a_restart(
        start_gateway: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    first, second = await start_gateway(), await start_gateway()
    assert [o["id"] for o in await get_json(client, first, "options")] == \
        [o["id"] for o in await get_json(client, second, "options")]


async def test_options_with_an_id_answer_that_one_object(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    oid = await option_id(client, gw, "Demo")
    one = await get_json(client, gw, f"options?id={oid}")
    assert isinstance(one, dict) and one["id"] == oid and "Demo" in one["name"]


async def test_the_api_without_a_session_is_401(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(gw.url(API + "options")) as resp:
        assert resp.status == 401


# -- launch ----------------------------------------------------------------------------------

async def test_launch_with_get_is_405(gw: GatewayUnderTest,
                                      client: aiohttp.ClientSession) -> None:
    oid = await option_id(client, gw, "Demo")
    async with client.get(gw.url(f"{API}launch?id={oid}"), headers=auth(gw)) as resp:
        assert resp.status == 405
    assert (await get_json(client, gw, "status"))["status"] == "Not Found"


async def test_launch_without_an_id_is_400(gw: GatewayUnderTest,
                                           client: aiohttp.ClientSession) -> None:
    async with client.post(gw.url(API + "launch"), headers=auth(gw)) as resp:
        assert resp.status == 400


async def test_launch_with_an_unknown_id_is_400(gw: GatewayUnderTest,
                                                client: aiohttp.ClientSession) -> None:
    async with client.post(gw.url(API + "launch?id=0123"), headers=auth(gw)) as resp:
        assert resp.status == 400
        assert "0123" in await resp.text()


async def test_launch_goes_launching_then_running(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    await launch(client, gw)
    launching = await get_json(client, gw, "status")
    assert launching["status"] == "Launching"
    assert launching["conditions"] == [{"type": "Ready", "status": "False"}]
    running = await status_becomes(client, gw, "Running")
    assert set(running) >= {"status", "conditions", "containerStates", "idleTimeLimit",
                            "lastActivityTime", "workspaceType"}


async def test_a_second_launch_is_500(running: GatewayUnderTest,
                                      client: aiohttp.ClientSession) -> None:
    oid = await option_id(client, running, "Demo")
    async with client.post(running.url(f"{API}launch?id={oid}"), headers=auth(running)) as resp:
        assert resp.status == 500
    assert (await get_json(client, running, "status"))["status"] == "Running"


async def test_each_user_has_their_own_status(running: GatewayUnderTest,
                                              client: aiohttp.ClientSession) -> None:
    assert (await get_json(client, running, "status", user="bob"))["status"] == "Not Found"


# -- traffic ---------------------------------------------------------------------------------

async def test_http_reaches_the_launched_workspace_as_its_user(
        running: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(running.url(PROXY + "headers"), headers=auth(running)) as resp:
        assert resp.status == 200
        seen = await resp.json()
    assert seen["path"] == PROXY + "headers"
    assert seen["headers"]["REMOTE_USER"] == "alice"


async def test_websocket_reaches_the_launched_workspace(
        running: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.ws_connect(running.url(PROXY + "echo"), headers=auth(running),
                                 protocols=["echo.v1"]) as ws:
        assert ws.protocol == "echo.v1"
        await ws.send_str("hello through the gateway")
        assert await ws.receive_str(timeout=5) == "hello through the gateway"


async def test_http_traffic_advances_last_activity_time(
        timed: GatewayUnderTest, clock: ManualClock, client: aiohttp.ClientSession) -> None:
    before = (await get_json(client, timed, "status"))["lastActivityTime"]
    assert before > 0  # the launch itself counts
    clock.advance(1.2)  # the tracker's clock ticks once a second
    async with client.get(timed.url(PROXY + "headers"), headers=auth(timed)) as resp:
        assert resp.status == 200
    assert (await get_json(client, timed, "status"))["lastActivityTime"] > before


async def test_websocket_messages_alone_advance_last_activity_time(
        timed: GatewayUnderTest, clock: ManualClock, client: aiohttp.ClientSession) -> None:
    async with client.ws_connect(timed.url(PROXY + "echo"), headers=auth(timed)) as ws:
        before = (await get_json(client, timed, "status"))["lastActivityTime"]
        clock.advance(1.2)
        await ws.send_str("still here")
        assert await ws.receive_str(timeout=5) == "still here"
        assert (await get_json(client, timed, "status"))["lastActivityTime"] > before


async def test_status_polling_is_not_activity(timed: GatewayUnderTest, clock: ManualClock,
                                              client: aiohttp.ClientSession) -> None:
    before = (await get_json(client, timed, "status"))["lastActivityTime"]
    clock.advance(1.2)
    assert (await get_json(client, timed, "status"))["lastActivityTime"] == before


# -- terminate -------------------------------------------------------------------------------

async def test_terminate_with_get_is_405(running: GatewayUnderTest,
                                         client: aiohttp.ClientSession) -> None:
    async with client.get(running.url(API + "terminate"), headers=auth(running)) as resp:
        assert resp.status == 405
    assert (await get_json(client, running, "status"))["status"] == "Running"


async def test_terminate_ends_the_workspace_and_its_route(
        running: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.post(running.url(API + "terminate"), headers=auth(running)) as resp:
        assert (resp.status, await resp.text()) == (200, "Terminated workspace")
    assert (await get_json(client, running, "status"))["status"] == "Not Found"
    async with client.get(running.url(PROXY + "headers"), headers=auth(running)) as resp:
        assert resp.status == 410  # workspace stopped (proxy/admission/stopped.py)


async def test_a_workspace_can_be_launched_again_after_terminate(
        running: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.post(running.url(API + "terminate"), headers=auth(running)) as resp:
        assert resp.status == 200
    await launch(client, running)
    await status_becomes(client, running, "Running")


async def test_a_crashed_workspace_shows_stopped_with_its_exit_status(
        aiohttp_server: Any, tmp_path: Path, client: aiohttp.ClientSession) -> None:
    gw = await gateway_with_options(aiohttp_server, tmp_path, [CRASHES])
    await launch(client, gw, "Crashes")
    stopped = await status_becomes(client, gw, "Stopped")
    [state] = stopped["containerStates"]
    assert state["state"]["terminated"]["exitCode"] == 3
    assert "status 3" in stopped["message"]
    async with client.get(gw.url(PROXY), headers=auth(gw)) as resp:
        assert resp.status == 404


# -- progress --------------------------------------------------------------------------------

async def read_events(client: aiohttp.ClientSession, gw: GatewayUnderTest) -> list[Any]:
    events = []
    async with client.get(gw.url(API + "progress"), headers=auth(gw),
                          timeout=aiohttp.ClientTimeout(total=30)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for line in resp.content:
            if line.startswith(b"data: "):
                events.append(json.loads(line[len(b"data: "):]))
    return events


async def test_progress_streams_events_ending_ready(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    await launch(client, gw)
    events = await read_events(client, gw)
    assert events and events[-1]["ready"] is True and events[-1]["progress"] == 100
    assert not any(e["failed"] for e in events)


async def test_progress_of_a_crashed_workspace_ends_failed(
        aiohttp_server: Any, tmp_path: Path, client: aiohttp.ClientSession) -> None:
    gw = await gateway_with_options(aiohttp_server, tmp_path, [CRASHES])
    await launch(client, gw, "Crashes")
    events = await read_events(client, gw)
    assert events[-1]["failed"] is True and "status 3" in events[-1]["message"]


# -- the rest of Hatchery's API --------------------------------------------------------------

@pytest.mark.parametrize("path", ["/lw-workspace/_status", "/_status"])
async def test_health_answers_200(gw: GatewayUnderTest, client: aiohttp.ClientSession,
                                  path: str) -> None:
    async with client.get(gw.url(path)) as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "Healthy"


async def test_version_answers_200(gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(gw.url(API + "_version")) as resp:
        assert resp.status == 200
        assert (await resp.json())["version"]


# -- the proxy before and during a launch ----------------------------------------------------

async def test_proxy_without_a_workspace_says_launch_one_in_json(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(gw.url(PROXY + "lab"), headers=auth(gw)) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "no workspace — launch one"


async def test_proxy_without_a_workspace_says_launch_one_to_browsers(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    headers = {**auth(gw), "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    async with client.get(gw.url(PROXY + "lab"), headers=headers) as resp:
        assert resp.status == 404
        assert resp.content_type == "text/html"
        page = await resp.text()
    assert "no workspace — launch one" in page
    assert 'href="/lw-workspace/"' in page


async def test_proxy_while_launching_is_503_with_retry_after(
        aiohttp_server: Any, tmp_path: Path, client: aiohttp.ClientSession) -> None:
    gw = await gateway_with_options(aiohttp_server, tmp_path, [NEVER_READY])
    await launch(client, gw, "Never ready")
    assert (await get_json(client, gw, "status"))["status"] == "Launching"
    async with client.get(gw.url(PROXY), headers=auth(gw)) as resp:
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) > 0
