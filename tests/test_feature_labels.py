"""Feature labels without an LLM (gpt/interp/features/labels.py): the rule search finds a planted rule and scores it
near 1 on held-out text, a random feature scores near 0, labels.json reads without our code and is refused when its
dictionary changed, and the CLI writes it."""
import json
import shutil

import pytest
import torch

from gpt.config import GPTConfig
from gpt.interp.features.dictionary import Dictionary, DictionaryConfig, LoadedDictionary, save_dictionary
from gpt.interp.features.labels import (
    FORMAT,
    LABELS_FILE,
    LabelsError,
    label_features,
    load_labels,
    node_clerps,
    read_labels,
    write_labels,
)
from gpt.interp.features.rules import families, text_positions
from gpt.model import GPT
from gpt.token_display import display_text as visible
from gpt.tokenizers import CharTokenizer

N_FEATURES = 4


@pytest.fixture(scope="module")
def setup(corpus_text, tmp_path_factory):
    """A char tokenizer and a tiny model over 24,000 characters of Shakespeare, and a random dictionary saved to a
    folder (its weights file keys the labels)."""
    text = corpus_text[:24_000]
    tok = CharTokenizer.train(corpus_text)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=32)).eval()
    cfg = DictionaryConfig("transcoder", "blocks.0.mlp.in", "blocks.0.mlp.out", "relu", N_FEATURES, 16, 16, "ab" * 32)
    d = Dictionary(cfg)
    with torch.no_grad():
        d.W_dec.copy_(torch.randn(N_FEATURES, 16))
    folder = save_dictionary(tmp_path_factory.mktemp("dic") / "transcoder-L0", d)
    loaded = LoadedDictionary("transcoder-L0", folder, cfg, d.eval(), None)
    return tok, model, loaded, text, torch.tensor(tok.encode(text))


def planted(text: str, ids: torch.Tensor) -> tuple:
    """Sparse activations (positions, features, values, tokens read) of four made-up features:
    0 fires 1.0 on every `m` after `co`; 1 fires at random on 3% of tokens; 2 fires on the 3rd character of a line
    after a blank line (the 3rd letter of a speaker's name); 3 never fires (dead)."""
    n = ids.numel() - 1
    g = torch.Generator().manual_seed(1)
    co_m = torch.tensor([i for i in range(2, n) if text[i - 2:i + 1] == "com"])
    rand = torch.randperm(n, generator=g)[: int(0.03 * n)]
    third = torch.tensor([i for i in range(3, n) if text[i - 3:i - 2] == "\n" and text[i - 4:i - 3] == "\n"
                          and "\n" not in text[i - 2:i + 1]])
    pos = torch.cat([co_m, rand, third])
    feat = torch.cat([torch.zeros(len(co_m)), torch.ones(len(rand)), torch.full((len(third),), 2)]).long()
    val = torch.cat([torch.ones(len(co_m)), torch.rand(len(rand), generator=g) * 3, torch.full((len(third),), 2.0)])
    return pos, feat, val, n


@pytest.fixture(scope="module")
def labels(setup):
    tok, model, loaded, text, ids = setup
    return label_features(model, loaded, tok, ids, activations=planted(text, ids))


def test_a_planted_rule_is_found_and_scores_near_one_on_held_out_text(labels):
    m = labels["features"]["0"]
    assert m["label"].startswith("`m` after `co`"), m["label"]
    assert m["score"] > 0.95 and m["f1"] > 0.95
    assert m["rule"].startswith("after2 in")
    assert not m["weak"]
    speaker = labels["features"]["2"]
    assert speaker["label"].startswith("the 3rd character of a line after a blank line"), speaker["label"]
    assert speaker["score"] > 0.9


def test_a_random_feature_scores_near_zero_and_is_weak(labels):
    m = labels["features"]["1"]
    assert abs(m["score"]) < 0.1 and m["weak"]


def test_dead_features_are_left_out_and_the_file_says_how_it_scores(labels):
    assert "3" not in labels["features"]
    assert labels["format"] == FORMAT and labels["weak_below"] == 0.5
    assert labels["measure"].startswith("pearson")
    assert "even-numbered" in labels["fit_text"] and "odd-numbered" in labels["scored_on"]


def test_promoted_tokens_are_the_unembedding_reading_of_the_decoder_row(setup, labels):
    tok, model, loaded, _, _ = setup
    effect = model.lm_head.weight @ loaded.module.W_dec[0]
    top = effect.topk(3).indices.tolist()
    assert labels["features"]["0"]["promotes"] == [visible(tok.decode([i])) for i in top]
    assert labels["features"]["0"]["label"].endswith("→ " + " ".join(visible(tok.decode([i])) for i in top)) or \
        "; not " in labels["features"]["0"]["label"]


