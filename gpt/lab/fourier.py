"""The Fourier basis of Z_p and how much of a weight matrix lives at each frequency (Nanda et al. 2023).

A model that has grokked modular addition represents each number a through cos(w_k a) and sin(w_k a) for a
handful of key frequencies w_k = 2 pi k / p; its embedding matrix, written in the Fourier basis, is sparse:
almost all of its norm sits on those few k. At random initialisation the norm is spread evenly over all
(p - 1) / 2 frequencies, so "the top 6 frequencies hold 70% of the norm" is a clear sign of the algorithm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def fourier_basis(p: int) -> tuple[torch.Tensor, list[str]]:
    """(p, p) orthonormal basis of functions on {0..p-1}, one per row: the constant, then cos k and sin k for
    k = 1..(p-1)//2; and a name per row. Rows are unit vectors, so norms in this basis equal norms in the
    standard one (Parseval)."""
    if not isinstance(p, int) or p < 3:
        raise ValueError(f"the Fourier basis needs a modulus p >= 3 (got {p!r})")
    a = torch.arange(p, dtype=torch.float64)
    rows, names = [torch.ones(p, dtype=torch.float64)], ["const"]
    for k in range(1, (p - 1) // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * a / p), torch.sin(2 * math.pi * k * a / p)]
        names += [f"cos {k}", f"sin {k}"]
    if p % 2 == 0:  # the Nyquist row (-1)^a exists only for an even p
        rows.append(torch.cos(math.pi * a))
        names.append(f"cos {p // 2}")
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True), names


def frequency_norms(embedding: torch.Tensor, p: int) -> torch.Tensor:
    """embedding (>= p, d): the first p rows are the numbers 0..p-1 -> ((p-1)//2,) norm of the embedding at each
    frequency k = 1..(p-1)//2 (the cos and sin components together; the constant is left out: it carries no
    information about which number it is)."""
    emb = torch.as_tensor(embedding, dtype=torch.float64)
    if emb.dim() != 2 or emb.size(0) < p:
        raise ValueError(f"need an embedding with at least p={p} rows (one per number), got shape {tuple(emb.shape)}")
    basis, _ = fourier_basis(p)
    coeffs = basis @ emb[:p]  # (p, d): row j = the embedding's component along basis function j
    n_freq = (p - 1) // 2
    cos_sin = coeffs[1:1 + 2 * n_freq].view(n_freq, 2, -1)  # (K, 2, d)
    return cos_sin.pow(2).sum((1, 2)).sqrt().float()  # (K,)


@dataclass
class FrequencyReport:
    norms: list[float]          # norm at frequency k = 1..K (index k-1)
    key_frequencies: list[int]  # the fewest frequencies (at most max_keys) whose squared norm reaches `target`
    key_share: float            # their share of the total squared norm (energy), in [0, 1]
    top6_share: float           # the share of the 6 strongest frequencies (the auto-check's number)


def frequency_report(norms, target: float = 0.7, max_keys: int = 6) -> FrequencyReport:
    """Name the key frequencies: strongest first, add frequencies until they hold `target` of the energy
    (sum of squared norms, so shares add up to 1 over all frequencies), at most max_keys."""
    norms = torch.as_tensor(norms, dtype=torch.float64).flatten()
    energy = norms.pow(2)
    total = float(energy.sum())
    if total <= 0:
        return FrequencyReport(norms.tolist(), [], 0.0, 0.0)
    order = torch.argsort(energy, descending=True).tolist()
    shares = (energy / total).tolist()
    keys, held = [], 0.0
    for i in order[:max_keys]:
        keys.append(i + 1)
        held += shares[i]
        if held >= target:
            break
    top6 = sum(shares[i] for i in order[:6])
    return FrequencyReport(norms.tolist(), keys, held, top6)
