"""An imported GPT-2 (a small random one with a BPE trained here, imported with gpt.hf.gpt2) on every page of the app:
no page opens on an error box, and the sidebar's evaluation-text choice reaches every page that reads text."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import checkpoints_env, new_app, open_page, placed
from gpt2_support import fake_hf_cache, gpt2_tokenizer, synthetic_bpe, write_gpt2_folder
from streamlit.testing.v1 import AppTest

from gpt.hf import gpt2 as hf

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("fresh_caches")  # Streamlit caches cleared per test
VIEWS = sorted(p.stem for p in (ROOT / "explorer" / "views").glob("*.py"))


@pytest.fixture(scope="module")
def gpt2_root(tmp_path_factory, corpus_text):
    """A checkpoints root holding only an imported GPT-2 (2 layers x 2 heads x 32, block 128, BPE of 300)."""
    base = tmp_path_factory.mktemp("gpt2-app")
    folder = write_gpt2_folder(base / "hf-folder", gpt2_tokenizer(corpus_text[:30_000], 300))
    with checkpoints_env(base / "checkpoints") as root:
        hf.import_gpt2(folder, root / "gpt2-tiny")
        yield root


def switch_to(at: AppTest, view: str) -> AppTest:
    at.switch_page(f"views/{view}.py").run()
    assert not at.exception, (view, [(e.message, e.stack_trace) for e in at.exception])
    return at


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def choose_eval_text(at: AppTest, label_part: str) -> None:
    box = next(s for s in at.sidebar.selectbox if s.label == "Evaluation text")
    box.select(next(o for o in box.options if label_part in o)).run()


@pytest.mark.slow
def test_every_page_opens_on_an_imported_gpt2_without_an_error_box(gpt2_root):
    at = open_page(timeout=120)
    for view in VIEWS:
        switch_to(at, view)
        assert not at.error, (view, [e.value for e in at.error])
        assert at.title, view   # the page drew its content, not only the sidebar


@pytest.mark.slow
def test_the_evaluation_text_choice_reaches_every_page_that_reads_text(gpt2_root):
    at = open_page(timeout=120)
    box = next(s for s in at.sidebar.selectbox if s.label == "Evaluation text")
    assert box.value == "tiny-shakespeare"   # no corpus of its own: the first built-in corpus
    assert not any("validation split" in o for o in box.options)
    switch_to(at, "token_loss")
    assert "Evaluation text: tiny-shakespeare (its last 10%)" in captions(at)
    choose_eval_text(at, "python-docs")
    for view in ("token_loss", "ablation", "mlp"):
        switch_to(at, view)
        assert "Evaluation text: python-docs (its last 10%)" in captions(at), view
        assert not at.error, (view, [e.value for e in at.error])
    switch_to(at, "heads")
    assert at.radio[0].value == "repeated random tokens"   # the default probe needs no text
    at.radio[0].set_value("repeated validation text").run()
    assert "Evaluation text: python-docs" in captions(at) and not at.error

    choose_eval_text(at, "pasted")   # a text of one's own: asked for, then used everywhere
    switch_to(at, "token_loss")
    assert any("no text pasted" in i.value for i in at.info) and not at.error
    at.sidebar.text_area[0].input("The quick brown fox jumps over the lazy dog. " * 40).run()
    assert "Evaluation text: pasted text (" in captions(at)
    switch_to(at, "ablation")
    assert "Evaluation text: pasted text (" in captions(at)


def test_the_import_page_lists_the_cached_gpt2_family_and_imports_one(gpt2_root, tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    monkeypatch.setenv("GPT_EXPLORER_CHECKPOINTS", str(root))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    source = next(p for p in gpt2_root.iterdir())        # any GPT-2 folder will do: export the imported run
    fake_hf_cache(tmp_path / "hub", "openai-community/gpt2", hf.export_gpt2(source, tmp_path / "exported"))
    fake_hf_cache(tmp_path / "hub", "distilgpt2", None)
    at = new_app(timeout=120)
    at.switch_page("views/share.py").run()
    assert not at.exception
    listed = captions(at)
    assert "**openai-community/gpt2** · `" in listed and "**distilgpt2**: " in listed and "no snapshot" in listed
    assert at.selectbox(key="gpt2_source").options[0] == "openai-community/gpt2"
    next(b for b in at.button if b.label == "Import GPT-2").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert (root / "gpt2" / "model.safetensors").is_file()


@pytest.mark.slow
def test_embeddings_of_a_big_vocabulary_are_sampled_drawn_with_webgl_and_searchable(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    monkeypatch.setenv("GPT_EXPLORER_CHECKPOINTS", str(root))
    folder = write_gpt2_folder(tmp_path / "big-vocab", synthetic_bpe(6_000), n_embd=16, block_size=512)
    hf.import_gpt2(folder, root / "big-vocab")
    at = open_page(timeout=120)
    switch_to(at, "embeddings")
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    cloud, labelled = figure["data"][0], figure["data"][1]
    assert cloud["type"] == "scattergl" and cloud["mode"] == "markers"
    assert 5_000 <= len(cloud["hovertext"]) <= 5_011          # a sample, plus the chosen token and its neighbours
    assert len(labelled["text"]) == 11                        # those eleven carry their labels
    at.text_input[0].input("AB").run()
    options = placed(at, "selectbox", "token").options
    assert options[0] == "AB (id 3297)" and all("AB" in o.upper() for o in options[:-1])
    placed(at, "selectbox", "token").select(options[0]).run()
    assert "AB" in captions(at)                              # the neighbours table is about the token found
    positions = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert "(positions 0, 2, 4, ... of 512)" in positions["layout"]["title"]["text"]
    assert positions["data"][0]["z"]["shape"] == "256, 16"


@pytest.mark.slow
def test_mlp_top_contexts_of_a_big_model_wait_for_a_click_that_says_the_cost(gpt2_root, monkeypatch):
    from gpt.interp import neurons
    monkeypatch.setattr(neurons, "AUTO_SCAN", 1.0)     # as if the tiny model were GPT-2 small
    for stale in gpt2_root.glob("*/interp/neurons-*"):
        stale.unlink()                                  # a scan kept from another test would show at once
    at = open_page(timeout=120)
    switch_to(at, "mlp")
    scan = next(b for b in at.button if b.label.startswith("Scan "))
    assert re.fullmatch(r"Scan [\d,]+ tokens \(about \d+ s\)", scan.label), scan.label   # says the cost
    assert "fires most over" not in captions(at)
    scan.click().run()
    assert not at.exception and not at.error
    assert "fires most over the whole evaluation text" in captions(at)
    assert not [b for b in at.button if b.label.startswith("Scan ")]


@pytest.mark.slow
def test_patching_a_big_model_waits_for_a_click_that_says_the_cost(gpt2_root, monkeypatch):
    from gpt.interp import patching
    monkeypatch.setattr(patching, "AUTO_PATCH", 1.0)     # as if the tiny model were GPT-2 small
    at = open_page(timeout=120)
    switch_to(at, "patching")
    ask = next(b for b in at.button if b.label.startswith("Patch every layer boundary"))
    assert "-token pair; kept once computed)" in ask.label and not at.get("plotly_chart")
    ask.click().run()
    assert not at.exception and not at.error and len(at.get("plotly_chart")) == 3


@pytest.mark.slow
def test_a_feature_card_reads_the_chosen_text_and_names_what_a_char_model_cannot_read(tmp_path, monkeypatch):
    import shutil
    root = tmp_path / "checkpoints"
    shutil.copytree(ROOT / "checkpoints" / "shakespeare-char", root / "shakespeare-char",
                    ignore=shutil.ignore_patterns("snapshots"))
    monkeypatch.setenv("GPT_EXPLORER_CHECKPOINTS", str(root))
    at = open_page(timeout=300, feature="transcoder-L0#594")
    box = next(s for s in at.sidebar.selectbox if s.label == "Evaluation text")
    assert box.value == "run"                         # a run trained here: its own validation split
    switch_to(at, "features")
    assert "Evaluation text: the validation split of tiny-shakespeare (this run's own)" in captions(at)
    choose_eval_text(at, "python-docs")
    switch_to(at, "features")
    assert not at.error
    text = captions(at)
    assert "Evaluation text: python-docs (its last 10%)" in text
    assert "characters this tokenizer cannot read were left out: '>' '['" in text
