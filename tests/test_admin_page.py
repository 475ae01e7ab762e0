"""The operator's page in a real Chromium: it lists a workspace whose user name is hostile
HTML (shown as text, never run) and stops it with one click."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from .conftest import GatewayUnderTest
from .helpers import get_json, launch, status_becomes

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.async_api", reason="needs playwright (python)")
async_playwright, expect = playwright.async_playwright, playwright.expect

pytestmark = pytest.mark.browser
SLOW = 20_000  # ms
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
HOSTILE = '<img src=x onerror="alert(document.domain)">"&amp;'
OPERATOR = "ops"


@pytest.mark.timeout(90)
async def test_the_page_lists_a_hostile_name_as_text_and_stops_it(
        start_gateway: Callable[..., Any], client: aiohttp.ClientSession) -> None:
    gw: GatewayUnderTest = await start_gateway(admin={"users": [OPERATOR]})
    await launch(client, gw, user=HOSTILE)
    await status_becomes(client, gw, "Running", user=HOSTILE)
    dialogs: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                           headless=True)
        try:
            context = await browser.new_context()
            await context.add_cookies([{"name": "access_token", "value": gw.token(OPERATOR),
                                        "url": gw.base}])
            page = await context.new_page()
            page.set_default_timeout(SLOW)

            async def answer(dialog: Any) -> None:
                dialogs.append(dialog.message)
                await dialog.accept()

            page.on("dialog", answer)
            await page.goto(gw.url("/lw-workspace/admin/"))
            row = page.locator("#rows tr", has=page.locator("td.user"))
            await expect(row).to_have_count(1)
            await expect(row.locator("td.user")).to_have_text(HOSTILE)
            await expect(row).to_contain_text("Running")
            await expect(page.locator("#rows img")).to_have_count(0)
            await row.get_by_role("button", name="Stop").click()
            await expect(page.locator("#rows")).to_contain_text("No workspaces.")
        finally:
            await browser.close()
    assert dialogs == [f"Stop the workspace of {HOSTILE}? Its volume is kept."]  # no alert
    assert (await get_json(client, gw, "status", HOSTILE))["status"] == "Not Found"