def test_labels_json_round_trips_and_is_refused_when_the_dictionary_changes(setup, labels, tmp_path):
    tok, model, loaded, _, _ = setup
    folder = tmp_path / loaded.name
    shutil.copytree(loaded.path, folder)
    copy = LoadedDictionary(loaded.name, folder, loaded.config, loaded.module, None)
    write_labels(copy, labels)
    raw = json.loads((folder / LABELS_FILE).read_text(encoding="utf-8"))   # plain JSON, no project code
    assert raw["features"]["0"]["label"] == labels["features"]["0"]["label"]
    assert read_labels(folder) == raw
    read = load_labels(folder)
    assert read.entry(0)["score"] == labels["features"]["0"]["score"] and not read.is_weak(0) and read.is_weak(1)
    assert read.text(1).endswith("(weak)") and read.text(3) == ""
    assert "'m' after 'co'" in read.text(0, plain=True)
    # the dictionary trained again: same folder, other weights -> the labels are not trusted
    with torch.no_grad():
        loaded.module.W_enc.add_(1.0)
    try:
        save_dictionary(folder, loaded.module)
    finally:
        with torch.no_grad():
            loaded.module.W_enc.sub_(1.0)
    with pytest.raises(LabelsError, match="other weights"):
        read_labels(folder)
    (folder / LABELS_FILE).write_text('{"format": "something else", "features": {}}')
    with pytest.raises(LabelsError, match="format"):
        read_labels(folder)
    (folder / LABELS_FILE).unlink()
    with pytest.raises(LabelsError, match="no labels.json"):
        read_labels(folder)


def test_text_positions_count_letters_lines_and_lines_after_a_blank_line():
    tok = CharTokenizer(list("\n :ABCOab"))
    text = "Ab ba\n\nCAB:\nab"
    ids = torch.tensor(tok.encode(text))
    pos = text_positions([tok.decode([i]) for i in range(tok.vocab_size)], ids)
    assert pos["word_pos"].tolist() == [1, 2, 0, 1, 2, 0, 0, 1, 2, 3, 0, 0, 1, 2]
    assert pos["line_col"].tolist() == [1, 2, 3, 4, 5, 6, 1, 1, 2, 3, 4, 5, 1, 2]
    assert pos["header_col"].tolist() == [1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 0, 0]
    names = [f.name for f in families(tok, ids)]
    assert {"token", "after1", "after2", "after3", "word_pos", "header_col", "before"} <= set(names)


def test_graph_json_carries_the_labels_as_clerp(labels, setup, tmp_path):
    from gpt.interp.circuits.graph import Node
    tok, model, loaded, _, _ = setup

    class Graph:
        nodes = [Node("feature", 0, 5, 0, 1.0), Node("feature", 0, 6, 3, 1.0), Node("error", 0, 5, -1, 0.1)]
    folder = tmp_path / loaded.name
    shutil.copytree(loaded.path, folder)
    write_labels(LoadedDictionary(loaded.name, folder, loaded.config, loaded.module, None), labels)
    clerps = node_clerps(Graph, {0: load_labels(folder)})
    assert clerps == {"0_0_5": labels["features"]["0"]["label"]}


@pytest.mark.slow
def test_cli_train_labels_its_dictionaries_and_label_relabels_by_name(tiny_run, tmp_path):
    from conftest import run_cli
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    run_cli("-m", "gpt.interp.features", "train", str(run), "--layers", "0", "--n-features", "64", "--k", "4",
            "--tokens", "20000", "--no-eval", "--no-label", "--threads", "1")
    folder = run / "features" / "transcoder-L0"
    assert (folder / "dictionary.safetensors").is_file() and not (folder / LABELS_FILE).exists()
    out = run_cli("-m", "gpt.interp.features", "label", str(run), "transcoder-L0", "--threads", "1").stdout
    assert "transcoder-L0" in out and "held-out score quartiles" in out
    data = read_labels(folder)
    assert data["dictionary"] == "transcoder-L0" and data["features"]
    assert all(set(e) >= {"label", "score", "f1", "rule", "promotes", "suppresses", "density"}
               for e in data["features"].values())
    bad = run_cli("-m", "gpt.interp.features", "label", str(run), "no-such", check=False)
    assert bad.returncode == 2 and "no dictionary named no-such" in bad.stderr
    # train without --no-label labels what it trained
    run_cli("-m", "gpt.interp.features", "train", str(run), "--layers", "0", "--n-features", "64", "--k", "4",
            "--tokens", "20000", "--no-eval", "--name", "again", "--threads", "1")
    assert read_labels(run / "features" / "again")["dictionary"] == "again"



def test_places_that_differ_only_in_their_number_share_the_words():
    from gpt.interp.features.rules import join_or
    assert join_or(["the 7th letter of a word", "the 5th letter of a word", "the 6th letter of a word"]) == \
        "the 5th, 6th or 7th letter of a word"
    assert join_or(["`I` as the 8th letter of a word", "`I` as the 2nd letter of a word"]) == \
        "`I` as the 2nd or 8th letter of a word"
    assert join_or(["`a`", "`e`", "`o`"]) == "`a`, `e` or `o`"
