"""Tried as a new user would: run ``hatchway serve``, open the URL it prints in a real Chromium,
sign in on the dev login page, launch the demo, open it, use its WebSocket echo, terminate."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import serving

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.async_api", reason="needs playwright (python)")
async_playwright, expect = playwright.async_playwright, playwright.expect

pytestmark = pytest.mark.browser
SLOW = 20_000  # ms: launching and terminating a workspace on a busy machine
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The real command, as the README runs it; yields the URL its banner prints."""
    with serving(tmp_path, "--state-dir", str(tmp_path / "state")) as (url, err):
        yield url
    assert "Traceback" not in err.read_text(), err.read_text()


@pytest.mark.timeout(90)
async def test_a_newcomer_signs_in_launches_opens_and_terminates_the_demo(
        served: str, tmp_path: Path) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                           headless=True)
        try:
            page = await (await browser.new_context()).new_page()
            page.set_default_timeout(SLOW)
            await page.goto(served)
            assert "/login" in page.url  # no session yet: sent to the dev login page
            await expect(page.get_by_text("Development mode")).to_be_visible()
            await page.fill("input[name=user]", "alice")
            await page.click("button[type=submit]")

            await expect(page.locator("#who")).to_contain_text("Signed in as alice")
            demo = page.locator(".option", has_text="Demo")
            await expect(demo).to_be_visible()
            await expect(page.locator("#status")).to_have_text("Not Found")
            await demo.get_by_role("button", name="Launch").click()
            await expect(page.locator("#status")).to_have_text("Running", timeout=SLOW)
            shot = tmp_path / "launch-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 0

            async with page.expect_popup() as opened:
                await page.click("#open")
            workspace = await opened.value
            await expect(workspace.locator("#user")).to_have_text("alice")
            log = workspace.locator("#log")
            await expect(log).to_contain_text("connected (echo.v1)")
            await workspace.fill("#msg", "hello from chromium")
            await workspace.click("#send")
            await expect(log).to_contain_text("echo: hello from chromium")

            await page.bring_to_front()
            await page.click("#terminate")
            await expect(page.locator("#status")).to_have_text("Not Found", timeout=SLOW)
            await expect(log).to_contain_text("closed")  # the workspace went away
        finally:
            await browser.close()
