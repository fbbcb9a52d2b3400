"""One way to show a token, as a learner sees it: every page of the app in Chromium, on a model whose vocabulary holds
a newline, a tab, an apostrophe, '<', '&', a double quote, a backtick, '*' and '_', with a prompt full of them; the
page's visible text (`inner_text`) never holds a literal \\n or an HTML entity shown as text."""
from __future__ import annotations

import re
import urllib.parse

import pytest
from browser_support import app_server, chromium_page, require_chromium
from token_display_support import FORBIDDEN, PROMPT, make_awkward_run

pytestmark = pytest.mark.browser


def page_paths() -> list[str]:
    """The url path of every page, in the sidebar's order (explorer/app.py); the landing page's is empty."""
    from explorer.app import LANDING, LOOK_DEEPER, PIPELINE, TRAINING
    return ["" if stem == LANDING else stem for stem, _, _ in PIPELINE + TRAINING + LOOK_DEEPER]


def visible_text(page) -> str:
    from playwright.sync_api import expect
    expect(page.locator('[data-testid="stApp"]')).to_be_visible()
    expect(page.locator("h1").first).to_be_visible()
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0)
    page.wait_for_timeout(800)   # charts draw after the script ends
    return page.inner_text("body")


def test_every_page_shows_awkward_tokens_as_themselves(tmp_path):
    require_chromium()
    from playwright.sync_api import expect
    root = tmp_path / "checkpoints"
    make_awkward_run(root)
    query = urllib.parse.urlencode({"run": "awkward", "prompt": PROMPT})
    seen = {}
    with app_server(root, tmp_path / "server.log") as url, chromium_page() as (page, errors):
        for path in page_paths():
            page.goto(f"{url}/{path}?{query}")
            text = visible_text(page)
            if path == "generate":   # the generated chips and the step figures
                page.get_by_role("button", name="Generate").click()
                expect(page.get_by_text("Inspect generated token", exact=True)).to_be_visible()
                text = visible_text(page)
            seen[path] = text
            bad = [f for f in FORBIDDEN if f in text]
            assert not bad, (path, bad, [m.group() for f in bad for m in re.finditer(re.escape(f) + ".{0,30}", text)][:5])
            assert "Traceback" not in text and "Page not found" not in text, path
        assert not errors, errors
    # the prompt's tokens are there, shown as themselves: a newline as ↵, '<' and '&' as typed
    for path in ("", "tokenizer", "why_token", "token_loss"):
        assert "↵" in seen[path] and "<" in seen[path] and "&" in seen[path], path
    assert "the model predicts" in seen["circuit"]
