"""Pure computations behind the explorer's views: attention traces, per-head scores, embedding projections,
nearest neighbours and next-token distributions. Tensors in, NumPy arrays out; nothing here draws or caches.

Every function takes an eval-mode model and leaves it untouched: activations are captured per call with a
`gpt.model.Trace`, never with hooks, so a model shared between app sessions stays safe.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .model import GPT, Trace


class InspectError(ValueError):
    """A request the model cannot answer (no attention in a bigram, a prompt longer than block_size...)."""


def _check_ids(model: GPT, ids: list[int]) -> torch.Tensor:
    if len(ids) == 0:
        raise InspectError("the prompt is empty: type at least one character")
    if len(ids) > model.config.block_size:
        raise InspectError(f"the prompt has {len(ids)} tokens but this model sees at most "
                           f"{model.config.block_size} (block_size); shorten it")
    return torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)


# ---- attention ----
@dataclass
class AttentionTrace:
    patterns: np.ndarray   # (n_layer, n_head, T, T) attention probabilities; row = query, column = key
    logits: np.ndarray     # (T, vocab) next-token logits at every position


@torch.inference_mode()
def attention_trace(model: GPT, ids: list[int]) -> AttentionTrace:
    """Run the prompt once through the inspection path and collect every layer's attention pattern."""
    if not model.config.has_attention:
        raise InspectError("a bigram model has no attention: each prediction looks only at the current token")
    idx = _check_ids(model, ids)
    names = {f"blocks.{i}.attn.pattern" for i in range(model.config.n_layer)}
    trace = Trace(names=names)
    logits, _ = model(idx, trace=trace)
    patterns = torch.stack([trace.acts[f"blocks.{i}.attn.pattern"][0].float()
                            for i in range(model.config.n_layer)])  # (L, nh, T, T)
    return AttentionTrace(patterns.cpu().numpy(), logits[0].float().cpu().numpy())


def head_scores(patterns: np.ndarray) -> dict[str, np.ndarray]:
    """Per-head summaries of (L, H, T, T) patterns, each (L, H), averaged over query positions:

    entropy: bits of the attention row (0 = looks at one token; high = spread out), over queries 1..T-1
    (query 0 can only see itself); prev_token: mean weight on the token just before the query;
    first_token: mean weight on position 0 (a common "resting" place); self: mean weight on the query itself.
    """
    L, H, T, _ = patterns.shape
    if T < 2:
        zeros = np.zeros((L, H))
        return {"entropy": zeros, "prev_token": zeros.copy(), "first_token": zeros.copy(),
                "self": np.ones((L, H))}
    rows = patterns[:, :, 1:, :]  # (L, H, T-1, T): queries that have a choice
    p = np.clip(rows, 1e-12, 1.0)
    entropy = -(rows * np.log2(p)).sum(-1).mean(-1)
    q = np.arange(1, T)
    prev = patterns[:, :, q, q - 1].mean(-1)
    first = patterns[:, :, 1:, 0].mean(-1)
    self_score = patterns[:, :, q, q].mean(-1)
    return {"entropy": entropy, "prev_token": prev, "first_token": first, "self": self_score}


def head_table(patterns: np.ndarray) -> list[dict]:
    """One row per head (layer, head, and the head_scores), for a table."""
    scores = head_scores(patterns)
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


# ---- next token ----
@torch.inference_mode()
def next_token_distribution(model: GPT, ids: list[int], temperature: float = 1.0) -> np.ndarray:
    """Probabilities (vocab,) of the token after `ids` (the last block_size tokens are used)."""
    if len(ids) == 0:
        raise InspectError("the prompt is empty: type at least one character")
    if not temperature > 0:
        raise InspectError(f"temperature must be > 0, got {temperature!r}")
    idx = _check_ids(model, list(ids)[-model.config.block_size:])
    logits, _ = model(idx)
    return F.softmax(logits[0, -1].float() / temperature, dim=-1).cpu().numpy()


def top_k(probs: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k most likely (id, prob) pairs, best first."""
    k = max(1, min(int(k), probs.shape[-1]))
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), float(probs[i])) for i in order]


# ---- embeddings ----
def token_embeddings(model: GPT) -> np.ndarray:
    """(vocab, n_embd) token embedding table."""
    return model.wte.weight.detach().float().cpu().numpy()


def position_embeddings(model: GPT) -> np.ndarray | None:
    """(block_size, n_embd) learned positions, or None for a bigram (it has none)."""
    return None if model.wpe is None else model.wpe.weight.detach().float().cpu().numpy()


@dataclass
class Projection:
    points: np.ndarray      # (N, k) coordinates on the principal components
    explained: np.ndarray   # (k,) fraction of the variance each component explains


def pca(x: np.ndarray, k: int = 2) -> Projection:
    """Project rows of x (N, D) onto their top-k principal components (centred SVD; signs made deterministic)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InspectError("PCA needs at least two vectors")
    k = max(1, min(k, x.shape[0], x.shape[1]))
    centred = x - x.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[:k, np.argmax(np.abs(vt[:k]), axis=1)].diagonal())  # largest loading positive
    signs[signs == 0] = 1
    components = vt[:k] * signs[:, None]
    total = (s ** 2).sum()
    explained = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
    return Projection(centred @ components.T, explained)


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, N) cosine similarity between rows (zero rows give 0)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return unit @ unit.T


def nearest_neighbours(x: np.ndarray, index: int, k: int = 10) -> list[tuple[int, float]]:
    """The k rows of x most cosine-similar to row `index` (itself excluded), as (row, similarity)."""
    if not 0 <= index < len(x):
        raise InspectError(f"row {index} is outside 0..{len(x) - 1}")
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    sims = (x @ x[index]) / np.maximum(norms * norms[index], 1e-12)
    sims[index] = -np.inf
    order = np.argsort(-sims, kind="stable")[:max(0, min(k, len(x) - 1))]
    return [(int(i), float(sims[i])) for i in order]
