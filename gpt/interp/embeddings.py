"""Token and position embeddings: the tables, a PCA projection, cosine similarities and nearest neighbours."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model import GPT
from .capture import InterpError


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
        raise InterpError("PCA needs at least two vectors")
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
        raise InterpError(f"row {index} is outside 0..{len(x) - 1}")
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    sims = (x @ x[index]) / np.maximum(norms * norms[index], 1e-12)
    sims[index] = -np.inf
    order = np.argsort(-sims, kind="stable")[:max(0, min(k, len(x) - 1))]
    return [(int(i), float(sims[i])) for i in order]
