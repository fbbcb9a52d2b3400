"""Attention as the pages show it: every layer's pattern for a prompt, per-head summaries, pooled thumbnails."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gpt.interp.capture import attention_names, require_attention, run_with_cache
from gpt.interp.detectors import DETECTORS, detector_scores
from gpt.model import GPT


@dataclass
class AttentionTrace:
    patterns: np.ndarray   # (n_layer, n_head, T, T) attention probabilities; row = query, column = key
    logits: np.ndarray     # (T, vocab) next-token logits at every position


@torch.inference_mode()
def attention_trace(model: GPT, ids: list[int]) -> AttentionTrace:
    """Run the prompt once through the inspection path and collect every layer's attention pattern."""
    require_attention(model)
    cache = run_with_cache(model, ids, attention_names(model))
    return AttentionTrace(cache.attention()[0].cpu().numpy(), cache.logits[0].float().cpu().numpy())


def head_summary(patterns: np.ndarray) -> dict[str, np.ndarray]:
    """Per-head summaries of (L, H, T, T) patterns, each (L, H), averaged over query positions:

    entropy: bits of the attention row (0 = looks at one token; high = spread out), over queries 1..T-1
    (query 0 can only see itself); self: mean weight on the query itself; prev_token and first_token: the
    previous-token and first-token detector scores (gpt.interp.detectors: one definition of each)."""
    L, H, T, _ = patterns.shape
    if T < 2:
        zeros = np.zeros((L, H))
        return {"entropy": zeros, "prev_token": zeros.copy(), "first_token": zeros.copy(),
                "self": np.ones((L, H))}
    rows = patterns[:, :, 1:, :]  # (L, H, T-1, T): queries that have a choice
    p = np.clip(rows, 1e-12, 1.0)
    entropy = -(rows * np.log2(p)).sum(-1).mean(-1)
    q = np.arange(1, T)
    self_score = patterns[:, :, q, q].mean(-1)
    # detector scores need token ids only for duplicate/induction; positional ones ignore them
    detected = detector_scores(torch.as_tensor(patterns, dtype=torch.float32)[None], torch.arange(T)[None])
    return {"entropy": entropy, "prev_token": detected[DETECTORS.index("previous_token")].numpy(),
            "first_token": detected[DETECTORS.index("first_token")].numpy(), "self": self_score}


def head_table(patterns: np.ndarray) -> list[dict]:
    """One row per head (layer, head, and the head_summary), for a table."""
    scores = head_summary(patterns)
    L, H = patterns.shape[:2]
    return [{"layer": layer, "head": head, **{k: float(v[layer, head]) for k, v in scores.items()}}
            for layer in range(L) for head in range(H)]


def pool_pattern(pattern: np.ndarray, size: int) -> np.ndarray:
    """Average-pool the last two axes of (..., T, T) down to at most (size, size) for overview thumbnails.

    Bins are as even as possible; with T <= size the pattern is returned unchanged."""
    T = pattern.shape[-1]
    if T <= size:
        return pattern
    edges = np.linspace(0, T, size + 1).round().astype(int)
    rows = np.add.reduceat(pattern, edges[:-1], axis=-2) / np.diff(edges)[:, None]
    return np.add.reduceat(rows, edges[:-1], axis=-1) / np.diff(edges)
