"""GPT.forward_from: the model run from a residual point onward is GPT.forward's own tail, through the same capture
points (ln_f.out and logits included), for every ladder rung and architecture option."""
from __future__ import annotations

import pytest
import torch

from gpt.config import GPTConfig
from gpt.model import GPT, Trace, capture_names

MODERN = dict(pos_embedding="rotary", norm="rmsnorm", qk_norm=True, tie_embeddings=False, logit_softcap=5.0)


def make(arch="gpt", **options):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=30, block_size=10, n_layer=3, n_head=2, n_embd=16, arch=arch, **options)).eval()


def embeddings(model, ids):
    trace = Trace({"embed.tok", "embed.pos"})
    model(ids, trace=trace)
    pos = trace.acts.get("embed.pos", 0)
    return trace.acts["embed.tok"] + pos


@pytest.mark.parametrize("arch,options", [("gpt", {}), ("multi_head", {}), ("single_head", {}), ("gpt", MODERN),
                                          ("bigram", {})])
def test_running_from_the_embeddings_is_forward_with_the_same_captures(arch, options):
    model = make(arch, **options)
    ids = torch.randint(0, 30, (2, 10), generator=torch.Generator().manual_seed(1))
    full_trace, from_trace = Trace(), Trace()
    logits, loss = model(ids, targets=ids, trace=full_trace)
    logits_from, loss_from = model.forward_from(0, embeddings(model, ids), from_trace, targets=ids)
    assert torch.allclose(logits_from, logits, atol=1e-6) and torch.allclose(loss_from, loss, atol=1e-6)
    names = [n for n in capture_names(model.config) if not n.startswith("embed.")]
    assert sorted(from_trace.acts) == sorted(names)  # ln_f.out and logits included
    for name in names:
        assert torch.allclose(from_trace.acts[name], full_trace.acts[name], atol=1e-6), name


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_running_from_a_middle_boundary_gives_the_rest_of_forward(layer):
    model = make()
    ids = torch.randint(0, 30, (1, 10), generator=torch.Generator().manual_seed(2))
    full = Trace()
    logits, _ = model(ids, trace=full)
    resid = full.acts[f"blocks.{layer}.resid_pre"] if layer < 3 else full.acts["blocks.2.resid_post"]
    part = Trace()
    out, _ = model.forward_from(layer, resid, part)
    assert torch.allclose(out, logits, atol=1e-5)
    assert not any(name.startswith(f"blocks.{i}.") for name in part.acts for i in range(layer))
    assert torch.allclose(part.acts["ln_f.out"], full.acts["ln_f.out"], atol=1e-5)
    # interventions apply there as in a full forward (block 2 runs from layers 1 and 2)
    zero = {"blocks.2.attn.z": lambda z: torch.zeros_like(z)}
    assert layer == 3 or torch.allclose(model.forward_from(layer, resid, Trace(set(), zero))[0],
                          model(ids, trace=Trace(set(), zero))[0], atol=1e-5)
    # last_only: the last position's logits, traced as (B, 1, ...)
    last = Trace({"logits", "ln_f.out"})
    out_last, _ = model.forward_from(layer, resid, last, last_only=True)
    assert out_last.shape == (1, 1, 30) and torch.allclose(out_last[:, 0], logits[:, -1], atol=1e-5)
    assert last.acts["ln_f.out"].shape == (1, 1, 16)


def test_bad_start_points_are_refused():
    model = make()
    x = torch.zeros(1, 3, 16)
    with pytest.raises(ValueError, match="not a residual boundary"):
        model.forward_from(4, x)
    with pytest.raises(ValueError, match="start at layer 0"):
        model.forward_from(1, x, kv_cache=model.new_kv_cache())
