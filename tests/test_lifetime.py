"""How long a workspace lives: the idle limit in force is the smaller of the option's and the
global one (hatchery-reaper's rule), a maximum age stops a workspace whatever its activity, and
``/status`` lets the portal's shutdown warning count down to whichever end comes first."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.clock import ManualClock
from launcher.culling import IdleCuller
from launcher.errors import ConfigError
from launcher.lifetime import enforced_idle_ms, max_age_ms, portal_fields
from launcher.options import load_hatchery_file, parse_hatchery_config
from proxy.serve.app import CULLER

from .conftest import PROXY, GatewayUnderTest
from .helpers import auth, get_json, launch, status_becomes

FIXTURES = Path(__file__).parent / "fixtures" / "hatchery"
MINUTE_MS = 60_000


def portal_remaining_ms(status: dict[str, Any], now_ms: int) -> int | None:
    """What data-portal's WorkspaceSessionMonitor.js (0d28c20, lines 36-43) computes from
    ``/status``: None where it shows nothing (no limit or no activity), else the time left."""
    if not status["idleTimeLimit"] or status["idleTimeLimit"] < 0:
        return None
    if not (status["idleTimeLimit"] > 0 and status["lastActivityTime"] > 0):
        return None
    return int(status["idleTimeLimit"] - (now_ms - status["lastActivityTime"]))


def demo(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": [sys.executable, "-m", "launcher.demo"],
            "args": ["--port", "{port}", "--base-url", "{base_url}"],
            "path-rewrite": PROXY, "ready-probe": PROXY + "api/status", **extra}


async def _gateway(start_gateway: Any, tmp_path: Path, clock: ManualClock,
                   *options: dict[str, Any], **settings: Any) -> GatewayUnderTest:
    path = tmp_path / "hatchery.json"
    path.write_text(json.dumps({"containers": list(options)}), encoding="utf-8")
    gw: GatewayUnderTest = await start_gateway(hatchery_config=str(path), clock=clock,
                                               cull_interval_seconds=3600, **settings)
    return gw


def now_ms(clock: ManualClock) -> int:
    return int(clock.time() * 1000)


# -- the idle rule ---------------------------------------------------------------------------

def test_the_reaper_limit_caps_gen3_helms_default_jupyter_option() -> None:
    """gen3-helm's default option says shutdown_no_activity_timeout=5400; its reaper culls
    at idleTimeoutSeconds 3600 whatever the option says: 60 minutes win."""
    config = load_hatchery_file(
        str(FIXTURES / "gen3-helm__helm-hatchery-values__rendered-defaults.json"))
    option = config.options[0]
    assert option.idle_time_limit == 90 * MINUTE_MS
    assert enforced_idle_ms(option.idle_time_limit, 3600 * 1000) == 60 * MINUTE_MS


def test_an_options_shorter_limit_holds_under_the_global_one() -> None:
    assert enforced_idle_ms(30 * MINUTE_MS, 60 * MINUTE_MS) == 30 * MINUTE_MS


def test_without_a_global_limit_the_options_own_holds() -> None:
    assert enforced_idle_ms(90 * MINUTE_MS, 0) == 90 * MINUTE_MS
    assert enforced_idle_ms(-1, 0) == 0  # Hatchery's "none" for the option


async def test_the_culler_ends_an_idle_workspace_at_the_global_limit_below_the_options(
        start_gateway: Any, tmp_path: Path, client: aiohttp.ClientSession,
        clock: ManualClock) -> None:
    gw = await _gateway(start_gateway, tmp_path, clock, demo("Long", **{"idle-time-limit": 5400}))
    await launch(client, gw, "Long")
    await status_becomes(client, gw, "Running")
    g = gw.gateway
    culler = IdleCuller(g.backend, g.routes, g.activity.last_ms, default_limit_ms=2000,
                        clock=clock)
    clock.advance(1.5)
    assert await culler.sweep() == []  # under both limits
    clock.advance(1.0)  # 2.5 s idle: past the global 2 s, under the option's 5.4 s
    assert await culler.sweep() == ["alice"]


async def test_a_running_option_without_an_idle_limit_reports_none_as_hatchery_does(
        start_gateway: Any, tmp_path: Path, client: aiohttp.ClientSession,
        clock: ManualClock) -> None:
    """Hatchery's idleTimeLimit stays 0 when no arg sets it (pods.go 222-230); /options'
    -1 for such an option is not what /status says, and the local backend has no global."""
    gw = await _gateway(start_gateway, tmp_path, clock, demo("Plain"))
    await launch(client, gw, "Plain")
    status = await status_becomes(client, gw, "Running")
    assert (await get_json(client, gw, "options"))[0]["idle-time-limit"] == -1
    assert status["idleTimeLimit"] == 0


# -- maximum age -----------------------------------------------------------------------------

async def test_a_workspace_is_stopped_at_its_options_maximum_age_however_busy(
        start_gateway: Any, tmp_path: Path, client: aiohttp.ClientSession,
        clock: ManualClock) -> None:
    gw = await _gateway(start_gateway, tmp_path, clock, demo("Capped", **{"max-age-seconds": 10}))
    await launch(client, gw, "Capped")
    await status_becomes(client, gw, "Running")
    culler = gw.server.runner.app[CULLER]
    for _ in range(9):  # busy all along: a request every second
        async with client.get(gw.url(PROXY + "api/status"), headers=auth(gw)) as resp:
            assert resp.status == 200
        clock.advance(1.0)
        assert await culler.sweep() == []
    clock.advance(1.0)  # 10 s old
    assert await culler.sweep() == ["alice"]
    assert (await get_json(client, gw, "status"))["status"] == "Not Found"
    async with client.get(gw.url(PROXY + "api/status"), headers=auth(gw)) as resp:
        assert resp.status == 410
        assert (await resp.json())["reason"] == "max_age"


async def test_the_global_maximum_age_applies_to_options_without_their_own(
        start_gateway: Any, tmp_path: Path, client: aiohttp.ClientSession,
        clock: ManualClock) -> None:
    gw = await _gateway(start_gateway, tmp_path, clock, demo("Plain"), max_age_seconds=5)
    await launch(client, gw, "Plain")
    await status_becomes(client, gw, "Running")
    clock.advance(5.0)
    assert await gw.server.runner.app[CULLER].sweep() == ["alice"]


async def test_an_options_zero_maximum_age_exempts_it_from_the_global_one(
        start_gateway: Any, tmp_path: Path, client: aiohttp.ClientSession,
        clock: ManualClock) -> None:
    gw = await _gateway(start_gateway, tmp_path, clock, demo("Exempt", **{"max-age-seconds": 0}),
                        max_age_seconds=5)
    await launch(client, gw, "Exempt")
    await status_becomes(client, gw, "Running")
    clock.advance(60.0)
    assert await gw.server.runner.app[CULLER].sweep() == []


def test_an_options_maximum_age_replaces_the_global_one() -> None:
    assert max_age_ms(None, 3600) == 3_600_000
    assert max_age_ms(7200, 3600) == 7_200_000
    assert max_age_ms(0, 3600) == 0


def test_a_negative_maximum_age_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"containers\[0\]\.max-age-seconds"):
        parse_hatchery_config({"containers": [demo("Bad", **{"max-age-seconds": -5})]}, "h.json")


def test_the_maximum_age_key_leaves_the_option_id_as_hatchery_computes_it() -> None:
    plain = parse_hatchery_config({"containers": [demo("Same")]}, "h.json")
    capped = parse_hatchery_config({"containers": [demo("Same", **{"max-age-seconds": 60})]},
                                   "h.json")
    assert capped.options[0].id == plain.options[0].id


# -- the portal's warning --------------------------------------------------------------------

def test_the_portal_counts_down_to_the_idle_end_when_it_comes_first() -> None:
    started, now = 1_000_000, 1_000_000 + 10 * MINUTE_MS
    last = now - 50 * MINUTE_MS // 10  # 5 min ago
    idle, reported = portal_fields(60 * MINUTE_MS, last, started, 8 * 60 * MINUTE_MS)
    left = portal_remaining_ms({"idleTimeLimit": idle, "lastActivityTime": reported}, now)
    assert left == 55 * MINUTE_MS


def test_the_portal_counts_down_to_the_maximum_age_when_it_comes_first() -> None:
    started = 1_000_000
    now = started + 7 * 60 * MINUTE_MS + 58 * MINUTE_MS  # 2 min before 8 h
    idle, reported = portal_fields(60 * MINUTE_MS, now, started, 8 * 60 * MINUTE_MS)
    left = portal_remaining_ms({"idleTimeLimit": idle, "lastActivityTime": reported}, now)
    assert left == 2 * MINUTE_MS  # inside the portal's 5-minute banner


def test_the_portal_counts_down_to_the_maximum_age_of_an_option_without_idle_limit() -> None:
    started = 1_000_000
    now = started + 57 * MINUTE_MS
    idle, reported = portal_fields(0, 0, started, 60 * MINUTE_MS)
    assert portal_remaining_ms({"idleTimeLimit": idle, "lastActivityTime": reported},
                               now) == 3 * MINUTE_MS


async def test_status_shows_the_portal_an_approaching_maximum_age(
        start_gateway: Any, tmp_path: Path, client: aiohttp.ClientSession,
        clock: ManualClock) -> None:
    gw = await _gateway(start_gateway, tmp_path, clock,
                        demo("Capped", **{"idle-time-limit": 6000, "max-age-seconds": 10}))
    started = now_ms(clock)  # the clock stands still while the workspace launches
    await launch(client, gw, "Capped")
    await status_becomes(client, gw, "Running")
    catch_up(clock)
    clock.advance(7.0)
    async with client.get(gw.url(PROXY + "api/status"), headers=auth(gw)) as resp:
        assert resp.status == 200  # just active: idleness would end it in 6 s, age sooner
    clock.advance(1.0)
    status = await get_json(client, gw, "status")
    assert status["status"] == "Running"
    assert portal_remaining_ms(status, now_ms(clock)) == started + 10_000 - now_ms(clock)


def catch_up(clock: ManualClock) -> None:
    """Bring the clock to the real time the demo workspace stamps its own activity with."""
    clock.advance(max(0.0, time.time() - clock.time()))


# -- what counts as activity -----------------------------------------------------------------

@pytest.mark.parametrize("fast", [pytest.param(True, id="fast-path"),
                                  pytest.param(False, id="aiohttp")])
async def test_an_open_tabs_pings_and_pongs_do_not_keep_a_workspace_alive(
        start_gateway: Any, tmp_path: Path, client: aiohttp.ClientSession,
        clock: ManualClock, fast: bool) -> None:
    gw = await _gateway(start_gateway, tmp_path, clock, demo("Short", **{"idle-time-limit": 1500}),
                        fast_path=fast)
    await launch(client, gw, "Short")
    await status_becomes(client, gw, "Running")
    catch_up(clock)
    headers = {**gw.cookie_header("alice"), "Origin": gw.base}  # as a browser's tab sends
    # A connection of its own: ``client``'s kept-alive one went to aiohttp with the API calls
    # and stays there, so on it the fast path would never see this WebSocket.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as tab, \
            tab.ws_connect(gw.url(PROXY + "echo"), headers=headers, autoping=False,
                           compress=0) as ws:
        spliced = gw.gateway.fast_path.n_websockets if gw.gateway.fast_path else 0
        assert spliced == (1 if fast else 0), "the WebSocket took the other relay"
        for _ in range(12):  # 3.6 s of keep-alive chatter, no message
            await ws.pong(b"answering the workspace")
            await ws.ping(b"still open")
            reply = await ws.receive(timeout=5)  # the workspace's pong: both passed the relay
            assert reply.type is aiohttp.WSMsgType.PONG
            clock.advance(0.3)
        assert await gw.server.runner.app[CULLER].sweep() == ["alice"]
