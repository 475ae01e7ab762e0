"""hatchery.json changed while the gateway runs: new launches and ``/options`` see the new list
after one poll (on the ManualClock: time is moved, not waited for), running workspaces keep
running, a broken file keeps the old list and says why once, in the log and ``/_status``.
Real files, a real ConfigMap-style ``..data`` symlink swap, a real gateway and workspace."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.clock import ManualClock
from launcher.defaults import demo_container

from .conftest import PROXY, GatewayUnderTest
from .helpers import API, auth, get_json, launch, option_id, status_becomes

POLL = 5.0  # hatchery_reload_seconds in these tests


def demo(name: str) -> dict[str, Any]:
    return {**demo_container(), "name": name}


def write(path: Path, containers: list[dict[str, Any]], **top: Any) -> None:
    """Replace ``path`` as an editor does: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"containers": containers, **top}), encoding="utf-8")
    os.replace(tmp, path)


def overwrite(path: Path, text: str) -> None:
    """Rewrite ``path`` in place (same inode), as ``echo > file`` does."""
    path.write_text(text, encoding="utf-8")


class ConfigMapVolume:
    """A directory laid out as the kubelet's atomic writer lays out a ConfigMap volume:
    ``hatchery.json`` → ``..data/hatchery.json``, ``..data`` → ``..<version>``; an update
    writes a new version directory, renames a new ``..data`` link over the old one, then
    removes the old directory."""

    def __init__(self, root: Path) -> None:
        self.root, self.version = root, 0
        root.mkdir()

    @property
    def path(self) -> Path:
        return self.root / "hatchery.json"

    def publish(self, text: str) -> None:
        self.version += 1
        new = self.root / f"..2024_01_01_00_00_0{self.version}.000"
        new.mkdir()
        (new / "hatchery.json").write_text(text, encoding="utf-8")
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        os.symlink(new.name, self.root / "..data_tmp")
        os.rename(self.root / "..data_tmp", self.root / "..data")
        if not self.path.is_symlink():
            os.symlink("..data/hatchery.json", self.path)
        if old is not None:
            (self.root / old / "hatchery.json").unlink()
            (self.root / old).rmdir()


@pytest.fixture
def hatchery_json(tmp_path: Path) -> Path:
    path = tmp_path / "hatchery.json"
    write(path, [demo("Demo A")])
    return path


@pytest.fixture
async def reloading(start_gateway: Callable[..., Any], clock: ManualClock,
                    hatchery_json: Path) -> GatewayUnderTest:
    gw: GatewayUnderTest = await start_gateway(clock=clock, hatchery_config=str(hatchery_json),
                                               hatchery_reload_seconds=POLL)
    return gw


async def names(client: aiohttp.ClientSession, gw: GatewayUnderTest) -> list[str]:
    return [o["name"] for o in await get_json(client, gw, "options") or []]


async def health(client: aiohttp.ClientSession, gw: GatewayUnderTest) -> dict[str, Any]:
    async with client.get(gw.url(API + "_status")) as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def test_an_edited_file_is_offered_after_one_poll(
        reloading: GatewayUnderTest, hatchery_json: Path, clock: ManualClock,
        client: aiohttp.ClientSession) -> None:
    write(hatchery_json, [demo("Demo A"), demo("Demo B")])
    clock.advance(POLL - 1)
    assert await names(client, reloading) == ["Demo A"]
    clock.advance(1)
    assert await names(client, reloading) == ["Demo A", "Demo B"]
    assert (await health(client, reloading))["hatchery_config"]["reloads"] == 1


async def test_a_file_rewritten_in_place_is_seen(
        reloading: GatewayUnderTest, hatchery_json: Path, clock: ManualClock,
        client: aiohttp.ClientSession) -> None:
    # same inode, same size (a one-letter rename), maybe the same mtime tick: the bytes differ
    overwrite(hatchery_json, json.dumps({"containers": [demo("Demo Z")]}))
    clock.advance(POLL)
    assert await names(client, reloading) == ["Demo Z"]


async def test_a_configmap_data_swap_is_offered(
        start_gateway: Callable[..., Any], clock: ManualClock, tmp_path: Path,
        client: aiohttp.ClientSession) -> None:
    volume = ConfigMapVolume(tmp_path / "hatchery")
    volume.publish(json.dumps({"containers": [demo("Demo A")]}))
    gw = await start_gateway(clock=clock, hatchery_config=str(volume.path),
                             hatchery_reload_seconds=POLL)
    volume.publish(json.dumps({"containers": [demo("Demo B")]}))
    clock.advance(POLL)
    assert await names(client, gw) == ["Demo B"]
    volume.publish(json.dumps({"containers": [demo("Demo C")]}))  # and the next swap too
    clock.advance(POLL)
    assert await names(client, gw) == ["Demo C"]


