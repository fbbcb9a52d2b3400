"""Sparse dictionaries: the file format read with no project code, the formula per activation kind, training,
evaluation, and every bad input refused by name."""
import json
import math
import shutil

import pytest
import torch
from model_support import DIGEST, random_dictionary, tiny_model
from safetensors.torch import load_file, save_file

from gpt.evaluate import consecutive_windows
from gpt.interp.features.cli import install, main
from gpt.interp.features.dictionary import (
    Dictionary,
    DictionaryConfig,
    DictionaryError,
    list_dictionaries,
    load_dictionary,
    save_dictionary,
)
from gpt.interp.features.evaluate import evaluate_dictionaries
from gpt.interp.features.training import FeatureTrainConfig, train_dictionaries
from gpt.model import Trace, capture_names


def test_mlp_in_is_a_capture_point_equal_to_the_second_norm():
    model = tiny_model()
    assert "blocks.0.mlp.in" in capture_names(model.config)
    ids = torch.randint(0, 12, (1, 8))
    trace = Trace({"blocks.0.mlp.in", "blocks.0.resid_mid"})
    model(ids, trace=trace)
    torch.testing.assert_close(trace.acts["blocks.0.mlp.in"], model.blocks[0].ln_2(trace.acts["blocks.0.resid_mid"]))


