"""AppTest of issue 12's pages on small run folders of every ladder rung: the landing page shows only the stages a
rung has, its numbers follow the chosen position, and the MLP / Attention pages explain what a rung lacks."""
import pytest
from conftest import ROOT, checkpoints_env, open_page
from run_support import make_rung_run

pytestmark = pytest.mark.usefixtures("fresh_caches")
AppTest = pytest.importorskip("streamlit.testing.v1").AppTest


@pytest.mark.parametrize("arch, blocks, mlp", [("bigram", False, False), ("single_head", True, False),
                                               ("multi_head", True, False), ("gpt", True, True)])
def test_landing_page_shows_the_stages_of_each_rung(tmp_path, arch, blocks, mlp):
    make_rung_run(tmp_path, arch)
    with checkpoints_env(tmp_path):
        at = open_page(run=arch, prompt="to be or not")
        assert [t.value for t in at.title] == ["Inside a prediction"]  # the app opens on it
        labels = [e.label for e in at.expander]
        assert labels[0].startswith("1 · Tokenizer") and labels[1].startswith("2 · Embeddings")
        assert any(label.startswith("4b · Softmax") for label in labels)
        assert any(label.startswith("3c · Scores") for label in labels) == blocks
        assert any("feed-forward" in label for label in labels) == mlp
        assert "Position **11**" in " ".join(m.value for m in at.markdown)  # the last token by default
        at.session_state["_learner_place"]["pos"] = 3  # what a click on a token pill stores
        at.run()
        assert "Position **3**" in " ".join(m.value for m in at.markdown)


def test_mlp_page_explains_a_rung_without_mlp(tmp_path):
    make_rung_run(tmp_path, "multi_head")
    with checkpoints_env(tmp_path):
        at = open_page("mlp", "multi_head")
    assert [t.value for t in at.title] == ["MLP neurons"]
    assert "no feed-forward (MLP) layers" in at.info[0].value


def test_bad_prompt_is_explained(tmp_path):
    make_rung_run(tmp_path, "gpt")
    with checkpoints_env(tmp_path):
        at = open_page(run="gpt", prompt="ZZZ unknown")
    assert "character vocabulary has no" in at.error[0].value


def test_landing_mlp_stage_names_the_transcoder_features_of_the_shipped_model():
    """The shipped model has a transcoder per layer: the MLP stage names the features active at the token, and they
    are the ones the transcoder computes from the MLP input there."""
    import torch

    from gpt.interp.capture import run_with_cache
    from gpt.interp.features import list_dictionaries
    from gpt.runs import load_run
    at = open_page(run="shakespeare-char")
    captions = [c.value for c in at.caption if "Read as features instead" in c.value]
    assert len(captions) == 1 and "**transcoder-L0**" in captions[0], captions
    run = load_run(ROOT / "checkpoints" / "shakespeare-char")
    (tc,) = [d for d in list_dictionaries(run.path, run.config)[0] if d.name == "transcoder-L0"]
    prompt = run.tokenizer.encode(at.text_area[0].value)[:run.config.block_size]  # the page's prompt, last token
    x = run_with_cache(run.model, prompt, {"blocks.0.mlp.in"})["blocks.0.mlp.in"][0, -1]
    top = tc.module.encode(x[None])[0].topk(1)
    assert f"#{int(top.indices[0])} ({float(top.values[0]):.2f})" in captions[0]
    assert torch.isfinite(top.values).all()