async def test_a_running_workspace_outlives_its_option(
        reloading: GatewayUnderTest, hatchery_json: Path, clock: ManualClock,
        client: aiohttp.ClientSession) -> None:
    old_id = await option_id(client, reloading, "Demo A")
    await launch(client, reloading, "Demo A")
    await status_becomes(client, reloading, "Running")
    write(hatchery_json, [demo("Demo B")])
    clock.advance(POLL)
    assert await names(client, reloading) == ["Demo B"]
    assert (await get_json(client, reloading, "status"))["status"] == "Running"
    async with client.get(reloading.url(PROXY + "api/status"),
                          headers=auth(reloading)) as resp:
        assert resp.status == 200  # still relayed to the workspace
    async with client.post(reloading.url(f"{API}launch?id={old_id}"),
                           headers=auth(reloading, "bob")) as resp:
        assert (resp.status, await resp.text()) == (400, f"Invalid 'id' parameter '{old_id}'\n")
    async with client.post(reloading.url(API + "terminate"), headers=auth(reloading)) as resp:
        assert (resp.status, await resp.text()) == (200, "Terminated workspace")


async def test_the_admin_view_names_an_option_no_longer_offered(
        start_gateway: Callable[..., Any], clock: ManualClock, hatchery_json: Path,
        client: aiohttp.ClientSession) -> None:
    gw = await start_gateway(clock=clock, hatchery_config=str(hatchery_json),
                             hatchery_reload_seconds=POLL, admin={"users": ["ops"]})
    old_id = await option_id(client, gw, "Demo A")
    await launch(client, gw, "Demo A")
    write(hatchery_json, [demo("Demo B")])
    clock.advance(POLL)
    [row] = (await get_json(client, gw, "admin/workspaces", "ops"))["workspaces"]
    assert row["option"] == {"id": old_id, "name": "Demo A", "offered": False}


async def test_a_broken_file_keeps_the_old_list_and_says_why_once(
        reloading: GatewayUnderTest, hatchery_json: Path, clock: ManualClock,
        client: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "hatchway.options")
    overwrite(hatchery_json, '{"containers": [')
    for _ in range(5):
        clock.advance(POLL)
    assert await names(client, reloading) == ["Demo A"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "hatchway.options"]
    assert len(warnings) == 1 and str(hatchery_json) in warnings[0]
    body = await health(client, reloading)
    assert body["status"] == "Healthy"  # the old list still serves
    problem = body["hatchery_config"]["problem"]
    assert str(hatchery_json) in problem and "valid JSON" in problem
    assert "still serving the 1 option(s)" in problem


async def test_an_invalid_field_is_named_and_a_fix_clears_the_problem(
        reloading: GatewayUnderTest, hatchery_json: Path, clock: ManualClock,
        client: aiohttp.ClientSession) -> None:
    write(hatchery_json, [{**demo("Demo B"), "cpu-limit": 2}])  # Go wants a string
    clock.advance(POLL)
    assert await names(client, reloading) == ["Demo A"]
    problem = (await health(client, reloading))["hatchery_config"]["problem"]
    assert "containers[0].cpu-limit" in problem
    write(hatchery_json, [demo("Demo B")])
    clock.advance(POLL)
    assert await names(client, reloading) == ["Demo B"]
    assert "problem" not in (await health(client, reloading))["hatchery_config"]


async def test_a_removed_file_keeps_the_old_list(
        reloading: GatewayUnderTest, hatchery_json: Path, clock: ManualClock,
        client: aiohttp.ClientSession) -> None:
    os.unlink(hatchery_json)  # noqa: ASYNC230 - a local file, at once
    clock.advance(POLL)
    assert await names(client, reloading) == ["Demo A"]
    assert "the file is gone" in (await health(client, reloading))["hatchery_config"]["problem"]


async def test_a_start_up_only_field_is_reported_as_needing_a_restart(
        reloading: GatewayUnderTest, hatchery_json: Path, clock: ManualClock,
        client: aiohttp.ClientSession) -> None:
    write(hatchery_json, [demo("Demo B")], **{"user-namespace": "elsewhere"})
    clock.advance(POLL)
    assert await names(client, reloading) == ["Demo B"]  # the options reload regardless
    assert (await health(client, reloading))["hatchery_config"]["restart_needed"] == \
        ["user-namespace"]


async def test_no_reload_when_turned_off(
        start_gateway: Callable[..., Any], clock: ManualClock, hatchery_json: Path,
        client: aiohttp.ClientSession) -> None:
    gw = await start_gateway(clock=clock, hatchery_config=str(hatchery_json),
                             hatchery_reload_seconds=0)
    write(hatchery_json, [demo("Demo B")])
    clock.advance(POLL * 10)
    assert await names(client, gw) == ["Demo A"]
    assert "hatchery_config" not in await health(client, gw)
