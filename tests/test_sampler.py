"""The one sampler (gpt.generate.stream_tokens) with interventions: the KV cache is exact under position-wise
interventions (steering, clamping, zeroed heads), and the sampler gives the tokens of a plain reference loop that
recomputes the whole window every step (the Ablation page's former generate_with_ablation, kept here as the
reference)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from gpt.config import GPTConfig
from gpt.generate import crop_prompt, filter_logits, new_token_ids, stream_tokens
from gpt.interp.ablation import ablation_interventions
from gpt.interp.features.dictionary import Dictionary, DictionaryConfig, LoadedDictionary
from gpt.interp.steering import boundary_point, clamp_feature, steer_intervention
from gpt.model import GPT, Trace, all_position_wise


def make_model(**options):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=30, block_size=12, n_layer=2, n_head=2, n_embd=16, **options)).eval()


def reference_sample(model, prompt, interventions, n, temperature=1.0, top_k=None, seed=0, greedy=False):
    """The plainest sampler: every step runs the last block_size tokens from scratch through the interventions."""
    ids = list(prompt)[-model.config.block_size:]
    gen = torch.Generator().manual_seed(seed)
    new = []
    for _ in range(n):
        logits, _ = model(torch.tensor([ids[-model.config.block_size:]]), trace=Trace(set(), interventions))
        last = logits[0, -1].float()
        if greedy:
            nxt = int(last.argmax())
        else:
            nxt = int(torch.multinomial(F.softmax(filter_logits(last, temperature, top_k), -1), 1, generator=gen))
        ids.append(nxt)
        new.append(nxt)
    return new


def interventions_of(model, kind):
    if kind == "none":
        return None
    if kind == "steer":
        vector = torch.randn(16, generator=torch.Generator().manual_seed(5))
        return {boundary_point(model, 1): steer_intervention(vector, 3.0)}
    if kind == "ablate":
        return ablation_interventions(model, [(0, 1), (1, 0)])
    if kind == "clamp":
        cfg = DictionaryConfig("transcoder", "blocks.1.mlp.in", "blocks.1.mlp.out", "relu", 24, 16, 16, "ab" * 32,
                               None)
        d = Dictionary(cfg)
        with torch.no_grad():
            g = torch.Generator().manual_seed(2)
            for p in (d.W_enc, d.b_enc, d.W_dec, d.b_dec):
                p.copy_(torch.randn(p.shape, generator=g))
        return clamp_feature(LoadedDictionary("d", Path("."), cfg, d.eval().requires_grad_(False), None), 4, 5.0)
    raise ValueError(kind)


KINDS = ("none", "steer", "ablate", "clamp")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("options", [{}, {"pos_embedding": "rotary"}])
def test_cached_logits_equal_recomputed_logits_under_each_intervention(kind, options):
    """Position-wise interventions keep the cache exact: the prompt, then one token at a time through a KV cache,
    gives the logits of one full forward with the same interventions."""
    model = make_model(**options)
    interventions = interventions_of(model, kind)
    assert all_position_wise(interventions)
    ids = torch.randint(0, 30, (1, 12), generator=torch.Generator().manual_seed(1))
    full, _ = model(ids, trace=Trace(set(), interventions))
    cache = model.new_kv_cache()
    parts = [model(ids[:, :4], trace=Trace(set(), interventions), kv_cache=cache)[0]]
    for t in range(4, 12):
        parts.append(model(ids[:, t:t + 1], trace=Trace(set(), interventions), kv_cache=cache)[0])
    assert torch.allclose(torch.cat(parts, 1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_the_sampler_gives_the_reference_loops_tokens(kind):
    """Same seed and settings: the sampler (cached where exact, sliding past block_size) draws the tokens of the
    recompute-everything reference, greedy and sampled, within and past the context."""
    model = make_model()
    interventions = interventions_of(model, kind)
    for prompt, n in (([1, 2, 3], 6), ([4, 5, 6, 7, 8], 20)):  # 5 + 20 > block_size 12: the window slides
        for settings in ({"greedy": True}, {"temperature": 0.8, "seed": 3}, {"temperature": 1.0, "top_k": 5,
                                                                           "seed": 9}):
            want = reference_sample(model, prompt, interventions, n, **settings)
            assert new_token_ids(model, prompt, n, interventions=interventions, **settings) == want, settings
            assert new_token_ids(model, prompt, n, interventions=interventions, use_cache=False, **settings) == want


def test_an_unmarked_intervention_recomputes_every_step():
    """An intervention that is not position-wise (here: one that looks at the whole sequence) must not be run on
    the new token alone: the sampler recomputes the window, and gives the reference's tokens."""
    model = make_model()

    def subtract_mean_over_positions(x):  # depends on every position: a cache would see only the new one
        return x - x.mean(1, keepdim=True)
    interventions = {"blocks.0.resid_post": subtract_mean_over_positions}
    assert not all_position_wise(interventions)
    want = reference_sample(model, [1, 2, 3], interventions, 8, greedy=True)
    assert new_token_ids(model, [1, 2, 3], 8, interventions=interventions, greedy=True) == want


def test_no_interventions_is_plain_generation():
    model = make_model()
    plain = [s.token_id for s in stream_tokens(model, [1, 2], 15, temperature=0.7, seed=4)]
    assert new_token_ids(model, [1, 2], 15, interventions={}, temperature=0.7, seed=4) == plain
    assert new_token_ids(model, [1, 2], 15, interventions=None, temperature=0.7, seed=4) == plain


def test_crop_keeps_the_last_block_and_says_how_much_it_dropped():
    assert crop_prompt([1, 2, 3], 5) == ([1, 2, 3], 0)
    assert crop_prompt(list(range(10)), 4) == ([6, 7, 8, 9], 6)
    model = make_model()
    long_prompt = list(range(20))
    # the sampler crops the same way: a long prompt continues as its last block does
    assert new_token_ids(model, long_prompt, 5, greedy=True) == new_token_ids(model, long_prompt[-12:], 5,
                                                                              greedy=True)



def test_the_pages_generators_are_the_sampler():
    """Steering's generate_with and Ablation's generate_with_ablation are the sampler with their interventions."""
    from gpt.interp.ablation import generate_with_ablation
    from gpt.interp.steering import generate_with
    model = make_model()
    for kind in ("steer", "ablate"):
        interventions = interventions_of(model, kind)
        want = new_token_ids(model, [4, 5, 6], 20, interventions=interventions, temperature=0.8, seed=3)
        assert generate_with(model, [4, 5, 6], interventions, 20, temperature=0.8, seed=3) == want
    want = new_token_ids(model, [4, 5, 6], 20, interventions=interventions, temperature=0.8, seed=3)
    assert generate_with_ablation(model, [4, 5, 6], [(0, 1), (1, 0)], 20, temperature=0.8, seed=3) == want
