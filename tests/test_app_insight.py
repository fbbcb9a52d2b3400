"""AppTest smoke tests of the "Look deeper" pages against a tiny run trained by the CLI."""
import json
import time

import pytest
from conftest import checkpoints_env, figures, open_page, run_cli, tags, text_of
from run_support import tiny_and_html_runs

pytestmark = pytest.mark.usefixtures("fresh_caches")  # Streamlit caches cleared per test

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_run):
    """A checkpoints root holding the tiny run (as 'tiny', and its markup twin 'tiny-html') and a barely trained
    guided-experiment run."""
    from gpt.interp.experiments import TASKS, write_corpus
    root = tiny_and_html_runs(tmp_path_factory.mktemp("checkpoints"), tiny_run)
    corpus = write_corpus(TASKS["copy"])
    run_cli("-m", "gpt.train", "--corpus", str(corpus), "--out", str(root / "exp-copy-1"), "--arch", "multi_head",
            "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "64", "--batch-size", "8",
            "--max-iters", "20", "--eval-interval", "10", "--eval-iters", "2", "--sample-tokens", "0",
            "--dtype", "float32", "--quiet")
    with checkpoints_env(root):
        yield root


def test_heads_page_shows_detector_grids(checkpoints):
    at = open_page("heads", run="tiny")
    figs = figures(at)
    assert figs, "no chart on the page"
    grid = figs[0]["data"]
    assert len(grid) == 4 and all(len(trace["z"]) == 2 and len(trace["z"][0]) == 2 for trace in grid)
    assert "In-context gain" in text_of(at)
    at.selectbox[0].set_value(1).run()  # another layer
    assert not at.exception


def test_time_machine_replays_snapshots(checkpoints):
    at = open_page("time_machine", run="tiny")
    figs = figures(at)
    curves = figs[0]["data"]
    assert [trace["x"] for trace in curves[:4]] == [[0, 20, 40, 60]] * 4
    at.select_slider[0].set_value(20).run()
    assert not at.exception
    assert "step 20" in text_of(at)


def test_logit_lens_page(checkpoints):
    at = open_page("logit_lens", run="tiny")
    lens = figures(at)[0]["data"][0]
    assert lens["y"] == ["embeddings", "after block 0", "after block 1"]
    at.text_area[0].input("<b>to be</b>").run()
    assert not at.exception
    # this run's characters have no '<': the page names what it cannot read instead of failing (the escaping of
    # markup the vocabulary does hold is tests/test_security.py's logit-lens test)
    assert "`<`" in text_of(at) and "`>`" in text_of(at)


def test_ablation_page_reports_delta_loss(checkpoints):
    at = open_page("ablation", run="tiny")
    assert at.metric[1].delta is None or float(at.metric[1].delta) == 0
    at.multiselect[0].set_value(["L0H0", "L1H1"]).run()
    assert not at.exception
    assert float(at.metric[1].delta) != 0
    at.button[0].click().run()
    assert not at.exception and "Intact" in text_of(at)


def test_token_loss_page_escapes_and_explains(checkpoints):
    at = open_page("token_loss", run="tiny-html")
    assert "Mean loss" in text_of(at)
    chips = "".join(m.value for m in at.markdown if "<span" in m.value)
    assert "&lt;" in chips and "&gt;" in chips
    assert tags(chips) == {"div", "span", "br"}  # every '<' of the text arrived escaped (br: its line breaks)


def test_ablation_regeneration_is_escaped(checkpoints):
    at = open_page("ablation", run="tiny-html")
    at.button[0].click().run()
    assert not at.exception
    texts = "".join(m.value for m in at.markdown if "font-family:monospace" in m.value)
    assert "&lt;" in texts and tags(texts) <= {"div", "b", "br"}


def test_run_diff_page_compares_two_snapshots(checkpoints):
    at = open_page("run_diff", run="tiny")
    assert not at.exception
    assert "step" in [row for row in at.dataframe[0].value["setting"]]
    figs = figures(at)
    assert len(figs[0]["data"][0]["y"]) > 0


def test_experiments_page_checks_a_run(checkpoints):
    at = open_page("experiments", run="tiny")
    assert "exp-copy-1" in at.selectbox[0].options
    assert "answer accuracy" in text_of(at)


@pytest.mark.slow
def test_experiments_page_starts_training_with_the_tasks_options(checkpoints):
    """The Train button launches the real trainer with the task's options; the job is stopped right away."""
    from explorer.jobs import training as jobs
    at = open_page("experiments", run="tiny")
    at.radio[0].set_value("sort").run()
    at.text_input[0].input("exp-sort-test").run()
    at.button[0].click().run()
    assert not at.exception
    out = checkpoints / "exp-sort-test"
    assert "Started" in text_of(at), text_of(at)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and not (out / "config.json").exists():
            time.sleep(0.2)  # the trainer writes config.json once it has prepared the corpus
        config = json.loads((out / "config.json").read_text())
        assert config["model"]["arch"] == "multi_head" and config["model"]["n_layer"] == 2
        assert config["corpus"].endswith(".txt") and "sort-" in config["corpus"]
    finally:
        jobs.stop_job(out)
        final = jobs.wait_until_done(out, timeout=120)
    assert final.state in ("stopped", "finished", "cancelled"), final


@pytest.mark.parametrize("page, title, lacks", [("heads", "Heads & detectors", "no attention heads"),
                                                ("ablation", "Ablation", "no attention heads to remove"),
                                                ("logit_lens", "Logit lens", "no layers to look through")])
def test_attention_pages_explain_that_a_bigram_model_has_none(tmp_path, page, title, lacks):
    """The shared preamble (explorer.ui.run_picker.selected_attention_run): title, then a note instead of a crash."""
    from gpt import runs
    from gpt.config import GPTConfig, TrainConfig
    from gpt.model import GPT
    from gpt.tokenizers import CharTokenizer, save_tokenizer
    run = tmp_path / "bigram"
    run.mkdir()
    tok = CharTokenizer.train("To be, or not to be: that is the question.\n")
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8, arch="bigram")
    runs.write_config(run, cfg, TrainConfig(max_iters=1), corpus="python-docs", tokenizer="char")
    save_tokenizer(tok, run / runs.TOKENIZER)
    runs.atomic_save_model(GPT(cfg), run / runs.WEIGHTS, {"step": "1"})
    with checkpoints_env(tmp_path):
        at = open_page(page, run="bigram")
    assert [t.value for t in at.title] == [title]
    assert [i.value for i in at.info] == [f"A **bigram** model has {lacks}. Pick a single-head, multi-head or GPT "
                                          "model."]
    assert not at.get("plotly_chart")  # the page stopped there
