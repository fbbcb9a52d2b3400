"""Token and position embeddings: the tables, a PCA projection, cosine similarities and nearest neighbours."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpt.interp.capture import InterpError
from gpt.model import GPT


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
    """Project rows of x (N, D) onto their top-k principal components (signs made deterministic: each component's
    largest loading is positive). For many more rows than columns (a 50,257-token vocabulary) the components come
    from the D x D covariance (one N x D x D product, ~0.3 s for GPT-2 small) instead of an SVD of the whole table."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InterpError("PCA needs at least two vectors")
    k = max(1, min(k, x.shape[0], x.shape[1]))
    if x.shape[0] > 4 * x.shape[1]:
        centred = (x - x.mean(0, keepdims=True)).astype(np.float32)
        eigenvalues, vectors = np.linalg.eigh((centred.T @ centred).astype(np.float64))
        order = np.argsort(eigenvalues)[::-1]
        variances, vt = np.clip(eigenvalues[order], 0, None), vectors[:, order].T
    else:
        centred = x.astype(np.float64) - x.astype(np.float64).mean(0, keepdims=True)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        variances = s ** 2
    signs = np.sign(vt[:k, np.argmax(np.abs(vt[:k]), axis=1)].diagonal())  # largest loading positive
    signs[signs == 0] = 1
    components = vt[:k] * signs[:, None]
    total = variances.sum()
    explained = variances[:k] / total if total > 0 else np.zeros(k)
    return Projection(centred @ components.T.astype(centred.dtype), explained)


def sample_ids(vocab_size: int, n: int, always=()) -> list[int]:
    """At most n token ids spread evenly over the vocabulary, plus the `always` ones (e.g. a chosen token and its
    neighbours), sorted: the points a scatter of a big vocabulary draws."""
    spread = np.linspace(0, vocab_size - 1, num=min(n, vocab_size)).round().astype(int).tolist()
    return sorted(set(spread) | {int(i) for i in always if 0 <= int(i) < vocab_size})


def search_tokens(labels: list[str], query: str, limit: int = 200) -> list[int]:
    """Ids whose label is the query, then those that start with it, then those that contain it (case-blind, so
    "the" finds "The" too), at most `limit`."""
    if not query:
        return []
    q = query.lower()
    exact, prefix, inside = [], [], []
    for i, label in enumerate(labels):
        low = label.lower()
        if label == query:
            exact.append(i)
        elif low.startswith(q):
            prefix.append(i)
        elif q in low:
            inside.append(i)
    return (exact + prefix + inside)[:limit]


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, N) cosine similarity between rows (zero rows give 0)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return unit @ unit.T


def nearest_neighbours(x: np.ndarray, index: int, k: int = 10, norms: np.ndarray | None = None
                       ) -> list[tuple[int, float]]:
    """The k rows of x most cosine-similar to row `index` (itself excluded), as (row, similarity). A float32 table
    stays float32 (GPT-2's 50,257 x 768 would be a 300 MB float64 copy); `norms` may be passed precomputed."""
    if not 0 <= index < len(x):
        raise InterpError(f"row {index} is outside 0..{len(x) - 1}")
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float64)
    norms = np.linalg.norm(x, axis=1) if norms is None else norms
    sims = (x @ x[index]).astype(np.float64) / np.maximum(norms * norms[index], 1e-12)
    sims[index] = -np.inf
    order = np.argsort(-sims, kind="stable")[:max(0, min(k, len(x) - 1))]
    return [(int(i), float(sims[i])) for i in order]
