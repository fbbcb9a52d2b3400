"""Every page of the app in a real Chromium, offline, as a learner sees it: one walk that checks what two walks did.

The server runs with tests/offline_guard on its PYTHONPATH (every connection beyond loopback refused) and an
unreachable proxy, on a model whose vocabulary holds a newline, a tab, an apostrophe, '<', '&', a double quote, a
backtick, '*' and '_', with a prompt full of them. On every page: the browser asks nothing of any host but the
app's; the visible text (`inner_text`) never holds a literal \\n or an HTML entity shown as text; no exception, no
error box, no traceback in the server's log. Set GPT_EXPLORER_SHOTS=<folder> to keep a screenshot of each page."""
from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

import pytest
from browser_support import app_server, chromium_page, require_chromium
from conftest import OFFLINE_GUARD
from token_display_support import FORBIDDEN, PROMPT, make_awkward_run

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = "http://10.255.255.1:9"


def pages() -> list[tuple[str, str]]:
    """(url path, sidebar title) of every page, in the sidebar's order (explorer/app.py); the landing page's path
    is empty."""
    from explorer.app import LANDING, LOOK_DEEPER, PIPELINE, TRAINING
    return [("" if stem == LANDING else stem, title) for stem, title, _ in PIPELINE + TRAINING + LOOK_DEEPER]


def visible_text(page) -> str:
    from playwright.sync_api import expect
    expect(page.locator('[data-testid="stApp"]')).to_be_visible()
    expect(page.locator("h1").first).to_be_visible()
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0)
    expect(page.locator('[data-testid="stSkeleton"]')).to_have_count(0)   # widgets whose code loads lazily
    page.wait_for_timeout(800)   # charts draw after the script ends
    return page.inner_text("body")


def test_every_page_offline_shows_awkward_tokens_as_themselves(tmp_path):
    require_chromium()
    from playwright.sync_api import expect
    root = tmp_path / "checkpoints"
    make_awkward_run(root)
    env = {"GPT_EXPLORER_CACHE": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join([str(ROOT), str(OFFLINE_GUARD)]),
           "HTTP_PROXY": UNREACHABLE, "HTTPS_PROXY": UNREACHABLE, "http_proxy": UNREACHABLE,
           "https_proxy": UNREACHABLE, "NO_PROXY": ""}
    shots = os.environ.get("GPT_EXPLORER_SHOTS")
    query = urllib.parse.urlencode({"run": "awkward", "prompt": PROMPT})
    log = tmp_path / "server.log"
    seen, elsewhere = {}, []
    with app_server(root, log, env) as url, chromium_page() as (page, errors):
        page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else elsewhere.append(r.url))
        page.goto(f"{url}/?{query}")   # the learner's place (run, prompt) is set once, then kept across pages
        for path, title in pages():
            if path:   # as a learner goes: a click in the sidebar (no page reload)
                page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
                page.wait_for_url(f"{url}/{path}*")
                expect(page.locator("h1").first).to_have_text(title)   # the new page's run, not the last one's
            text = visible_text(page)
            if path == "generate":   # the generated chips and the step figures
                page.get_by_role("button", name="Generate").click()
                expect(page.get_by_text("Inspect generated token", exact=True)).to_be_visible()
                text = visible_text(page)
            seen[path] = text
            bad = [f for f in FORBIDDEN if f in text]
            assert not bad, (path, bad, [m.group() for f in bad for m in re.finditer(re.escape(f) + ".{0,30}", text)][:5])
            assert "Traceback" not in text and "Page not found" not in text, path
            assert page.locator('[data-testid="stException"]').count() == 0, path
            error_boxes = page.locator('[data-testid="stAlertContentError"]')
            assert error_boxes.count() == 0, (path, error_boxes.all_inner_texts())
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(shots) / f"{path or 'inside'}.png"))
        assert not errors, errors
    assert not elsewhere, f"the browser asked hosts other than the app's: {elsewhere[:5]}"
    assert "Traceback" not in log.read_text(errors="replace")
    # the prompt's tokens are there, shown as themselves: a newline as ↵, '<' and '&' as typed
    for path in ("", "tokenizer", "why_token", "token_loss"):
        assert "↵" in seen[path] and "<" in seen[path] and "&" in seen[path], path
    assert "the model predicts" in seen["circuit"]
