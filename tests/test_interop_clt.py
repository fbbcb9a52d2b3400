"""A cross-layer transcoder in circuit-tracer's CLT layout (its load_clt: W_enc_{i}.safetensors with W_enc_{i} (n, d),
b_enc_{i}, b_dec_{i}, threshold_{i}; W_dec_{i}.safetensors with W_dec_{i} (n, L - i, d)): the files alone, read with
safetensors and circuit-tracer's formula, give what our CLT computes. Needs no circuit-tracer installed."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_support import random_clt as support_random_clt
from safetensors.torch import load_file

from gpt.interp.features.crosslayer import LoadedCrossLayer
from gpt.interp.features.dictionary import DictionaryError
from gpt.interp.features.export import export_circuit_tracer_clt

L, N, C = 3, 24, 16


def random_clt(activation: str, seed: int = 0) -> LoadedCrossLayer:
    clt = support_random_clt(L, N, activation, 4, seed, C)
    return LoadedCrossLayer("clt", Path("."), clt.config, clt, None)


def their_formula(folder: Path, xs: list[torch.Tensor], activation: str, k: int | None) -> list[torch.Tensor]:
    """circuit-tracer's CLT from its files: f_i = act(x_i @ W_enc_i.T + b_enc_i); y_j = sum_{i<=j} f_i @ W_dec_i[:, j-i]
    + b_dec_j."""
    enc = [load_file(folder / f"W_enc_{i}.safetensors") for i in range(L)]
    dec = [load_file(folder / f"W_dec_{i}.safetensors")[f"W_dec_{i}"] for i in range(L)]
    feats = []
    for i, x in enumerate(xs):
        pre = x @ enc[i][f"W_enc_{i}"].T + enc[i][f"b_enc_{i}"]
        if activation == "jumprelu":
            f = pre * (pre > enc[i][f"threshold_{i}"])
        elif activation == "topk":
            top = pre.topk(k, dim=-1)
            f = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        else:
            f = pre.relu()
        feats.append(f)
    return [sum(feats[i] @ dec[i][:, j - i] for i in range(j + 1)) + enc[j][f"b_dec_{j}"] for j in range(L)]


@pytest.mark.parametrize("activation", ["jumprelu", "relu", "topk"])
def test_clt_export_has_circuit_tracers_layout_and_formula(tmp_path, activation):
    clt = random_clt(activation)
    out = export_circuit_tracer_clt(clt, tmp_path / "clt", scan="tiny/clt", allow_topk=activation == "topk")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.yaml"] + [f"W_enc_{i}.safetensors" for i in range(L)] + [f"W_dec_{i}.safetensors" for i in range(L)])
    assert "model_kind: \"cross_layer_transcoder\"" in (out / "config.yaml").read_text()
    for i in range(L):
        shapes = {k: tuple(v.shape) for k, v in load_file(out / f"W_enc_{i}.safetensors").items()}
        expected = {f"W_enc_{i}": (N, C), f"b_enc_{i}": (N,), f"b_dec_{i}": (C,)}
        if activation == "jumprelu":
            expected[f"threshold_{i}"] = (N,)
        assert shapes == expected
        assert tuple(load_file(out / f"W_dec_{i}.safetensors")[f"W_dec_{i}"].shape) == (N, L - i, C)
    xs = [torch.randn(32, C, generator=torch.Generator().manual_seed(9 + i)) * 2 for i in range(L)]
    for theirs, ours in zip(their_formula(out, xs, activation, clt.config.k), clt.module(xs)):
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)


def test_a_topk_clt_is_refused_unless_asked(tmp_path):
    with pytest.raises(DictionaryError, match="no TopK loader"):
        export_circuit_tracer_clt(random_clt("topk"), tmp_path / "clt", scan="s")
    assert not (tmp_path / "clt").exists()
