"""App tests (streamlit.testing.v1.AppTest): every page renders on a tiny trained model, and the things a user
relies on work — generating, unknown characters, the Train form's checks and a real background job, deleting."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import button, open_page, placed
from streamlit.testing.v1 import AppTest

from explorer.jobs import training as jobs
from explorer.ui.run_picker import default_run_name
from explorer.ui.text import chips_html


def plotly_figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def head_heatmap(at: AppTest) -> dict:
    """The Attention page's clickable head heatmap (an Altair chart) as its Vega-Lite spec."""
    specs = [json.loads(el.proto.spec) for el in at.get("vega_lite_chart")]
    return next(s for s in specs if "title" in s)


def arr(value) -> list:
    """A figure array as a list: plotly sends numpy data base64-encoded ({'dtype', 'bdata', 'shape'})."""
    if isinstance(value, dict) and "bdata" in value:
        import base64

        import numpy as np
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]).tolist() if shape else flat.tolist()
    return list(value)


def vocab_size(run_dir: Path) -> int:
    return json.loads((run_dir / "config.json").read_text())["model"]["vocab_size"]


def test_sidebar_picker_lists_runs_and_status(root):
    at = open_page()
    picker = at.sidebar.selectbox(key="selected_run")
    assert picker.value == "tiny" and picker.options[0].startswith("tiny · gpt")
    assert any("No training running" in c.value for c in at.sidebar.caption)


def test_default_run_prefers_shipped_model():
    class Info:
        def __init__(self, name):
            self.name = name
    assert default_run_name([Info("newest"), Info("shakespeare-char")]) == "shakespeare-char"
    assert default_run_name([Info("newest"), Info("older")]) == "newest"
    assert default_run_name([]) is None


def test_tokenizer_page_chips_and_unknown_characters(root):
    at = open_page("tokenizer")
    assert any("Characters per token" == m.label for m in at.metric)
    assert len(at.dataframe) >= 1
    placed(at, "text_area", "prompt").set_value("Hi 日本").run()
    assert not at.exception
    assert any("`日`" in e.value and "`本`" in e.value for e in at.error)   # each as a code span


def test_embeddings_page(root):
    at = open_page("embeddings")
    figs = plotly_figures(at)
    assert figs[0]["data"][0]["type"] == "scatter" and len(arr(figs[0]["data"][0]["x"])) == vocab_size(root / "tiny")
    assert len(figs) == 3  # scatter, positional vectors, position similarity
    at.radio[0].set_value("3D").run()
    assert plotly_figures(at)[0]["data"][0]["type"] == "scatter3d"


def test_attention_page_overview_head_and_table(root):
    at = open_page("attention")
    overview = plotly_figures(at)[0]
    axes = overview["layout"]["xaxis"]["ticktext"], overview["layout"]["yaxis"]["ticktext"]
    assert axes == (["H0", "H1"], ["L0", "L1"])  # one mosaic of 2 layers x 2 heads
    n_tokens = len(head_heatmap(at)["layer"][0]["encoding"]["x"]["scale"]["domain"])  # the Altair heatmap's keys
    assert 1 < n_tokens <= 32
    assert not at.dataframe and at.get("vega_lite_chart")   # only the open tab (the line view) runs
    at.session_state["attn_tab"] = "Per-head scores"
    at.run()
    assert at.dataframe[0].value.shape[0] == 4
    at.selectbox[1].set_value(1).run()   # head 1
    assert head_heatmap(at)["title"] == "Layer 0, head 1"
    placed(at, "text_area", "prompt").set_value("x" * 100).run()  # longer than block_size 32
    assert any("block size" in w.value for w in at.warning)
    assert len(head_heatmap(at)["layer"][0]["encoding"]["x"]["scale"]["domain"]) == 32
    placed(at, "text_area", "prompt").set_value("ok <>").run()
    assert not at.exception and any("`<`" in e.value for e in at.error)


def test_generate_page_streams_and_explains_unknown_characters(root):
    at = open_page("generate")
    assert plotly_figures(at)[0]["layout"]["title"]["text"] == "Next token after the prompt"
    at.number_input[0].set_value(30).run()
    button(at, "Generate").click().run()
    assert not at.exception
    result = at.session_state["gen_result_tiny"]
    assert len(result["steps"]) == 30
    assert all(0.0 <= p <= 1.0 for _, _, p, _ in result["steps"])
    assert any("title=\"step 0: p=" in m.value for m in at.markdown)
    assert len(plotly_figures(at)) == 4  # next-token bars, alternatives at a chosen step, the KV cache's step and growth
    placed(at, "text_area", "prompt").set_value("ROMEO ☃").run()
    assert not at.exception and any("`☃`" in e.value for e in at.error)


def test_chips_escape_html():
    html = chips_html([("<script>alert(1)</script>", "id <1>", "red")])
    assert "<script>" not in html and "&lt;script&gt;" in html and "id &lt;1&gt;" in html


@pytest.mark.slow
def test_train_form_blocks_impossible_shapes(root):
    at = open_page("train")
    at.number_input(key="tf_n_head").set_value(3).run()   # 32 is not divisible by 3
    assert any("divisible" in e.value for e in at.error)
    assert button(at, "Start training").disabled
    at.number_input(key="tf_n_head").set_value(4).run()
    assert not button(at, "Start training").disabled
    assert [m.label for m in at.metric][:2] == ["Parameters", "FLOPs per step"]


@pytest.mark.slow
def test_train_page_starts_a_background_job_and_shows_its_curves(root):
    at = open_page("train")
    at.radio(key="tf_source").set_value("Paste text").run()
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40)
    at.text_area[0].set_value(text).run()
    at.number_input(key="tf_max_iters").set_value(20).run()
    at.number_input(key="tf_eval_interval").set_value(10).run()
    at.number_input(key="tf_warmup_iters").set_value(2).run()
    at.text_input(key="tf_name").set_value("from-app").run()
    button(at, "Start training").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_dir = root / "from-app"
    assert (run_dir / "corpus.txt").read_text() == text
    state = jobs.wait_until_done(run_dir, timeout=180)
    assert state.state == "finished", (state, jobs.log_tail(run_dir))
    at = open_page("train")  # a fresh session on the Train page, as after a browser reload: it re-attaches
    loss = plotly_figures(at)[0]
    assert loss["layout"]["title"]["text"] == "Loss"
    assert len(arr(loss["data"][0]["x"])) >= 2 and len(arr(loss["data"][1]["x"])) == 3  # train points; val at 0, 10, 20
    assert any("Sample at step 20" in m.value for m in at.markdown)
    assert at.sidebar.selectbox(key="selected_run").value == "from-app"  # the newest run


def test_runs_page_table_curves_and_delete_with_confirmation(root):
    shutil.copytree(root / "tiny", root / "spare")
    at = open_page("runs")
    assert set(at.dataframe[0].value["run"]) == {"tiny", "spare"}
    assert len(plotly_figures(at)[0]["data"]) == 4  # train + val for both runs
    next(s for s in at.selectbox if s.label == "Run to delete").set_value("spare").run()
    assert button(at, "Delete").disabled     # not before the confirmation box is ticked
    at.checkbox[0].check().run()
    button(at, "Delete").click().run()
    assert not (root / "spare").exists() and (root / "tiny").exists()