@pytest.mark.parametrize("activation", ["topk", "jumprelu", "relu"])
def test_formula_from_the_two_files_alone(tmp_path, activation):
    """Read config.json and dictionary.safetensors with json + safetensors only, apply the README's formula, and get
    what the module computes."""
    d = random_dictionary(activation)
    save_dictionary(tmp_path / "d", d)
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    t = load_file(str(tmp_path / "d" / "dictionary.safetensors"))
    assert t["W_enc"].shape == (16, 40) and t["W_dec"].shape == (40, 16)
    torch.testing.assert_close(t["W_dec"].norm(dim=1), torch.ones(40))  # unit-norm decoder rows
    x = torch.randn(30, 16)
    pre = x @ t["W_enc"] + t["b_enc"]
    if cfg["activation"] == "topk":
        f = torch.zeros_like(pre)
        top = pre.topk(cfg["k"], dim=-1)
        f.scatter_(-1, top.indices, top.values.clamp(min=0))
        assert ((f > 0).sum(-1) <= cfg["k"]).all()
    elif cfg["activation"] == "jumprelu":
        f = torch.where(pre > t["threshold"], pre, torch.zeros_like(pre))
    else:
        f = pre.clamp(min=0)
    y_hat = f @ t["W_dec"] + t["b_dec"]
    torch.testing.assert_close(d(x), y_hat, rtol=1e-5, atol=1e-5)
    loaded = load_dictionary(tmp_path / "d")
    torch.testing.assert_close(loaded.module(x), y_hat, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_training_learns_and_evaluation_metrics_recompute_from_files(tmp_path):
    model = tiny_model()
    ids = torch.randint(0, 12, (3000,))
    cfg = FeatureTrainConfig(n_features=64, k=4, tokens=40_000, batch_tokens=256, lr=3e-3)
    (d,) = train_dictionaries(model, ids, FeatureTrainConfig(**{**cfg.__dict__, "layers": [1]}), DIGEST)
    assert d.config.input == "blocks.1.mlp.in" and d.config.training["tokens"] > 0
    save_dictionary(tmp_path / "tc", d)
    val = torch.randint(0, 12, (500,))
    (m,) = evaluate_dictionaries(model, [load_dictionary(tmp_path / "tc").module], val)
    assert m["variance_explained"] > 0.5 and m["mean_l0"] <= 4
    # recompute from the files with plain torch: the model's own MLP input/output, the formula, the losses
    t = load_file(str(tmp_path / "tc" / "dictionary.safetensors"))
    k = json.loads((tmp_path / "tc" / "config.json").read_text())["k"]
    sse = tot = fired = l0 = 0.0
    xs, ys, spliced, zero, clean, n = [], [], 0.0, 0.0, 0.0, 0
    for x, y in consecutive_windows(val, 16):
        tr = Trace({"blocks.1.mlp.in", "blocks.1.mlp.out"})
        logits, _ = model(x, trace=tr)
        xin, out = tr.acts["blocks.1.mlp.in"].reshape(-1, 16), tr.acts["blocks.1.mlp.out"].reshape(-1, 16)
        pre = xin @ t["W_enc"] + t["b_enc"]
        top = pre.topk(k, -1)
        f = torch.zeros_like(pre).scatter_(-1, top.indices, top.values.clamp(min=0))
        y_hat = f @ t["W_dec"] + t["b_dec"]
        sse += ((y_hat - out) ** 2).sum().item()
        ys.append(out)
        l0 += (f > 0).sum().item()
        ce = torch.nn.functional.cross_entropy
        clean += ce(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        lg, _ = model(x, trace=Trace(set(), {"blocks.1.mlp.out": lambda o, yh=y_hat: yh.view_as(o)}))
        spliced += ce(lg.flatten(0, 1), y.flatten(), reduction="sum").item()
        lg, _ = model(x, trace=Trace(set(), {"blocks.1.mlp.out": torch.zeros_like}))
        zero += ce(lg.flatten(0, 1), y.flatten(), reduction="sum").item()
        n += y.numel()
    ally = torch.cat(ys)
    tot = ((ally - ally.mean(0)) ** 2).sum().item()
    del fired, xs
    assert m["variance_explained"] == pytest.approx(1 - sse / tot, abs=1e-4)
    assert m["mean_l0"] == pytest.approx(l0 / n, rel=1e-6, abs=1e-6)
    assert m["ce_loss_recovered"] == pytest.approx((zero - spliced) / (zero - clean), abs=1e-4)
    assert m["loss_clean"] == pytest.approx(clean / n, rel=1e-5, abs=1e-5)


def test_sae_on_the_residual_and_jumprelu_train():
    model = tiny_model()
    ids = torch.randint(0, 12, (3000,))
    for kw in ({"kind": "sae", "site": "resid_mid"}, {"activation": "jumprelu"}, {"activation": "relu"}):
        cfg = FeatureTrainConfig(n_features=32, k=4, tokens=4096, batch_tokens=256, layers=[0], **kw)
        (d,) = train_dictionaries(model, ids, cfg, DIGEST)
        assert all(torch.isfinite(t).all() for t in d.tensors().values())
        assert d.config.output == ("blocks.0.resid_mid" if kw.get("kind") == "sae" else "blocks.0.mlp.out")


def test_stop_request_saves_nothing():
    model = tiny_model()
    cfg = FeatureTrainConfig(n_features=32, k=4, tokens=8192, batch_tokens=256)
    assert train_dictionaries(model, torch.randint(0, 12, (3000,)), cfg, DIGEST, should_stop=lambda: True) is None


@pytest.mark.parametrize("bad, match", [
    ({"n_features": 8}, "n-features"), ({"k": 0}, "--k"), ({"k": 999}, "--k"), ({"layers": [5]}, "layer 5"),
    ({"kind": "sae", "site": "attn.out"}, "--site"), ({"activation": "gelu"}, "--activation"),
])
def test_impossible_settings_refused_by_name(bad, match):
    with pytest.raises(DictionaryError, match=match):
        FeatureTrainConfig(**bad).validate(tiny_model().config)


def test_attention_only_and_bigram_runs_refused_with_the_reason():
    attn_only = tiny_model(arch="multi_head")
    with pytest.raises(DictionaryError, match="no MLP layers"):
        FeatureTrainConfig().validate(attn_only.config)
    FeatureTrainConfig(kind="sae", site="resid_mid").validate(attn_only.config)  # an SAE is fine there
    with pytest.raises(DictionaryError, match="bigram"):
        FeatureTrainConfig(kind="sae").validate(tiny_model(arch="bigram").config)


def test_bad_folders_named_and_the_rest_still_listed(tmp_path):
    run = tmp_path / "run"
    model_cfg = tiny_model().config
    good = random_dictionary()
    save_dictionary(run / "features" / "good", good)
    for name in ("corrupt", "wide", "other-weights", "no-field", "half"):
        save_dictionary(run / "features" / name, good)
    (run / "features" / "corrupt" / "dictionary.safetensors").write_bytes(b"\x00garbage")
    t = load_file(str(run / "features" / "wide" / "dictionary.safetensors"))
    t["W_enc"] = torch.zeros(16, 41)
    save_file(t, str(run / "features" / "wide" / "dictionary.safetensors"))
    cfg = json.loads((run / "features" / "other-weights" / "config.json").read_text())
    cfg["weights_digest"] = "cd" * 32
    (run / "features" / "other-weights" / "config.json").write_text(json.dumps(cfg))
    del cfg["kind"]
    (run / "features" / "no-field" / "config.json").write_text(json.dumps(cfg))
    (run / "features" / "half" / "dictionary.safetensors").unlink()
    (run / "features" / ".tmp-training.123").mkdir()  # a training in progress is not listed at all
    listed, broken = list_dictionaries(run, model_cfg, DIGEST)
    assert [d.name for d in listed] == ["good"]
    reasons = {b.name: b.error for b in broken}
    assert set(reasons) == {"corrupt", "wide", "other-weights", "no-field", "half"}
    assert "corrupt/dictionary.safetensors" in reasons["corrupt"] and "not a readable" in reasons["corrupt"]
    assert "W_enc is [16, 41]" in reasons["wide"]
    assert "other weights" in reasons["other-weights"]
    assert "missing field(s) kind" in reasons["no-field"]
    assert "half/dictionary.safetensors is missing" in reasons["half"]


def test_install_replaces_atomically(tmp_path):
    root = tmp_path / "features"
    root.mkdir()
    install(root, "tc", random_dictionary(seed=0))
    first = (root / "tc" / "dictionary.safetensors").read_bytes()
    install(root, "tc", random_dictionary(seed=1))
    assert (root / "tc" / "dictionary.safetensors").read_bytes() != first
    assert sorted(p.name for p in root.iterdir()) == ["tc"]  # no temporary folders left behind


def test_cli_refuses_bad_names_and_k(tmp_path, capsys):
    shutil.copytree("checkpoints/shakespeare-char", tmp_path / "run",
                    ignore=shutil.ignore_patterns("snapshots", "features", "interp"))
    assert main(["train", str(tmp_path / "run"), "--k", "0"]) == 2
    assert "--k must be" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "run"), "--name", "../evil", "--layers", "0"]) == 2
    assert "dictionary name" in capsys.readouterr().err
    assert not (tmp_path / "run" / "features").exists() or not any((tmp_path / "run" / "features").iterdir())


