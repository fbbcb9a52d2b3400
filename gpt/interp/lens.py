"""Logit lens (nostalgebraist 2020): read the residual stream after each layer as if it were the last.

At every layer boundary the residual stream goes through the model's own final LayerNorm and unembedding;
the top token and its probability show what the model "would say" at that depth. The last row is exactly
the model's prediction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from gpt.interp.capture import InterpError, check_ids, residual_boundaries, run_with_cache
from gpt.model import GPT

residual_names = residual_boundaries  # (boundary label, capture point) at every boundary: gpt.interp.capture


@dataclass
class LensResult:
    labels: list[str]         # one per residual boundary: "embeddings", "after block 0", ... (boundary_label)
    top_ids: torch.Tensor     # (L+1, T) most likely next token at each depth and position
    top_probs: torch.Tensor   # (L+1, T) its probability
    target_probs: torch.Tensor | None  # (L+1, T) probability of the token that actually follows (None at T-1)
    probs: torch.Tensor       # (L+1, T, V) full distributions (small models: fine to keep)


@torch.no_grad()
def logit_lens(model: GPT, ids, interventions=None) -> LensResult:
    """ids (T,) or (1, T) -> the lens over every layer boundary and position."""
    ids = check_ids(model, ids)
    if ids.size(0) != 1:
        raise InterpError("the logit lens takes one sequence at a time")
    points = residual_names(model)
    cache = run_with_cache(model, ids, {name for _, name in points}, interventions)
    resid = torch.stack([cache[name][0] for _, name in points])  # (L+1, T, C)
    # the model's own final norm and unembedding: the model run from after its last block (nothing is mutated)
    logits = model.forward_from(len(model.blocks), resid.to(model.lm_head.weight.dtype))[0].float()  # (L+1, T, V)
    probs = F.softmax(logits, dim=-1)
    top_probs, top_ids = probs.max(-1)
    T = ids.size(1)
    target = torch.full((len(points), T), float("nan"))
    if T > 1:
        next_ids = ids[0, 1:]  # (T-1,)
        target[:, :-1] = probs[:, torch.arange(T - 1), next_ids]
    return LensResult([label for label, _ in points], top_ids, top_probs, target, probs)


@torch.no_grad()
def lens_at(model: GPT, ids, position: int) -> tuple[list[str], torch.Tensor]:
    """The lens at one position only: (boundary labels, (L+1, V) probabilities). What logit_lens(...).probs[:,
    position] holds, without unembedding every position (GPT-2 small: 13 x T x 50,257 floats, 330 MB at T=127)."""
    ids = check_ids(model, ids)
    if not 0 <= position < ids.size(1):
        raise InterpError(f"position {position} is outside 0..{ids.size(1) - 1}")
    points = residual_names(model)
    cache = run_with_cache(model, ids[:, :position + 1], {name for _, name in points})
    resid = torch.stack([cache[name][0, position] for _, name in points])  # (L+1, C)
    logits = model.forward_from(len(model.blocks), resid[:, None].to(model.lm_head.weight.dtype))[0][:, 0].float()
    return [label for label, _ in points], F.softmax(logits, dim=-1)


def lens_column(result: LensResult, position: int, k: int = 5) -> list[list[tuple[int, float]]]:
    """For one position: per layer boundary, the top-k (token id, probability)."""
    if not 0 <= position < result.top_ids.size(1):
        raise InterpError(f"position {position} is outside 0..{result.top_ids.size(1) - 1}")
    top = torch.topk(result.probs[:, position], min(k, result.probs.size(-1)), dim=-1)
    return [list(zip(i.tolist(), p.tolist())) for i, p in zip(top.indices, top.values)]
