"""A first encounter (issue 11): failed runs are listed and deletable, the sidebar follows a started run and is
never stale after Stop, the learner's place holds on every page, and a binary upload gets one clear message."""
from __future__ import annotations

import json
import re
import time

import pytest
from conftest import open_page, placed
from streamlit.testing.v1 import AppTest

from explorer.jobs import training as jobs
from explorer.ui.text import chips_html


def sidebar_text(at: AppTest) -> str:
    parts = [c.value for c in at.sidebar.caption] + [m.value for m in at.sidebar.markdown]
    parts += [str(p.proto.text) for p in at.sidebar.get("progress")]
    return "\n".join(parts)


def test_a_binary_file_renamed_txt_gets_one_clear_message(root):
    at = open_page("train")
    at.radio(key="tf_source").set_value("Upload .txt").run()
    at.get("file_uploader")[0].set_value(("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "text/plain")).run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "photo.txt looks binary" in errors[0], errors
    assert "empty" not in errors[0]
    assert not any("0 characters" in c.value for c in at.caption)
    assert [b for b in at.button if b.label == "Start training"][0].disabled


def test_a_failed_run_is_listed_with_its_error_and_can_be_deleted(root):
    failed = root / "failed-start"
    failed.mkdir()
    (failed / "status.json").write_text(json.dumps({"state": "failed", "error": "CorpusError: no such corpus"}))
    at = open_page()
    assert "failed-start" in sidebar_text(at)
    at.switch_page("views/runs.py").run()
    assert not at.exception
    tables = [df.value for df in at.dataframe]
    assert any("failed-start" in t.to_string() and "no such corpus" in t.to_string() for t in tables)
    assert list(tables[0].columns[:4]) == ["run", "best val", "tokens/s", "wall time"]  # key results first
    at.selectbox(key="runs_delete").set_value("failed-start").run()
    at.checkbox[-1].check().run()
    [b for b in at.button if b.label == "Delete"][0].click().run()
    assert not failed.exists()


@pytest.mark.slow
def test_the_sidebar_follows_an_experiment_run_and_says_stopping_at_once(root):
    at = open_page("experiments")
    [b for b in at.button if b.label.startswith("Train the")][0].click().run()
    assert not at.exception, [e.message for e in at.exception]
    started = [p for p in root.iterdir() if p.name.startswith("exp-")]
    assert len(started) == 1
    name = started[0].name
    try:
        assert any("Its progress shows in the sidebar" in s.value for s in at.success)
        assert name in sidebar_text(at) and "No training running" not in sidebar_text(at)
        deadline = time.monotonic() + 120   # until the trainer writes its config: then the picker follows
        while not (started[0] / "config.json").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        at.run()
        assert at.sidebar.selectbox(key="selected_run").value == name
        while jobs.job_state(started[0]).state != "running" and time.monotonic() < deadline:
            time.sleep(0.3)
        jobs.stop_job(started[0])
        at.run()
        text = sidebar_text(at)
        assert "ETA" not in text and ("stopping" in text or "No training running" in text), text
    finally:
        jobs.stop_job(started[0])
        jobs.wait_until_done(started[0], timeout=90)
    at.run()
    text = sidebar_text(at)
    assert "No training running" in text and f"**{name}** · stopped at step" in text, text
    assert at.sidebar.selectbox(key="selected_run").value == name   # still on the run, not the default


def test_heads_layer_and_head_follow_the_learner_to_per_token_loss_and_into_the_url(root):
    at = open_page("heads")
    placed(at, "selectbox", "layer").set_value(1).run()
    placed(at, "selectbox", "head").set_value(1).run()
    assert at.query_params["layer"] in ("1", ["1"]) and at.query_params["head"] in ("1", ["1"])
    at.switch_page("views/token_loss.py").run()
    assert not at.exception
    assert placed(at, "selectbox", "layer").value == 1 and placed(at, "selectbox", "head").value == 1


def test_a_link_opens_the_same_logit_lens_embeddings_and_passage(root):
    at = open_page("logit_lens", prompt="to be or not", pos=3, token=5, dims="3D", offset=16)
    assert placed(at, "text_area", "prompt").value == "to be or not" and placed(at, "slider", "pos").value == 3
    at.switch_page("views/embeddings.py").run()
    assert placed(at, "selectbox", "token").value == 5 and placed(at, "radio", "dims").value == "3D"
    at.switch_page("views/tokenizer.py").run()
    assert placed(at, "text_area", "prompt").value == "to be or not"
    at.switch_page("views/token_loss.py").run()
    assert placed(at, "number_input", "offset").value == 16
    assert not at.exception


def test_character_chips_wrap_between_words_and_show_newlines_one_way():
    html = chips_html([(c, "", "#fff") for c in "to be\nor"])
    assert html.count('white-space:nowrap') == 3            # "to ", "be\n", "or": a word never splits
    assert "\u21b5" in html and "<br>" in html and "\\n" not in html


def test_ablation_regeneration_keeps_line_breaks_and_run_diff_prints_settings_for_people(root):
    at = open_page("ablation")
    placed(at, "text_area", "prompt").set_value("to be\nor not").run()
    [b for b in at.button if b.label == "Generate both"][0].click().run()
    shown = [m.value for m in at.markdown if "font-family:monospace" in m.value]
    assert len(shown) == 2 and all(s.startswith('<div') and "to be<br>or not" in s for s in shown)


def test_run_diff_prints_the_settings_that_differ_for_people(root):
    """0.1 + 0.2 shows as 0.3 and 3e-4 as 0.0003 in the page's table, not as 0.30000000000000004 or 3e-04."""
    import shutil
    shutil.copytree(root / "tiny", root / "spare")
    config = json.loads((root / "spare" / "config.json").read_text())
    config["train"].update(lr=0.1 + 0.2, weight_decay=3e-4, batch_size=64)
    (root / "spare" / "config.json").write_text(json.dumps(config))
    at = open_page("run_diff", run="tiny")
    at.selectbox(key="diff_A_run").set_value("spare").run()
    at.selectbox(key="diff_B_run").set_value("tiny").run()
    assert not at.exception and not at.error
    table = next(df.value for df in at.dataframe if "setting" in df.value.columns).set_index("setting")
    assert (table.loc["train.lr", "A"], table.loc["train.weight_decay", "A"]) == ("0.3", "0.0003")
    assert (table.loc["train.batch_size", "A"], table.loc["train.batch_size", "B"]) == ("64", "8")


def test_run_diff_starts_each_picked_run_at_its_latest_weights(root):
    import shutil
    shutil.copytree(root / "tiny", root / "spare")   # same tokenizer: the two compare token by token
    at = open_page("run_diff", run="tiny")
    assert not at.exception and not at.error
    a_run = at.selectbox(key="diff_A_run")
    assert a_run.value == "spare" and at.selectbox(key="diff_A_step_spare").value == "latest"
    a_run.set_value("tiny").run()
    assert at.selectbox(key="diff_A_step_tiny").value == "latest"   # never snapshot 0, an untrained model


def test_the_vocabulary_shows_a_newline_as_everywhere_else(root):
    at = open_page("tokenizer")
    tokens = list(at.dataframe[0].value["token"])
    assert "\u21b5" in tokens and "\\n" not in tokens


def test_the_heads_page_names_the_shipped_models_induction_head_and_shows_it(root):
    """Issue 11: on the shipped model, the Heads page's default probe (repeated validation text) names an induction
    head scoring >= 0.4, and one click shows that head's pattern."""
    import shutil

    from conftest import ROOT
    shipped = ROOT / "checkpoints" / "shakespeare-char"
    (root / shipped.name).mkdir()
    for path in shipped.iterdir():
        if path.is_file():
            shutil.copy2(path, root / shipped.name / path.name)
    at = open_page("heads", run=shipped.name)
    assert not at.exception
    assert placed(at, "radio", "probe").value == "repeated validation text"
    found = next(m.value for m in at.markdown if str(m.value).startswith("**Found:**"))
    named = re.findall(r"L(\d)H(\d) is an induction head \((\d\.\d\d)\)", found)
    assert named and float(named[0][2]) >= 0.4, found
    button = next(b for b in at.button if b.label.startswith("Show the strongest induction head"))
    assert f"L{named[0][0]}H{named[0][1]}" in button.label
    button.click().run()
    assert (placed(at, "selectbox", "layer").value, placed(at, "selectbox", "head").value) == tuple(map(int, named[0][:2]))
    assert not any(b.label.startswith("Show the strongest induction head") for b in at.button)  # it is shown
