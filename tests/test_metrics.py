"""Prometheus metrics, scraped from the real metrics listener of a real gateway: each family
moves when the thing it counts happens, and the user-facing listener never serves them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from .conftest import PROXY, GatewayUnderTest
from .helpers import API, auth, launch, status_becomes


async def scrape(gw: GatewayUnderTest) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on the metrics listener, by (name, sorted labels)."""
    port = gw.server.metrics_port
    assert port is not None and port != gw.server.port
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def metered(start_gateway: Callable[..., Any],
                  demo_workspace: Callable[[], Any]) -> GatewayUnderTest:
    """A gateway with its metrics listener on, and alice's workspace routed."""
    gw: GatewayUnderTest = await start_gateway(metrics_port=0)
    gw.publish("alice", await demo_workspace())
    return gw


async def scraped_during_echo(client: aiohttp.ClientSession, gw: GatewayUnderTest,
                              text: str) -> dict[Any, float]:
    """The samples while alice's WebSocket is still open, after one echo of ``text``."""
    async with client.ws_connect(gw.url(PROXY + "echo"),
                                 headers=gw.cookie_header("alice")) as ws:
        await ws.send_str(text)
        assert (await ws.receive()).data == text
        return await scrape(gw)


async def test_the_metrics_listener_is_not_the_users_listener(
        start_gateway: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    gw = await start_gateway(metrics_port=0)
    for path in ("/metrics", "/lw-workspace/metrics", PROXY + "metrics"):
        async with client.get(gw.url(path)) as resp:
            assert resp.status != 200 or "hatchway_routes" not in await resp.text()
    assert value(await scrape(gw), "hatchway_routes") == 0


async def test_fast_path_relays_and_refusals_are_counted(
        metered: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    gw = metered
    for _ in range(3):
        async with client.get(gw.url(PROXY + "api/status"), cookies=gw.cookies("alice")) as r:
            assert r.status == 200
    async with client.get(gw.url(PROXY + "api/status")) as r:  # no session
        assert r.status == 401
    async with client.get(gw.url(PROXY + "lab"), cookies=gw.cookies("bob")) as r:
        assert r.status == 404  # no workspace
    samples = await scrape(gw)
    assert value(samples, "hatchway_fastpath_requests_total", result="relayed") == 3
    # a handed-off connection stays aiohttp's: handoffs count connections, not requests
    assert value(samples, "hatchway_fastpath_requests_total", result="handed_off") >= 1
    assert value(samples, "hatchway_proxy_requests_total", outcome="401",
                 family="api/status") == 1
    assert value(samples, "hatchway_proxy_requests_total", outcome="404", family="lab") == 1
    assert value(samples, "hatchway_routes") == 1


async def test_websockets_open_on_the_fast_path_are_a_gauge(
        metered: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    samples = await scraped_during_echo(client, metered, "hi")
    assert value(samples, "hatchway_fastpath_websockets_open") == 1
    assert value(samples, "hatchway_fastpath_websockets_total") == 1


async def test_the_aiohttp_relay_reports_time_to_first_byte_and_bytes(
        start_gateway: Callable[..., Any], demo_workspace: Callable[[], Any],
        client: aiohttp.ClientSession) -> None:
    gw = await start_gateway(metrics_port=0, fast_path=False)
    gw.publish("alice", await demo_workspace())
    async with client.post(gw.url(PROXY + "upload"), data=b"x" * 1000,
                           cookies=gw.cookies("alice")) as r:
        assert r.status == 200
        body = await r.read()
    samples = await scrape(gw)
    assert value(samples, "hatchway_proxy_requests_total", outcome="relayed",
                 family="other") == 1
    assert value(samples, "hatchway_proxy_time_to_first_byte_seconds_count",
                 path="aiohttp") == 1
    assert value(samples, "hatchway_proxy_bytes_total", direction="to_workspace",
                 path="aiohttp") == 1000
    sent = value(samples, "hatchway_proxy_bytes_total", direction="to_browser", path="aiohttp")
    assert len(body) < sent < len(body) + 1024  # the answer as written: head and body


async def test_the_fast_path_reports_time_to_first_byte_and_bytes(
        metered: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    gw = metered
    received = 0
    for _ in range(3):
        async with client.post(gw.url(PROXY + "upload"), data=b"x" * 1000,
                               cookies=gw.cookies("alice")) as r:
            assert r.status == 200
            received += len(await r.read())
    samples = await scrape(gw)
    assert value(samples, "hatchway_fastpath_requests_total", result="relayed") == 3
    ttfb = "hatchway_proxy_time_to_first_byte_seconds"
    assert value(samples, ttfb + "_count", path="fast") == 3
    assert value(samples, ttfb + "_bucket", path="fast", le="+Inf") == 3
    assert value(samples, ttfb + "_bucket", path="fast", le="0.001") <= value(
        samples, ttfb + "_bucket", path="fast", le="10.0") == 3  # cumulative, all under 10 s
    assert 0 < value(samples, ttfb + "_sum", path="fast") < 30
    assert value(samples, ttfb + "_count", path="aiohttp") == 0
    assert value(samples, "hatchway_proxy_bytes_total", direction="to_workspace",
                 path="fast") == 3000
    sent = value(samples, "hatchway_proxy_bytes_total", direction="to_browser", path="fast")
    assert received < sent < received + 3 * 1024  # the answers as written: heads and bodies


async def test_fast_path_websocket_frames_count_as_bytes_both_ways(
        metered: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    samples = await scraped_during_echo(client, metered, "x" * 5000)
    up = value(samples, "hatchway_proxy_bytes_total", direction="to_workspace", path="fast")
    down = value(samples, "hatchway_proxy_bytes_total", direction="to_browser", path="fast")
    assert 5000 < up < 5100  # one masked frame
    assert 5000 < down < 5000 + 1024  # the 101 head and one frame


async def test_a_launch_and_its_termination_are_counted_and_timed(
        start_gateway: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    gw = await start_gateway(metrics_port=0)
    await launch(client, gw)
    await status_becomes(client, gw, "Running")
    async with client.post(gw.url(API + "terminate"), headers=auth(gw)) as resp:
        assert resp.status == 200
    samples = await scrape(gw)
    assert value(samples, "hatchway_launches_total", option="Demo workspace (built-in)") == 1
    assert value(samples, "hatchway_launch_to_running_seconds_count") == 1
    assert value(samples, "hatchway_terminations_total", reason="user") == 1


async def test_service_calls_are_timed_by_service(
        start_gateway: Callable[..., Any], aiohttp_server: Any,
        client: aiohttp.ClientSession) -> None:
    async def arborist(request: web.Request) -> web.Response:
        return web.json_response({"auth": True}) if request.method == "POST" \
            else web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/auth/{tail:.*}", arborist)
    server = await aiohttp_server(app, host="127.0.0.1")
    gw = await start_gateway(metrics_port=0, authz={
        "mode": "arborist", "arborist_url": f"http://127.0.0.1:{server.port}"})
    async with client.get(gw.url(API + "options"), headers=auth(gw)) as resp:
        assert resp.status == 200
    samples = await scrape(gw)
    assert value(samples, "hatchway_service_call_seconds_count", service="arborist",
                 outcome="ok") >= 1
