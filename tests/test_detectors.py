import pytest
import torch

from gpt.config import GPTConfig
from gpt.interp.detectors import (
    DETECTORS,
    attention_patterns,
    describe_heads,
    detector_scores,
    head_scores,
    name_heads,
    repeated_random_tokens,
)
from gpt.model import GPT

HALF = 20


def probe():
    # 20 distinct tokens, then the same 20 again: no adjacent or distance-2 repeats anywhere
    first = torch.randperm(50, generator=torch.Generator().manual_seed(0))[:HALF]
    return torch.cat([first, first])[None]  # (1, 40)


def pure_pattern(kind: str, T: int) -> torch.Tensor:
    """A hand-built (T, T) causal attention pattern that does exactly one thing."""
    att = torch.zeros(T, T)
    for i in range(T):
        if kind == "previous_token":
            att[i, max(i - 1, 0)] = 1
        elif kind == "first_token":
            att[i, 0] = 1
        elif kind in ("duplicate_token", "induction") and i >= HALF:
            att[i, i - HALF + (kind == "induction")] = 1
        else:
            att[i, i] = 1  # nothing to find yet: attend to self
    return att


@pytest.mark.parametrize("kind", DETECTORS)
def test_pure_head_scores_one_on_its_detector_and_zero_elsewhere(kind):
    ids = probe()
    T = ids.size(1)
    patterns = pure_pattern(kind, T)[None, None, None]  # (B=1, L=1, H=1, T, T)
    scores = detector_scores(patterns, ids)[:, 0, 0]
    for d, name in enumerate(DETECTORS):
        if name == kind:
            assert scores[d] == pytest.approx(1.0)
        else:
            assert scores[d] == pytest.approx(0.0, abs=0.06), (name, scores)


def test_uniform_attention_scores_low_everywhere():
    ids = probe()
    T = ids.size(1)
    uniform = torch.tril(torch.ones(T, T))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    scores = detector_scores(uniform[None, None, None], ids)
    assert (scores < 0.2).all()


def test_repeated_random_tokens_shape_and_no_adjacent_repeats():
    ids = repeated_random_tokens(5, 30, batch=6, seed=3)
    assert ids.shape == (6, 60)
    assert torch.equal(ids[:, :30], ids[:, 30:])
    assert (ids[:, 1:] != ids[:, :-1]).all()
    assert (ids >= 0).all() and (ids < 5).all()
    assert torch.equal(ids, repeated_random_tokens(5, 30, batch=6, seed=3))


def test_head_scores_on_a_model_have_layer_by_head_shape_and_bounds():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, block_size=24, n_layer=2, n_head=3, n_embd=24)).eval()
    result = head_scores(model)
    assert result.scores.shape == (4, 2, 3)
    assert (result.scores >= 0).all() and (result.scores <= 1 + 1e-5).all()
    patterns = attention_patterns(model, torch.randint(0, 30, (2, 10)))
    assert patterns.shape == (2, 2, 3, 10, 10)
    assert torch.allclose(patterns.sum(-1), torch.ones(2, 2, 3, 10), atol=1e-5)


def test_naming_heads_and_bad_inputs():
    scores = torch.zeros(4, 2, 2)
    scores[3, 1, 0] = 0.9
    scores[0, 0, 1] = 0.5
    assert name_heads(scores) == [(1, 0, "induction", pytest.approx(0.9)), (0, 1, "previous_token", 0.5)]
    assert describe_heads(scores)[0] == "L1H0 is an induction head (0.90)"
    model = GPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=8)).eval()
    with pytest.raises(ValueError, match="longer than"):
        attention_patterns(model, torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        attention_patterns(model, torch.full((1, 4), 30))
    with pytest.raises(ValueError, match="bigram"):
        attention_patterns(GPT(GPTConfig(vocab_size=30, arch="bigram")), torch.zeros(1, 4, dtype=torch.long))