def test_shipped_transcoders_load_and_match_the_shipped_weights():
    from gpt.runs import load_run
    run = load_run("checkpoints/shakespeare-char")
    good, broken = list_dictionaries(run.path, run.config)
    assert not broken, broken
    transcoders = [d for d in good if d.config.kind == "transcoder"]
    assert [d.config.layer for d in transcoders] == list(range(run.config.n_layer))
    for d in transcoders:
        assert d.metrics is not None and not math.isnan(d.metrics["ce_loss_recovered"])


def test_steering_with_a_feature_at_coefficient_zero_is_plain_generation():
    from gpt.generate import stream_tokens
    from gpt.interp.capture import InterpError
    from gpt.interp.features.cards import feature_direction
    from gpt.interp.steering import generate_side_by_side
    from gpt.runs import load_run
    run = load_run("checkpoints/shakespeare-char")
    (tc,) = [d for d in list_dictionaries(run.path, run.config)[0] if d.name == "transcoder-L3"]
    vector = feature_direction(tc, 952)
    torch.testing.assert_close(vector.norm(), torch.tensor(1.0))
    ids = run.tokenizer.encode("ROMEO:\nI will co")
    plain, steered = generate_side_by_side(run.model, ids, vector, 4, [0.0, 30.0], max_new_tokens=40,
                                           temperature=0.8, seed=3)
    assert plain == [s.token_id for s in stream_tokens(run.model, ids, 40, temperature=0.8, seed=3, alternatives=0)]
    assert steered != plain
    with pytest.raises(InterpError, match="features 0..4095"):
        feature_direction(tc, 4096)


