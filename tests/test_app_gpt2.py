"""A GPT-2 imported from a Hugging Face folder (small random weights and a trained byte-level BPE, as transformers
writes them; nothing downloaded) opens on every page without an error box, and the sidebar's evaluation text
reaches the pages that scan text (the run records no corpus of its own)."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import ROOT, checkpoints_env

from gpt import hf
from gpt.evaluate import PASTED_TEXT, RUN_TEXT, evaluation_ids, evaluation_sources
from gpt.runs import load_run
from gpt.tokenizers import BPETokenizer

transformers = pytest.importorskip("transformers")
AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
pytestmark = pytest.mark.usefixtures("fresh_caches")
VIEWS = sorted(p.stem for p in (ROOT / "explorer" / "views").glob("*.py"))


@pytest.fixture(scope="module")
def gpt2_root(tmp_path_factory, corpus_text):
    folder = tmp_path_factory.mktemp("hf-gpt2")
    tok = BPETokenizer.train(corpus_text[:30000], 400)
    vocab, merges = tok.to_gpt2_vocab()
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
    cfg = transformers.GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=48, n_layer=2, n_head=4,
                                  bos_token_id=len(vocab) - 1, eos_token_id=len(vocab) - 1)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).eval().save_pretrained(folder)
    root = tmp_path_factory.mktemp("checkpoints")
    hf.import_gpt2(folder, root / "gpt2")
    return root


def test_evaluation_text_for_a_run_without_a_corpus(gpt2_root):
    run = load_run(gpt2_root / "gpt2")
    sources = evaluation_sources(run)
    assert RUN_TEXT not in sources and sources[0] == "tiny-shakespeare" and sources[-1] == PASTED_TEXT
    ids, what = evaluation_ids(run, "tiny-shakespeare")
    assert len(ids) > 10_000 and "tiny-shakespeare" in what
    ids, what = evaluation_ids(run, PASTED_TEXT, "To be, or not to be, that is the question")
    assert run.tokenizer.decode(ids.tolist()) == "To be, or not to be, that is the question"
    with pytest.raises(ValueError, match="at least 2"):
        evaluation_ids(run, PASTED_TEXT, "")


def test_unknown_characters_are_left_out_and_named():
    shipped = load_run(ROOT / "checkpoints" / "shakespeare-char")
    ids, what = evaluation_ids(shipped, PASTED_TEXT, "ROMEO: {x} + y_1")
    assert shipped.tokenizer.decode(ids.tolist()) == "ROMEO: x  y"
    assert "'{'" in what and "'_'" in what and "left out" in what


@pytest.mark.slow
def test_every_page_opens_on_an_imported_gpt2(gpt2_root):
    with checkpoints_env(gpt2_root):
        at = AppTest.from_file(str(ROOT / "explorer" / "app.py"), default_timeout=300)
        at.session_state["selected_run"] = "gpt2"
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        for view in VIEWS:
            at.switch_page(f"views/{view}.py").run()
            assert not at.exception, (view, [(e.message, e.stack_trace) for e in at.exception])
            assert not at.error, (view, [e.value for e in at.error])
            assert at.title, view
        # the evaluation text reaches a page that scans text, and a pasted one replaces it
        at.switch_page("views/token_loss.py").run()
        assert any("built-in tiny-shakespeare" in c.value for c in at.caption), [c.value for c in at.caption]
        at.sidebar.selectbox(key="eval_source").set_value(PASTED_TEXT).run()
        at.sidebar.text_area(key="eval_pasted").input("But soft, what light through yonder window breaks? " * 20).run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert any("the pasted text" in c.value for c in at.caption), [c.value for c in at.caption]


def test_patching_example_fits_the_bpe(gpt2_root):
    from gpt.interp.patching import WORKED_EXAMPLE, worked_example_for
    tok = load_run(gpt2_root / "gpt2").tokenizer
    assert len(tok.encode(WORKED_EXAMPLE["clean"])) != len(tok.encode(WORKED_EXAMPLE["corrupted"]))  # the problem
    example = worked_example_for(tok, 64)
    assert len(tok.encode(example["clean"])) == len(tok.encode(example["corrupted"])) <= 64
    assert len(tok.encode(example["answer"])) == 1 and len(tok.encode(example["wrong"])) == 1
    assert worked_example_for(tok, 4) is None  # nothing fits a 4-token context


def fake_hub_cache(root, src_folder, repo_id="gpt2", revision="abc123", with_ref=True):
    """The Hugging Face hub cache layout, as huggingface_hub writes it: blobs, a snapshot of symlinks, refs/main."""
    entry = root / f"models--{repo_id.replace('/', '--')}"
    snap = entry / "snapshots" / revision
    snap.mkdir(parents=True)
    (entry / "blobs").mkdir(exist_ok=True)
    for f in src_folder.iterdir():
        blob = entry / "blobs" / f"{f.name}.blob"
        blob.write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(blob)
    if with_ref:
        (entry / "refs").mkdir()
        (entry / "refs" / "main").write_text(revision)
    return snap


def test_import_from_the_hugging_face_cache(gpt2_root, tmp_path, monkeypatch):
    from gpt import hf_cache
    src = tmp_path / "src"
    hf.export_gpt2(gpt2_root / "gpt2", src)
    cache = tmp_path / "hub"
    snap = fake_hub_cache(cache, src)
    fake_hub_cache(cache, src, repo_id="someone/gpt2-tiny", revision="r1", with_ref=False)  # newest snapshot
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert hf_cache.resolve("gpt2") == snap
    assert hf_cache.resolve("someone/gpt2-tiny").name == "r1"
    assert [r for r, _ in hf_cache.gpt2_family()] == ["gpt2", "someone/gpt2-tiny"]
    out = hf.import_gpt2("gpt2", tmp_path / "runs" / "from-cache")
    a, b = load_run(out), load_run(gpt2_root / "gpt2")
    ids = torch.tensor([b.tokenizer.encode("ROMEO: But soft")])
    assert torch.equal(a.model(ids)[0], b.model(ids)[0])
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    with pytest.raises(hf.HFError, match="not in the Hugging Face cache .*snapshot_download"):
        hf.import_gpt2("distilgpt2", tmp_path / "runs" / "nope")
    (tmp_path / "home" / "hub" / "models--gpt2" / "snapshots").mkdir(parents=True)
    with pytest.raises(hf.HFError, match="has no snapshot"):
        hf.import_gpt2("gpt2", tmp_path / "runs" / "nope")
    assert not (tmp_path / "runs" / "nope").exists()


def test_refusals_leave_nothing_half_imported(gpt2_root, tmp_path):
    src = tmp_path / "src"
    hf.export_gpt2(gpt2_root / "gpt2", src)
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    runs_dir = tmp_path / "runs"
    with pytest.raises(hf.HFError, match="only pytorch_model.bin.*can run code.*safe_serialization=True"):
        hf.import_gpt2(src, runs_dir / "x")
    (src / "pytorch_model.bin").rename(src / "model.safetensors")
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(hf.HFError, match="model.safetensors"):
        hf.import_gpt2(src, runs_dir / "x")
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # not even a temporary folder


@pytest.mark.slow
def test_embeddings_page_searches_a_large_vocabulary(tmp_path):
    """A 6,000-token vocabulary: the page offers a search instead of a 6,000-option list, draws a sample of the
    points (with the chosen token and its neighbours), and answers from the per-weights projection cache."""
    import time

    from gpt import runs
    from gpt.config import GPTConfig, TrainConfig
    from gpt.model import GPT
    from gpt.tokenizers import CharTokenizer, save_tokenizer
    text = "the " + "".join(chr(0x4E00 + i) for i in range(5_990))
    tok = CharTokenizer.train(text)
    folder = tmp_path / "big-vocab"
    folder.mkdir()
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32)
    runs.write_config(folder, cfg, TrainConfig(max_iters=1), tokenizer="char")
    save_tokenizer(tok, folder / runs.TOKENIZER)
    runs.atomic_save_model(GPT(cfg), folder / runs.WEIGHTS, {"step": "1"})
    with checkpoints_env(tmp_path):
        at = AppTest.from_file(str(ROOT / "explorer" / "app.py"), default_timeout=120)
        at.session_state["selected_run"] = "big-vocab"
        at.run()
        at.switch_page("views/embeddings.py").run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        query = at.text_input(key="emb_query")
        query.input("丁").run()
        picker = next(s for s in at.selectbox if s.label.startswith("Nearest neighbours of"))
        assert len(picker.options) < 60
        scatter = json.loads(at.get("plotly_chart")[0].proto.spec)
        assert len(scatter["data"][0]["x"]) <= 2_000 + 11
        t0 = time.perf_counter()
        at.run()   # a rerun reads the projection from the cache
        assert time.perf_counter() - t0 < 2.0
