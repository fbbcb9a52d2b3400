"""Dictionaries stored in half precision: config.json says which dtype the tensors are in, the files stay readable
without our code, loading upcasts to float32, old float32 files without the field still load, and a mismatch or
an overflow is refused by name."""
import json
import shutil

import numpy as np
import pytest
import torch
from model_support import random_dictionary as support_random_dictionary
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file, save_file

from gpt.interp.features.cli import main
from gpt.interp.features.dictionary import (
    DictionaryError,
    list_dictionaries,
    load_dictionary,
    save_dictionary,
    weights_digest,
)

# round to nearest: a normal number moves by at most half a unit in the last place (fp16: 10 mantissa bits,
# bf16: 7), i.e. by at most 2^-11 resp. 2^-8 of itself
REL_STEP = {"float16": 2.0**-11, "bfloat16": 2.0**-8}


def random_dictionary(activation="topk", n=64, **kw):
    """model_support's random dictionary, with more features and k=8 (a TopK of 8 active of 64)."""
    return support_random_dictionary(activation, n, k=8, **kw)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("activation", ["topk", "jumprelu"])
def test_half_precision_round_trip_within_one_rounding(tmp_path, dtype, activation):
    d = random_dictionary(activation)
    save_dictionary(tmp_path / "d", d, dtype)
    raw = json.loads((tmp_path / "d" / "config.json").read_text())
    assert raw["dtype"] == dtype
    stored = load_file(str(tmp_path / "d" / "dictionary.safetensors"))
    assert {t.dtype for t in stored.values()} == {getattr(torch, dtype)}
    loaded = load_dictionary(tmp_path / "d")
    assert loaded.config.dtype == dtype
    for name, original in d.tensors().items():
        got = loaded.module.tensors()[name]
        assert got.dtype == torch.float32   # upcast on load: the arithmetic stays float32
        assert ((got - original).abs() <= REL_STEP[dtype] * original.abs()).all(), name
    # the output moves by about the weights' rounding, except on tokens where a near-tie swaps which features fire
    x = torch.randn(512, 16, generator=torch.Generator().manual_seed(1))
    y, y_half = d(x), loaded.module(x)
    same = ((d.encode(x) > 0) == (loaded.module.encode(x) > 0)).all(-1)   # (512,) tokens with the same active set
    assert same.float().mean() > 0.95
    assert ((y_half - y)[same].norm() / y[same].norm()).item() < 4 * REL_STEP[dtype]
    # saving what was loaded again gives the same bytes (fp16 -> fp32 -> fp16 is exact)
    save_dictionary(tmp_path / "again", loaded.module)
    assert (tmp_path / "again" / "dictionary.safetensors").read_bytes() == \
        (tmp_path / "d" / "dictionary.safetensors").read_bytes()
    assert json.loads((tmp_path / "again" / "config.json").read_text())["dtype"] == dtype


def test_float16_file_read_with_numpy_alone_gives_the_formula(tmp_path):
    """No torch, no project code: json + safetensors' numpy reader + the README's formula."""
    d = random_dictionary("topk")
    save_dictionary(tmp_path / "d", d, "float16")
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    t = {k: v.astype(np.float32) for k, v in load_numpy(str(tmp_path / "d" / "dictionary.safetensors")).items()}
    assert cfg["dtype"] == "float16" and t["W_enc"].shape == (cfg["d_in"], cfg["n_features"])
    x = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    pre = x @ t["W_enc"] + t["b_enc"]
    kth = np.sort(pre, axis=-1)[:, -cfg["k"]][:, None]
    f = np.where(pre >= kth, np.maximum(pre, 0), 0)
    y_hat = f @ t["W_dec"] + t["b_dec"]
    ours = load_dictionary(tmp_path / "d").module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, y_hat, rtol=1e-5, atol=1e-5)


def test_old_float32_files_without_the_field_still_load(tmp_path):
    d = random_dictionary()
    save_dictionary(tmp_path / "d", d)
    raw = json.loads((tmp_path / "d" / "config.json").read_text())
    assert raw["dtype"] == "float32"
    del raw["dtype"]   # as written before the field existed
    (tmp_path / "d" / "config.json").write_text(json.dumps(raw))
    loaded = load_dictionary(tmp_path / "d")
    assert loaded.config.dtype == "float32"
    for name, t in d.tensors().items():
        assert torch.equal(loaded.module.tensors()[name], t), name   # float32 on disk: bit for bit


