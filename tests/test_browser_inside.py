"""Browser tests of issue 12 on the shipped model (Playwright + Debian's Chromium, as tests/test_browser.py):
the app opens on "Inside a prediction" with every stage; clicking a token moves the position; clicking a
thumbnail selects a head; the line view draws 128 tokens; the MLP and Generate views render. With
GPT_EXPLORER_SHOTS=<folder>, screenshots at 1400 x 1000 go to <folder>/inside-shots/ (one per view) for a person to
look at; without it the tests take none (and skip the waits a picture needs).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser_support import chromium_page

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"
SHOTS = Path(os.environ["GPT_EXPLORER_SHOTS"]) / "inside-shots" if os.environ.get("GPT_EXPLORER_SHOTS") else None
STAGES = ["1 · Tokenizer", "2 · Embeddings", "3a · LayerNorm", "3b · Query and keys", "3c · Scores, causal mask",
          "3d · Weighted sum of values", "3e · LayerNorm and the feed-forward", "4a · Final norm",
          "4b · Softmax, temperature"]
LONG_PROMPT = ("JULIET:\nO Romeo, Romeo! wherefore art thou Romeo? Deny thy father and refuse thy name; "
               "Or, if thou wilt not, be but sworn my love,")[:128]  # 128 characters = 128 tokens


@pytest.fixture
def page(shipped_app):
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as (tab, errors):
        tab.goto(shipped_app[0])
        yield tab
        assert not errors, errors


def settle(page):
    from playwright.sync_api import expect
    expect(page.locator('[data-testid="stApp"]')).to_be_visible()
    expect(page.locator("h1").first).to_be_visible()
    page.wait_for_timeout(300)
    expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.locator('[data-testid="stAlertContentError"]')).to_have_count(0)


def shot(page, name: str, full: bool = False):
    """A 1400 x 1000 screenshot (what a learner sees first); full=True also saves the whole page, taller."""
    if not SHOTS:
        return
    page.get_by_test_id("stMain").evaluate("el => el.scrollTo(0, 0)")
    page.wait_for_timeout(600)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    if full:
        height = page.get_by_test_id("stMain").evaluate("el => el.scrollHeight")
        page.set_viewport_size({"width": 1400, "height": min(8000, max(1000, height))})
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / f"{name}-full.png"))
        page.set_viewport_size({"width": 1400, "height": 1000})


def nav(page, title: str):
    from playwright.sync_api import expect
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    expect(page.locator("h1").first).to_have_text(title)
    settle(page)


def test_landing_page_every_stage_and_a_token_click(page):
    from playwright.sync_api import expect
    settle(page)
    expect(page.locator("h1").first).to_have_text("Inside a prediction")  # the app opens on it
    main = page.get_by_test_id("stMainBlockContainer")
    for stage in STAGES:
        expect(main.get_by_test_id("stExpander").filter(has_text=stage)).to_have_count(1)
    shot(page, "inside")
    expect(main.get_by_text("Position 48,", exact=False)).to_be_visible()  # the last token by default
    pill = main.get_by_role("radio").nth(17)  # a pill: the second "R" of the prompt (position 17)
    expect(pill).to_have_text("R\u2060")
    pill.click()  # the second "Romeo"
    expect(main.get_by_text("Position 17,", exact=False)).to_be_visible()
    settle(page)
    for stage in STAGES:  # open every box, for the full-page screenshot
        box = main.get_by_test_id("stExpander").filter(has_text=stage)
        if box.locator("details[open]").count() == 0:
            box.locator("summary").click()
    settle(page)
    shot(page, "inside-open", full=True)


def click_tile(page, layer: int, head: int):
    """Click the overview's clickable marker of (layer, head), found through plotly's own axes."""
    point = page.locator(".st-key-attn_overview .js-plotly-plot").evaluate("""(el, want) => {
        const tr = el.data.find(t => t.customdata);
        const i = tr.customdata.findIndex(c => c[0] === want[0] && c[1] === want[1]);
        const xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis, box = el.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(tr.x[i]), box.top + ya._offset + ya.l2p(tr.y[i])];
    }""", [layer, head])
    page.mouse.click(point[0], point[1])


def test_attention_thumbnail_click_selects_the_head_and_lines_render_128_tokens(page):
    from playwright.sync_api import expect
    settle(page)
    nav(page, "Attention")
    main = page.get_by_test_id("stMainBlockContainer")
    expect(main.locator(".st-key-attn_overview .js-plotly-plot")).to_be_visible()
    expect(main.locator(".st-key-attn_heatmap .vega-embed").first).to_be_visible()
    shot(page, "attention")
    main.locator(".st-key-attn_overview").scroll_into_view_if_needed()
    click_tile(page, 2, 3)
    expect(main.get_by_text("Layer 2, head 3", exact=True)).to_be_visible()  # the heatmap's title follows the click
    settle(page)
    expect(main.get_by_role("combobox", name="Head")).to_have_value("head 3")
    shot(page, "attention-clicked-L2H3")
    # a click on a heatmap cell makes its row the query position (Vega draws each cell as an SVG path labelled
    # "key: k; query: q; weight: w")
    cell = main.locator('.st-key-attn_heatmap path[aria-label^="key: 3; query: 20;"]')
    cell.scroll_into_view_if_needed()
    expect(main.get_by_text(re.compile(r"Query position 20\b"))).to_have_count(0)
    cell.click()
    expect(main.get_by_text(re.compile(r"Query position 20\b"))).to_be_visible()
    settle(page)

    area = main.locator('textarea[aria-label="Prompt"]')
    area.fill(LONG_PROMPT)
    area.press("Control+Enter")
    expect(main.get_by_text("Layer 2, head 3", exact=True)).to_be_visible()
    settle(page)
    lines = main.locator(".st-key-attn_lines")
    lines.scroll_into_view_if_needed()
    chart = lines.locator(".vega-embed").first
    expect(chart).to_be_visible()
    assert chart.bounding_box()["height"] >= 128 * 14  # one readable row per token, all 128 of them
    main.get_by_text("all 6 heads of layer 2").click()
    settle(page)
    if SHOTS:
        page.wait_for_timeout(800)
        main.get_by_role("tab", name="Lines between tokens").scroll_into_view_if_needed()
        page.wait_for_timeout(600)
        page.screenshot(path=str(SHOTS / "attention-lines-128.png"))  # 1400 x 1000: the top of the chart
        page.set_viewport_size({"width": 1400, "height": 2400})   # all 128 rows (the canvas paints what is on screen)
        chart.evaluate("el => el.scrollIntoView({block: 'center'})")
        page.wait_for_timeout(1000)
        chart.screenshot(path=str(SHOTS / "attention-lines-128-whole.png"))
        page.set_viewport_size({"width": 1400, "height": 1000})
    main.get_by_role("tab", name="Query · key, channel by channel").click()
    settle(page)
    shot(page, "attention-query-key")


def test_mlp_and_kv_cache_views(page):
    from playwright.sync_api import expect
    settle(page)
    nav(page, "MLP neurons")
    main = page.get_by_test_id("stMainBlockContainer")
    expect(main.get_by_text("Promotes")).to_be_visible()
    expect(main.get_by_text(re.compile(r"fires most over the whole evaluation text"))).to_be_visible()
    shot(page, "mlp", full=True)
    # clicking a row of the neuron heatmap studies that neuron: its third row, at the prompt's 5th token
    heatmap = main.locator(".st-key-neuron_heatmap .js-plotly-plot")
    heatmap.scroll_into_view_if_needed()
    neuron, x, y = heatmap.evaluate("""el => {
        const tr = el.data.find(t => t.customdata), names = [...new Set(tr.y)];
        const i = tr.y.findIndex(n => n === names[2]) + 4;
        const xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis, box = el.getBoundingClientRect();
        return [tr.customdata[i][0], box.left + xa._offset + xa.c2p(xa.d2c(tr.x[i])),
                box.top + ya._offset + ya.c2p(ya.d2c(tr.y[i]))];
    }""")
    expect(main.get_by_text(f"Neuron {neuron} of layer 0", exact=True)).to_have_count(0)
    page.mouse.click(x, y)
    expect(main.get_by_text(f"Neuron {neuron} of layer 0", exact=True)).to_be_visible()
    settle(page)
    expect(main.locator('input[aria-label^="Neuron"]')).to_have_value(str(neuron))
    nav(page, "Generate")
    box = main.locator('input[aria-label="Max new tokens"]')
    box.fill("40")
    box.press("Enter")
    settle(page)
    main.get_by_role("button", name=re.compile("Generate$")).click()
    expect(main.get_by_text("Inside one decoding step: the KV cache")).to_be_visible()
    settle(page)
    if SHOTS:
        main.get_by_text("Inside one decoding step: the KV cache").scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "generate-kv-cache.png"))
    main.get_by_role("button", name=re.compile("Open in Attention")).click()
    expect(page.locator("h1").first).to_have_text("Attention")
    settle(page)
    shot(page, "attention-from-generate")
