"""The Features page on the shipped model (AppTest) and in a real browser: the dictionaries' metrics as the CLI wrote
them, the features active at a token, and a feature card whose numbers are the library's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser_support import chromium_page, shipped_checkpoints
from conftest import ROOT, open_page

pytestmark = pytest.mark.usefixtures("fresh_caches")
AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"


@pytest.mark.slow
def test_features_page_shows_the_cli_metrics_and_a_card_with_the_library_numbers():
    from gpt.evaluate import run_validation_ids
    from gpt.interp.features import list_dictionaries
    from gpt.interp.features.cards import cached_scan
    from gpt.runs import load_run
    at = open_page("features", "shakespeare-char", feature="transcoder-L0#594")
    table = at.dataframe[0].value
    for name in ("transcoder-L0", "transcoder-L3", "sae-resid-mid-L2"):
        metrics = json.loads((SHIPPED / "features" / name / "metrics.json").read_text())
        row = table[table["dictionary"] == name].iloc[0]
        assert row["CE loss recovered"] == pytest.approx(metrics["ce_loss_recovered"])
        assert row["dead"] == metrics["dead"]
    assert any(h.value == "Feature #594 of transcoder-L0" for h in at.subheader)
    run = load_run(SHIPPED)
    (tc,) = [d for d in list_dictionaries(run.path, run.config)[0] if d.name == "transcoder-L0"]
    scan = cached_scan(run.model, tc, run_validation_ids(run))
    shown = next(m.value for m in at.markdown if m.value.startswith("Fires on"))
    assert f"**{float(scan.density[594]):.2%}**" in shown and f"**{float(scan.top_values[594, 0]):.2f}**" in shown
    assert int((scan.density == 0).sum()) == tc.metrics["dead"]  # the card's scan and `gpt-features eval` agree
    assert int((scan.density > 0.1).sum()) == tc.metrics["dense"]
    # searching by token reads the same scan (made by the card, never silently inside the collapsed expander)
    at.run()
    (best, value), *_ = scan.features_for_token(run.tokenizer.encode("R")[0])
    found = next(m.value for m in at.markdown if "highest mean activation" in m.value)
    assert found.startswith("In **transcoder-L0**") and f"#{best} ({value:.2f})" in found


def test_a_run_without_dictionaries_offers_training(tmp_path):
    from conftest import checkpoints_env
    from run_support import make_rung_run
    make_rung_run(tmp_path, "multi_head")   # attention only: transcoders are impossible, an SAE is not
    with checkpoints_env(tmp_path):
        at = open_page("features", "multi_head")
        assert any("no feature dictionaries yet" in i.value for i in at.info)
        assert next(box for box in at.selectbox if box.label == "Kind").disabled  # no MLP: SAE only


@pytest.mark.browser
@pytest.mark.slow
def test_browser_click_a_feature_opens_its_card(shipped_app):
    url = shipped_app[0]
    with chromium_page() as (page, errors):
        page.goto(f"{url}/features?run={SHIPPED.name}")
        heading = page.get_by_text("transcoder-L3 ·").first   # "transcoder-L3 · 32 active", then its pills
        heading.wait_for(timeout=60_000)
        pill = heading.locator("xpath=following::button[@role='radio'][1]")
        label = pill.inner_text()                                             # "#1303 (14.12) `I` or ..."
        pill.click()
        feature = label.split("#")[1].split(" ")[0]
        heading = page.get_by_text(f"Feature #{feature} of transcoder-L3")
        heading.wait_for(timeout=90_000)
        page.get_by_text("Top activations").wait_for(timeout=30_000)
        shots = Path(ROOT / "test-artifacts" / "features-shots")
        shots.mkdir(parents=True, exist_ok=True)
        heading.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "card.png"))
        assert not errors, errors


def steering_on_feature(feature: str = "transcoder-L3#952") -> "AppTest":
    """The Steering page with a feature picked on the Features page (the place carries it) and its kind chosen."""
    at = open_page("steering", "shakespeare-char", feature=feature)
    at.radio[0].set_value("one feature's direction").run()
    return at


def test_steering_page_steers_with_a_feature_chosen_on_the_features_page():
    at = steering_on_feature()
    assert not at.exception, [e.value for e in at.exception]
    assert next(b for b in at.selectbox if b.label == "Dictionary").value == "transcoder-L3"
    assert next(n for n in at.number_input if n.label == "Feature").value == 952
    assert any("feature #952 of transcoder-L3" in c.value for c in at.caption)
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("coefficient 0" in m.value for m in at.markdown)


@pytest.mark.slow
def test_steering_page_clamps_a_feature():
    at = steering_on_feature()
    next(t for t in at.toggle if t.label.startswith("Clamp its activation")).set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Feature #952 of transcoder-L3 fires up to" in c.value for c in at.caption)
    next(t for t in at.text_input if t.label == "Clamp values (comma-separated)").input("0, 30").run()
    next(b for b in at.button if b.label == "Generate side by side").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [m.value for m in at.markdown]
    assert "**as it is** (unsteered)" in shown and "**clamped to 0**" in shown and "**clamped to 30**" in shown


@pytest.mark.slow
def test_search_waits_for_the_cards_scan_instead_of_scanning_unseen(tmp_path):
    """The search sits in a collapsed expander: it must not run the dictionary's scan there (no progress bar, no
    Stop); it says so, and works once the card below has made the scan."""
    from conftest import checkpoints_env
    with checkpoints_env(shipped_checkpoints(tmp_path)):   # a copy without cached scans
        at = open_page("features", "shakespeare-char", feature="transcoder-L0#594")
        assert any("Open one, then search here" in c.value for c in at.caption)
        assert any(h.value == "Feature #594 of transcoder-L0" for h in at.subheader)   # the card made the scan
        at.run()
        assert any("highest mean activation" in m.value for m in at.markdown)