def test_skip_transcoder_format_and_formula(tmp_path):
    """A skip transcoder's file adds W_skip (d_in, d_out) and config "skip": true; y_hat = f @ W_dec + b_dec + x @ W_skip
    from the two files alone; an SAE with a skip is refused."""
    cfg = DictionaryConfig("transcoder", "blocks.1.mlp.in", "blocks.1.mlp.out", "topk", 40, 16, 16, DIGEST, 5, skip=True)
    d = Dictionary(cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in (d.W_enc, d.b_enc, d.W_dec, d.b_dec, d.W_skip):
            p.copy_(torch.randn(p.shape, generator=g))
        d.normalise_decoder()
    save_dictionary(tmp_path / "s", d)
    raw = json.loads((tmp_path / "s" / "config.json").read_text())
    assert raw["skip"] is True and raw["formula"].endswith("+ x @ W_skip")
    t = load_file(str(tmp_path / "s" / "dictionary.safetensors"))
    x = torch.randn(30, 16)
    pre = x @ t["W_enc"] + t["b_enc"]
    top = pre.topk(5, dim=-1)
    f = torch.zeros_like(pre).scatter_(-1, top.indices, top.values.clamp(min=0))
    torch.testing.assert_close(d(x), f @ t["W_dec"] + t["b_dec"] + x @ t["W_skip"], rtol=1e-5, atol=1e-5)
    loaded = load_dictionary(tmp_path / "s")
    torch.testing.assert_close(loaded.module(x), d(x))
    (tmp_path / "s" / "dictionary.safetensors").write_bytes(
        __import__("safetensors.torch", fromlist=["save"]).save({k: v for k, v in t.items() if k != "W_skip"}))
    with pytest.raises(DictionaryError, match="W_skip is missing"):
        load_dictionary(tmp_path / "s")
    with pytest.raises(DictionaryError, match="only a transcoder has a skip"):
        DictionaryConfig("sae", "blocks.1.resid_mid", "blocks.1.resid_mid", "topk", 40, 16, 16, DIGEST, 5,
                         skip=True).validate()


def test_evaluation_counts_the_skip_path():
    """Variance explained of a skip transcoder is that of f @ W_dec + b_dec + x @ W_skip, checked by hand."""
    model = tiny_model()
    cfg = DictionaryConfig("transcoder", "blocks.1.mlp.in", "blocks.1.mlp.out", "relu", 8, 16, 16, DIGEST, skip=True)
    d = Dictionary(cfg)
    with torch.no_grad():
        d.b_enc.fill_(-1e6)  # no feature ever fires: the skip path alone explains what it can
        d.W_skip.copy_(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)) * 0.1)
    val = torch.randint(0, 12, (200,), generator=torch.Generator().manual_seed(1))
    (m,) = evaluate_dictionaries(model, [d], val)
    ins, outs = [], []
    for x, _ in consecutive_windows(val, 16):
        trace = Trace({"blocks.1.mlp.in", "blocks.1.mlp.out"})
        model(x, trace=trace)
        ins.append(trace.acts["blocks.1.mlp.in"].reshape(-1, 16))
        outs.append(trace.acts["blocks.1.mlp.out"].reshape(-1, 16))
    x, y = torch.cat(ins), torch.cat(outs)
    expected = 1 - ((x @ d.W_skip + d.b_dec - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
    assert m["variance_explained"] == pytest.approx(float(expected), rel=1e-4)
    assert m["mean_l0"] == 0
