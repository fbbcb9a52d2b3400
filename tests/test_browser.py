"""Browser test: a real Chromium (Playwright) drives `streamlit run explorer/app.py`.

Trains a tiny model from the Train page and watches its loss chart gain points, switches to Attention and back
while it trains, sees a heatmap, generates text, and opens the Tokenizer, Embeddings and Runs pages
(tests/test_browser_every_page.py walks every page). Set GPT_EXPLORER_SHOTS=<folder> to keep screenshots.
Needs Debian's chromium at /usr/bin/chromium; set GPT_EXPLORER_SKIP_BROWSER=1 to skip on purpose.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from browser_support import app_server, chromium_page, require_chromium

from explorer.jobs import training as jobs

pytestmark = pytest.mark.browser
SHOTS = os.environ.get("GPT_EXPLORER_SHOTS")   # a folder for screenshots, when asked
CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
          "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n") * 30


@pytest.fixture
def server(tmp_path, tiny_run):
    require_chromium()
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_run, root / "tiny")
    with app_server(root, tmp_path / "server.log", {"GPT_EXPLORER_MAX_JOBS": "1"}) as url:
        yield url, root
        for folder in root.iterdir():  # never leave a trainer behind
            if folder.is_dir() and jobs.job_state(folder).live:
                jobs.stop_job(folder)
                jobs.wait_until_done(folder, timeout=60)


def test_train_watch_inspect_generate_in_a_real_browser(server):
    from playwright.sync_api import expect
    url, root = server
    with chromium_page(width=1440) as (page, errors):
        main = page.get_by_test_id("stMainBlockContainer")  # not the header's own Stop button

        def settle():
            expect(page.locator('[data-testid="stApp"]')).to_be_visible()
            expect(page.locator("h1").first).to_be_visible()
            # the running-man status widget disappears when the script run is over
            expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0)
            expect(page.get_by_test_id("stException")).to_have_count(0)

        def nav(title):
            page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
            expect(page.locator("h1").first).to_have_text(title)

        def shot(name):
            if not SHOTS:
                return
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            # Streamlit scrolls inside its own container, so a full-page capture needs a tall window
            page.set_viewport_size({"width": 1440, "height": 2400})
            page.get_by_test_id("stMain").evaluate("el => el.scrollTo(0, 0)")
            page.wait_for_timeout(500)
            page.screenshot(path=str(Path(SHOTS) / f"{name}.png"))
            page.set_viewport_size({"width": 1440, "height": 1000})

        def loss_points() -> int:
            caption = page.get_by_text(re.compile(r"validation loss on held-out text \(\d+ points\)"))
            return int(re.search(r"\((\d+) points\)", caption.inner_text()).group(1))

        page.goto(url)
        settle()
        expect(page.get_by_test_id("stSidebarNav").get_by_text("Generate", exact=True)).to_be_visible()
        expect(page.locator("h1").first).to_have_text("Inside a prediction")  # the landing page
        nav("Train")
        settle()
        shot("train-idle")

        # ---- start a tiny run from the form ----
        page.get_by_text("Paste text", exact=True).click()
        area = page.locator('textarea[aria-label="Text to learn from"]')
        area.fill(CORPUS)
        area.press("Control+Enter")
        for label, value in (("Iterations", "1000000"), ("Eval interval", "100"), ("Warmup steps", "10")):
            box = page.locator(f'input[aria-label="{label}"]')
            box.fill(value)
            box.press("Enter")
        name = page.locator('input[aria-label="Run name (optional)"]')
        name.fill("browser-run")
        name.press("Enter")
        start = main.get_by_role("button", name=re.compile("Start training"))
        # a million steps of the default preset is expected to take days: the form asks for a confirmation first
        expect(start).to_be_disabled()
        main.get_by_text(re.compile("Yes, start a run expected to take")).click()
        expect(start).to_be_enabled()
        start.click()
        expect(page.get_by_text("Run: browser-run")).to_be_visible()
        expect(page.get_by_text(re.compile(r"\(([2-9]|\d\d+) points\)"))).to_be_visible()
        first = loss_points()
        expect(page.get_by_text(re.compile(rf"\(({'|'.join(str(n) for n in range(first + 1, first + 400))}) points\)"))
               ).to_be_visible()  # the chart gained points without any click
        assert jobs.job_state(root / "browser-run").state == "running"  # 1,000,000 steps: never done before Stop
        shot("train-running")

        # ---- leave while it trains: Attention shows a heatmap; the sidebar keeps the live status ----
        nav("Attention")
        settle()
        expect(page.locator(".js-plotly-plot .heatmaplayer").first).to_be_visible()
        expect(page.get_by_test_id("stSidebar").get_by_text(re.compile(r"browser-run · step"))).to_be_visible()
        shot("attention")
        before = loss_points_after_return = None
        nav("Train")
        expect(page.get_by_text("Run: browser-run")).to_be_visible()
        before = loss_points()
        expect(page.get_by_text(re.compile(rf"\(({'|'.join(str(n) for n in range(before + 1, before + 400))}) points\)"))
               ).to_be_visible()  # still training after the round trip
        loss_points_after_return = loss_points()
        assert loss_points_after_return > before
        main.get_by_role("button", name=re.compile("Stop")).click()
        expect(main.get_by_test_id("stProgress").get_by_text(re.compile(r"stopped at step"))).to_be_visible()  # the Train page's bar
        expect(page.locator("[data-testid=stSidebar]").get_by_text(re.compile(r"stopped at step")).first).to_be_visible()
        assert jobs.job_state(root / "browser-run").state == "stopped"
        expect(main.get_by_role("button", name=re.compile("Resume"))).to_be_enabled()

        # ---- generate ----
        nav("Generate")
        settle()
        main.get_by_role("button", name=re.compile("Generate$")).click()
        expect(page.locator('span[title^="step 0: p="]')).to_be_visible()
        settle()
        expect(page.locator(".js-plotly-plot")).to_have_count(4)  # next token, alternatives, KV cache step and growth
        shot("generate")

        for title, last_part in (("Tokenizer", "Vocabulary"), ("Embeddings", "Positions"), ("Runs", "Delete a run")):
            nav(title)
            expect(page.get_by_role("heading", name=last_part)).to_be_visible()
            settle()
            shot(title.lower())
        assert not errors, errors
