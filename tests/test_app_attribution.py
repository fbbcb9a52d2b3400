"""AppTests of the Why this token, Patching and Steering pages against a tiny run trained by the CLI, and the
worked example's findings on the shipped model."""

import pytest
from conftest import ROOT, checkpoints_env, figures, open_page, placed, tags, text_of
from run_support import tiny_and_html_runs

pytestmark = pytest.mark.usefixtures("fresh_caches")  # Streamlit caches cleared per test

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_run):
    root = tiny_and_html_runs(tmp_path_factory.mktemp("checkpoints"), tiny_run)
    with checkpoints_env(root):
        yield root


def test_why_token_page_explains_the_prediction(checkpoints):
    at = open_page("why_token", run="tiny")
    waterfall, heads = figures(at)[:2]
    bars = waterfall["data"][0]
    assert bars["type"] == "waterfall" and bars["x"][-1] == "total"
    assert len(heads["data"][0]["z"]) == 2 and len(heads["data"][0]["z"][0]) == 2  # 2 layers x 2 heads
    assert "The heads that write most directly" in text_of(at)
    assert placed(at, "slider", "pos").value == len(at.text_area[0].value) - 1  # char model: the last token
    placed(at, "slider", "pos").set_value(3).run()
    assert not at.exception and "After position 3" in text_of(at)
    at.selectbox(key="why_contrast").select_index(1).run()  # a contrast token
    assert not at.exception and "logit difference" in text_of(at)
    at.text_area[0].input("abc").run()  # a shorter prompt: the position follows it
    assert not at.exception and placed(at, "slider", "pos").value == 2


def test_why_token_page_escapes_token_text(checkpoints):
    at = open_page("why_token", run="tiny-html")
    chips = "".join(m.value for m in at.markdown if "<span" in m.value)
    assert "&lt;" in chips and tags(chips) == {"div", "span"}


def test_patching_page_shows_three_heatmaps_and_refuses_clearly(checkpoints):
    at = open_page("patching", run="tiny")
    assert "does not fit this model" in text_of(at)  # the tiny run's context is too short for it
    at.text_area(key="patch_clean").input("JULIET:\nAy me!\n\nROMEO:\nO.\n\n")
    at.text_area(key="patch_corrupted").input("BRUTUS:\nAy me!\n\nROMEO:\nO.\n\n")
    at.text_input(key="patch_answer").input("J")
    at.text_input(key="patch_wrong").input("B").run()
    assert not at.exception, [e.value for e in at.exception]
    resid, heads, mlps = figures(at)[:3]
    assert resid["data"][0]["y"] == ["embeddings", "after block 0", "after block 1"]
    assert resid["layout"]["xaxis"]["ticktext"][0] == "J→B"  # the changed positions are labelled with both tokens
    assert len(heads["data"][0]["z"]) == 2 and len(mlps["data"][0]["y"]) == 2
    assert "Strongest head" in text_of(at)
    at.text_area(key="patch_corrupted").input("BRUTUS: hi").run()
    assert not at.exception and "must have the same length" in text_of(at)
    at.text_area(key="patch_corrupted").input("BRUTUS:\nAy me!\n\nROMEO:\nO.\n\n")
    at.text_input(key="patch_answer").input("Ju").run()
    assert not at.exception and "is 2 tokens" in text_of(at)


@pytest.mark.slow
def test_steering_page_generates_side_by_side(checkpoints):
    at = open_page("steering", run="tiny")
    assert "Coefficient 0 is the model untouched" in text_of(at)
    at.button[0].click().run()
    assert not at.exception
    assert "**coefficient 0** (unsteered)" in text_of(at)
    at.radio[0].set_value("one head's output").run()
    at.number_input[1].set_value(1).run()
    at.button[0].click().run()
    assert not at.exception and "head L0H1" in text_of(at)
    at.text_input[0].input("0, x").run()
    assert "Coefficients are numbers" in text_of(at)


@pytest.mark.slow
def test_worked_example_on_the_shipped_model():
    """The Patching page's preset on checkpoints/shakespeare-char: the speaker's name travels from the earlier
    JULIET to the last position only in the last block, through head L3H1 (helped by L0H3 early on): the
    findings quoted in the README."""
    from gpt.interp.attribution import direct_logit_attribution
    from gpt.interp.patching import WORKED_EXAMPLE as ex
    from gpt.interp.patching import patch_heads, patch_mlps, patch_residual, single_token_id
    from gpt.runs import load_run
    run = load_run(ROOT / "checkpoints" / "shakespeare-char")
    tok = run.tokenizer
    clean, corrupted = tok.encode(ex["clean"]), tok.encode(ex["corrupted"])
    args = (run.model, clean, corrupted, single_token_id(tok, ex["answer"]), single_token_id(tok, ex["wrong"]))
    residual, heads, mlps = patch_residual(*args), patch_heads(*args), patch_mlps(*args)
    changed = [t for t, (c, k) in enumerate(zip(clean, corrupted)) if c != k]
    # at the embeddings only the changed name matters; up to the last block the last position holds almost none
    # of the difference, after it all of it
    assert residual[0].abs().argmax() in changed and residual[0, -1].abs() < 0.01
    assert residual[3, -1] < 0.1 and residual[-1, -1] == pytest.approx(1.0, abs=1e-4)
    assert {tuple(divmod(int(i), heads.size(1))) for i in heads.flatten().topk(2).indices} == {(3, 1), (0, 3)}
    assert float(heads.max()) > 0.8 and float(mlps.max()) < float(heads.max())
    dla = direct_logit_attribution(run.model, clean, -1, args[3], args[4])
    assert dla.total == pytest.approx(float(dla.model_logit), rel=1e-5, abs=1e-4) and dla.total > 1
