"""Clamping a dictionary feature (gpt.interp.steering.clamp_feature): the output site moves by exactly
(value - activation) * decoder row, the unclamped column is plain generation, and bad requests are refused."""
import math
from pathlib import Path

import pytest
import torch

from gpt.config import GPTConfig
from gpt.generate import stream_tokens
from gpt.interp.capture import InterpError, run_with_cache
from gpt.interp.features.dictionary import Dictionary, DictionaryConfig, LoadedDictionary
from gpt.interp.steering import clamp_feature, generate_clamped_side_by_side
from gpt.model import GPT


def model_and_dictionary(kind="transcoder"):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=12, n_layer=2, n_head=2, n_embd=16, block_size=16)).eval()
    site_in, site_out = ("blocks.1.mlp.in", "blocks.1.mlp.out") if kind == "transcoder" else ("blocks.1.resid_mid",) * 2
    cfg = DictionaryConfig(kind, site_in, site_out, "relu", 24, 16, 16, "ab" * 32, None)
    d = Dictionary(cfg)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in (d.W_enc, d.b_enc, d.W_dec, d.b_dec):
            p.copy_(torch.randn(p.shape, generator=g))
        d.normalise_decoder()
    return model, LoadedDictionary("d", Path("."), cfg, d.eval().requires_grad_(False), None)


IDS = [1, 5, 2, 7, 3, 3, 9, 0]


@pytest.mark.parametrize("value", [0.0, 2.5])
def test_transcoder_clamp_moves_the_mlp_output_by_exactly_the_change(value):
    model, dic = model_and_dictionary()
    plain = run_with_cache(model, IDS, {"blocks.1.mlp.in", "blocks.1.mlp.out"})
    feature = int(dic.module.encode(plain["blocks.1.mlp.in"][0]).sum(0).argmax())
    act = dic.module.encode(plain["blocks.1.mlp.in"][0])[:, feature]
    clamped = run_with_cache(model, IDS, {"blocks.1.mlp.out"}, clamp_feature(dic, feature, value))
    expected = plain["blocks.1.mlp.out"][0] + (value - act)[:, None] * dic.module.W_dec[feature]
    torch.testing.assert_close(clamped["blocks.1.mlp.out"][0], expected, atol=1e-5, rtol=0)


def test_sae_clamp_sets_the_site_and_off_changes_nothing_where_it_is_silent():
    model, dic = model_and_dictionary("sae")
    plain = run_with_cache(model, IDS, {"blocks.1.resid_mid"})
    acts = dic.module.encode(plain["blocks.1.resid_mid"][0])
    silent = int((acts > 0).sum(0).argmin())
    off = run_with_cache(model, IDS, {"blocks.1.resid_mid"}, clamp_feature(dic, silent, 0.0))
    where_silent = acts[:, silent] == 0
    torch.testing.assert_close(off["blocks.1.resid_mid"][0][where_silent], plain["blocks.1.resid_mid"][0][where_silent])


def test_unclamped_column_is_plain_generation_and_a_strong_clamp_changes_the_text():
    model, dic = model_and_dictionary()
    plain = [s.token_id for s in stream_tokens(model, IDS, 20, temperature=0.8, seed=3, alternatives=0)]
    columns = generate_clamped_side_by_side(model, IDS, dic, 4, [None, 40.0], max_new_tokens=20, temperature=0.8,
                                            seed=3)
    assert columns[0] == plain
    assert columns[1] != plain


def test_bad_clamps_are_refused():
    model, dic = model_and_dictionary()
    with pytest.raises(InterpError, match="does not exist"):
        clamp_feature(dic, 99, 0.0)
    with pytest.raises(InterpError, match="finite"):
        clamp_feature(dic, 1, math.inf)
    with pytest.raises(InterpError, match="at least one"):
        generate_clamped_side_by_side(model, IDS, dic, 1, [])
