"""Browser test: a real Chromium (Playwright) drives the Patching page end to end on the shipped model (load the
worked example, see the three heatmaps and the summary, change the answer to one that is not one token and read
the refusal), and saves 1400x1000 screenshots of Why this token, Patching and Steering under test-artifacts/."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_FLAGS, WAIT_MS

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("GPT_EXPLORER_SHOTS", ROOT / "test-artifacts" / "attribution-shots"))


def test_patching_page_end_to_end(shipped_app):
    shipped_server = shipped_app[0]
    from playwright.sync_api import expect, sync_playwright
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        expect.set_options(timeout=WAIT_MS)

        def settle():
            expect(page.locator('[data-testid="stApp"]')).to_be_visible()
            expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0)
            expect(page.get_by_test_id("stException")).to_have_count(0)

        try:
            page.goto(shipped_server + "/patching")
            expect(page.locator("h1").first).to_have_text("Patching")
            page.get_by_role("button", name="Load the worked example: who speaks next?").click()
            settle()
            expect(page.locator(".js-plotly-plot")).to_have_count(3)
            expect(page.get_by_text(re.compile(r"Strongest head: L\dH\d"))).to_be_visible()
            expect(page.get_by_text(re.compile(r"on the clean prompt"))).to_be_visible()
            page.screenshot(path=str(SHOTS / "patching-1.png"))
            page.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "patching-2.png"))
            page.locator(".js-plotly-plot").nth(2).scroll_into_view_if_needed()
            page.mouse.wheel(0, 600)
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / "patching-3.png"))
            answer = page.get_by_label("Answer the clean prompt should favour")
            answer.fill("Jo")
            answer.press("Enter")
            settle()
            expect(page.get_by_text(re.compile(r"'Jo' is 2 tokens"))).to_be_visible()
            answer.fill("J")
            answer.press("Enter")
            settle()
            expect(page.locator(".js-plotly-plot")).to_have_count(3)

            page.goto(shipped_server + "/why_token")
            expect(page.locator("h1").first).to_have_text("Why this token")
            settle()
            expect(page.locator(".js-plotly-plot")).to_have_count(2)
            expect(page.get_by_text(re.compile("The heads that write most directly"))).to_be_visible()
            page.screenshot(path=str(SHOTS / "why_token-1.png"))
            page.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
            page.mouse.wheel(0, 400)
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / "why_token-2.png"))

            page.goto(shipped_server + "/steering")
            expect(page.locator("h1").first).to_have_text("Steering")
            settle()
            page.get_by_role("button", name="Generate side by side").click()
            settle()
            expect(page.get_by_text("(unsteered)")).to_be_visible()
            page.get_by_text("(unsteered)").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "steering.png"))
        finally:
            browser.close()
