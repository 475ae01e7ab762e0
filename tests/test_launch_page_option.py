"""The launch page names the option the running workspace was launched from, and forgets it
once the workspace is terminated."""

from __future__ import annotations

import json
import re

import aiohttp

from .conftest import GatewayUnderTest
from .helpers import API, auth, launch, status_becomes


async def page_config(gw: GatewayUnderTest, client: aiohttp.ClientSession) -> dict[str, object]:
    async with client.get(gw.url(API), headers=auth(gw)) as resp:
        assert resp.status == 200
        page = await resp.text()
    found = re.search(r"const CONFIG = (\{.*?\});\n", page)
    assert found is not None
    return dict(json.loads(found[1]))


async def test_the_launch_page_names_the_running_option(
        gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    assert (await page_config(gw, client))["option"] == ""
    await launch(client, gw)
    await status_becomes(client, gw, "Running")
    assert (await page_config(gw, client))["option"] == "Demo workspace (built-in)"
    async with client.post(gw.url(API + "terminate"), headers=auth(gw)) as resp:
        assert resp.status == 200
    assert (await page_config(gw, client))["option"] == ""