def test_dtype_mismatch_bad_names_and_overflow_refused(tmp_path):
    d = random_dictionary()
    save_dictionary(tmp_path / "lying", d, "float16")
    t = load_file(str(tmp_path / "lying" / "dictionary.safetensors"))
    save_file({k: v.float() for k, v in t.items()}, str(tmp_path / "lying" / "dictionary.safetensors"))
    with pytest.raises(DictionaryError, match="lying/dictionary.safetensors: W_enc is stored as float32, "
                                              "config.json says float16"):
        load_dictionary(tmp_path / "lying")
    raw = json.loads((tmp_path / "lying" / "config.json").read_text())
    for bad in ("float8", ["float16"], None):
        (tmp_path / "lying" / "config.json").write_text(json.dumps({**raw, "dtype": bad}))
        with pytest.raises(DictionaryError, match="dtype must be one of float32, float16, bfloat16"):
            load_dictionary(tmp_path / "lying")
    with pytest.raises(DictionaryError, match="dtype must be one of"):
        save_dictionary(tmp_path / "x", d, "int8")
    with torch.no_grad():
        d.b_dec[0] = 1e5   # beyond float16's 65504
    with pytest.raises(DictionaryError, match="b_dec does not fit in float16"):
        save_dictionary(tmp_path / "big", d, "float16")
    assert not (tmp_path / "big").exists()   # nothing written
    save_dictionary(tmp_path / "big", d, "bfloat16")   # bfloat16 has float32's range
    assert load_dictionary(tmp_path / "big").module.b_dec[0].item() == pytest.approx(1e5, rel=2**-8)


@pytest.fixture
def run_copy(tmp_path):
    run = tmp_path / "run"
    shutil.copytree("checkpoints/shakespeare-char", run, ignore=shutil.ignore_patterns("snapshots", "features", "interp"))
    return run


@pytest.mark.slow
def test_cast_halves_the_files_and_drops_stale_metrics(run_copy, capsys):
    digest = weights_digest(run_copy / "model.safetensors")
    for layer in (0, 1):
        d = random_dictionary(n=256, width=192, seed=layer, digest=digest, layer=layer)
        save_dictionary(run_copy / "features" / f"tc{layer}", d)
        (run_copy / "features" / f"tc{layer}" / "metrics.json").write_text("{}")
    before = (run_copy / "features" / "tc0" / "dictionary.safetensors").stat().st_size
    # a name that is not there: refused, nothing changed
    assert main(["cast", str(run_copy), "tc0", "nope", "--dtype", "float16"]) == 2
    assert "no dictionary named nope" in capsys.readouterr().err
    assert json.loads((run_copy / "features" / "tc0" / "config.json").read_text())["dtype"] == "float32"
    assert main(["cast", str(run_copy), "tc0", "--dtype", "float16"]) == 0
    assert "tc0" in capsys.readouterr().out
    after = (run_copy / "features" / "tc0" / "dictionary.safetensors").stat().st_size
    assert after < 0.51 * before
    assert not (run_copy / "features" / "tc0" / "metrics.json").exists()   # measured on the old weights
    assert (run_copy / "features" / "tc1" / "metrics.json").exists()       # tc1 untouched
    good, broken = list_dictionaries(run_copy, None, digest)
    assert not broken and {d.name: d.config.dtype for d in good} == {"tc0": "float16", "tc1": "float32"}
    assert main(["cast", str(run_copy), "tc0", "--dtype", "float16"]) == 0
    assert "already float16: unchanged" in capsys.readouterr().out
    assert sorted(p.name for p in (run_copy / "features").iterdir()) == ["tc0", "tc1"]   # no temporary folders


@pytest.mark.slow
def test_train_saves_in_the_chosen_dtype(run_copy):
    assert main(["train", str(run_copy), "--layers", "0", "--n-features", "64", "--k", "4", "--tokens", "2048",
                 "--threads", "1", "--no-eval", "--save-dtype", "bfloat16"]) == 0
    folder = run_copy / "features" / "transcoder-L0"
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    assert {t.dtype for t in load_file(str(folder / "dictionary.safetensors")).values()} == {torch.bfloat16}
    assert load_dictionary(folder).module.W_enc.dtype == torch.float32
