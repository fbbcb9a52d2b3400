"""gpt.interp.forward_steps: the forward pass recomputed by hand lands on GPT.forward's logits (within 1e-5) for
every ladder rung, every architecture option and a GPT-2 imported through gpt.hf.gpt2; its stages are consistent."""
import math

import pytest
import torch

from gpt.config import GPTConfig
from gpt.hf import gpt2 as hf
from gpt.interp import InterpError, forward_steps
from gpt.interp.forward import sampling_view
from gpt.model import GPT

OPTIONS = {
    "classic": {}, "rotary": dict(pos_embedding="rotary"), "rmsnorm": dict(norm="rmsnorm"),
    "no-norm": dict(norm="none"), "relu": dict(activation="relu"), "relu2": dict(activation="relu2"),
    "gelu_tanh": dict(activation="gelu_tanh"), "qk-norm": dict(qk_norm=True), "untied": dict(tie_embeddings=False),
    "softcap": dict(logit_softcap=10.0), "no-bias": dict(bias=False),
    "all": dict(pos_embedding="rotary", norm="rmsnorm", activation="relu2", qk_norm=True, tie_embeddings=False,
                logit_softcap=10.0),
}


def random_model(cfg: GPTConfig, seed: int = 0) -> GPT:
    """Weights far from the init (std 0.3), so logits are O(1) and a 1e-5 match means something."""
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def check_all_positions(model: GPT, ids: list[int]) -> None:
    with torch.no_grad():
        want = model(torch.tensor([ids]))[0][0]  # (T, V)
    for pos in range(len(ids)):
        got = forward_steps(model, ids, pos).logits
        torch.testing.assert_close(got, want[pos].float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["bigram", "single_head", "multi_head", "gpt"])
@pytest.mark.parametrize("option", OPTIONS)
def test_logits_match_the_model(arch, option):
    cfg = GPTConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16, arch=arch, **OPTIONS[option])
    check_all_positions(random_model(cfg), [3, 1, 4, 1, 5, 9, 2, 6, 5, 3])


def test_logits_match_a_gpt2_imported_through_hf():
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=24, n_layer=2, n_head=3,
                                     layer_norm_epsilon=1e-3)
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(hf_cfg).eval()
    with torch.no_grad():
        for p in gpt2.parameters():
            p.copy_(torch.randn(p.shape) * 0.3)
    cfg = hf.config_from_gpt2(hf_cfg.to_dict())
    model = GPT(cfg).eval()
    model.load_state_dict(hf.state_dict_from_gpt2(gpt2.state_dict(), cfg))
    ids = [7, 3, 49, 0, 12, 12, 8]
    check_all_positions(model, ids)
    with torch.no_grad():  # and the same as transformers' own logits
        torch.testing.assert_close(forward_steps(model, ids).logits, gpt2(torch.tensor([ids])).logits[0, -1],
                                   atol=1e-4, rtol=1e-4)


def test_stages_are_what_they_say():
    cfg = GPTConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16)
    steps = forward_steps(random_model(cfg), [3, 1, 4, 1, 5, 9], position=3)
    assert steps.token_id == 1 and steps.position == 3
    torch.testing.assert_close(steps.embedding, steps.tok_emb + steps.pos_emb)
    block = steps.blocks[0]
    assert abs(block.norm1.normalised.mean()) < 1e-5 and abs(block.norm1.normalised.var(unbiased=False) - 1) < 1e-3
    head = block.attention.heads[1]
    assert head.keys.shape == (4, 8) and head.dots.shape == (4,)
    torch.testing.assert_close(head.scores, head.dots / math.sqrt(8))
    assert torch.isinf(head.masked[4:]).all() and torch.equal(head.masked[:4], head.scores)
    torch.testing.assert_close(head.weights.sum(), torch.tensor(1.0))
    torch.testing.assert_close(block.resid_mid, block.resid_in + block.attention.out)
    torch.testing.assert_close(block.resid_out, block.resid_mid + block.mlp.out)
    assert block.mlp.top_neurons[0][1] == pytest.approx(float(block.mlp.post.max()))
    torch.testing.assert_close(steps.blocks[1].resid_in, block.resid_out)


def test_bad_requests_are_refused_with_a_message():
    model = random_model(GPTConfig(vocab_size=23, block_size=6, n_layer=1, n_head=2, n_embd=8))
    for ids, pos, words in (([], None, "empty"), ([1] * 7, None, "longer"), ([1, 2], 2, "position"),
                            ([1, 99], None, "token ids")):
        with pytest.raises(InterpError, match=words):
            forward_steps(model, ids, pos)


def test_sampling_view_cuts_and_picks():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0])
    view = sampling_view(logits, temperature=1.0, top_k=2)
    assert view.kept.tolist() == [True, True, False, False, False] and view.pick in (0, 1)
    assert sampling_view(logits, top_p=0.5).kept.sum() == 1  # p(0) = 0.64 already holds half the mass
    assert sampling_view(logits, greedy=True, temperature=5).pick == 0
    flat, sharp = sampling_view(logits, temperature=3.0), sampling_view(logits, temperature=0.3)
    assert flat.probs.max() < sharp.probs.max()
    with pytest.raises(InterpError, match="temperature"):
        sampling_view(logits, temperature=0)
