"""One definition each: the strongest head (one rule per kind of quantity) and the induction score
(TransformerLens' induction pattern: the second copy's attention to the token after the earlier occurrence)."""
from __future__ import annotations

import pytest
import torch

from gpt.interp.attribution import Attribution
from gpt.interp.detectors import (
    DETECTORS,
    InterpError,
    detector_grid,
    detector_scores,
    induction_scores,
    ranked_heads,
    repeated_random_tokens,
    strongest_head,
)


def test_a_score_is_strongest_by_value_a_signed_effect_by_size():
    grid = torch.tensor([[0.2, -0.9], [0.5, 0.1]])
    assert strongest_head(grid) == (1, 0, pytest.approx(0.5))
    assert strongest_head(grid, signed=True) == (0, 1, pytest.approx(-0.9))  # the sign is kept
    assert [h[:2] for h in ranked_heads(grid, signed=True)] == [(0, 1), (1, 0), (0, 0), (1, 1)]
    assert strongest_head(torch.zeros(2, 2)) == (0, 0, 0.0)  # ties: the earlier layer, the lower head
    with pytest.raises(InterpError, match="grid"):
        strongest_head(torch.zeros(3))
    with pytest.raises(InterpError, match="unknown detector"):
        detector_grid(torch.zeros(4, 1, 1), "copying")


def test_attributions_top_heads_follow_the_signed_rule():
    heads = torch.tensor([[0.3, -1.2], [0.8, 0.0]])
    result = Attribution({}, 0.0, 0, 0, None, 0.0, heads=heads)
    assert [name for name, _ in result.top_heads(3)] == ["L0H1", "L1H0", "L0H0"]
    assert result.top_heads(1)[0][1] == pytest.approx(-1.2)


def test_the_induction_score_is_the_stripe_of_the_second_copy():
    """Against TransformerLens' tutorial reading: the diagonal at offset 1 - n of each (2n, 2n) pattern, its second
    copy's n entries, averaged."""
    n = 7
    ids = repeated_random_tokens(20, n, batch=3, seed=1)  # (3, 14)
    patterns = torch.softmax(torch.randn(3, 2, 2, 2 * n, 2 * n, generator=torch.Generator().manual_seed(0)), -1)
    patterns = patterns * torch.tril(torch.ones(2 * n, 2 * n))
    patterns = patterns / patterns.sum(-1, keepdim=True)
    stripe = patterns.diagonal(offset=1 - n, dim1=-2, dim2=-1)[..., 1:]  # (3, 2, 2, n): queries n..2n-1
    assert torch.allclose(induction_scores(patterns, ids), stripe.mean((0, 3)), atol=1e-6)
    assert torch.allclose(detector_scores(patterns, ids)[DETECTORS.index("induction")], stripe.mean((0, 3)),
                          atol=1e-6)
    # a sequence that is not a repeat has no second copy to score
    assert torch.equal(induction_scores(patterns, torch.arange(2 * n).expand(3, -1)), torch.zeros(2, 2))
