"""Feature cards (in the spirit of Neuronpedia's feature pages), computed once per dictionary and text.

* `scan_features(model, dictionary, seq)`: one pass over seq (the validation text) in consecutive non-overlapping
  block_size windows, fp32, as evaluation reads it: per feature the share of tokens it fires on, its TOP_K largest
  activations and their positions, samples at evenly spaced quantiles of its non-zero activations (the typical,
  weaker firings, not only the top), a histogram of its activation values, and its mean activation on each token
  of the vocabulary (for "which features fire most on this token"). `cached_scan` keeps it in the dictionary folder.
* `feature_logit_effect`: W_dec[feature] @ W_U^T, the tokens its decoder direction promotes and suppresses through
  the unembedding (direct path, ignoring the final norm's scale and later layers).
* `features_at(model, dictionaries, ids, position)`: the active features of each dictionary at one token.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gpt.evaluate import consecutive_windows
from gpt.interp.features.dictionary import LoadedDictionary
from gpt.interp.scan_cache import cached_tensors, scan_file
from gpt.model import GPT, Trace

TOP_K = 24            # top contexts kept per feature
QUANTILES = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])  # of each feature's non-zero activations
HIST_BINS = 20        # activation histogram bins over [0, the feature's max]
MAX_TOKEN_TABLE = 16_000_000  # n_features x vocab entries beyond which the per-token table is not kept


@dataclass
class FeatureScan:
    n_tokens: int
    density: torch.Tensor            # (n,) share of tokens with the feature active
    top_values: torch.Tensor         # (n, TOP_K) largest first; 0 where it fired fewer times
    top_positions: torch.Tensor      # (n, TOP_K) positions in seq (-1: none)
    quantile_values: torch.Tensor    # (n, Q) activation at each quantile of its non-zero activations (descending)
    quantile_positions: torch.Tensor  # (n, Q)
    hist: torch.Tensor               # (n, HIST_BINS) counts over [0, top_values[:, 0]]
    token_means: torch.Tensor | None  # (n, vocab) mean activation over every occurrence of each token (or None)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {k: v.contiguous() for k, v in self.__dict__.items() if isinstance(v, torch.Tensor)}
        out["n_tokens"] = torch.tensor(self.n_tokens)
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> FeatureScan:
        return cls(int(t["n_tokens"]), t["density"], t["top_values"], t["top_positions"], t["quantile_values"],
                   t["quantile_positions"], t["hist"], t.get("token_means"))

    def features_for_token(self, token_id: int, top: int = 10) -> list[tuple[int, float]]:
        """The features with the highest mean activation over every occurrence of token_id: [(feature, mean)]."""
        if self.token_means is None:
            return []
        col = self.token_means[:, token_id]
        best = col.topk(min(top, col.numel()))
        return [(int(i), float(v)) for v, i in zip(best.values, best.indices) if v > 0]


@torch.no_grad()
def sparse_activations_of(model: GPT, dictionaries: list, seq: torch.Tensor, progress=None
                          ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """Every non-zero activation of each dictionary over seq (1-D token ids), read in consecutive non-overlapping
    block_size windows (gpt.evaluate.consecutive_windows: every token once, the tail included), fp32: per dictionary (positions in seq, features, values, tokens
    read). One forward pass serves every dictionary. progress(fraction of tokens done) is called after every batch
    of windows (it may raise to stop)."""
    seq = torch.as_tensor(seq, dtype=torch.long).flatten()
    device = next(model.parameters()).device
    sites = {d.config.input for d in dictionaries}
    found = [([], [], []) for _ in dictionaries]
    offset = 0
    for x, _ in consecutive_windows(seq, model.config.block_size, targets=False):  # every token, the tail too
        trace = Trace(sites)
        model(x.to(device), trace=trace)
        for d, (feats, poss, vals) in zip(dictionaries, found):
            cfg = d.config
            f = d.encode(trace.acts[cfg.input].float().reshape(-1, cfg.d_in)).cpu()  # (B*T, n)
            tok_idx, feat_idx = f.nonzero(as_tuple=True)
            feats.append(feat_idx)
            poss.append(tok_idx + offset)
            vals.append(f[tok_idx, feat_idx])
        offset += x.numel()
        if progress is not None:
            progress(offset / max(1, len(seq)))
    if offset == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return [(empty, empty, torch.zeros(0), 0) for _ in dictionaries]
    return [(torch.cat(poss), torch.cat(feats), torch.cat(vals), offset) for feats, poss, vals in found]


def sparse_activations(model: GPT, dictionary, seq: torch.Tensor, progress=None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """sparse_activations_of for one dictionary: (positions in seq, features, values, tokens read)."""
    return sparse_activations_of(model, [dictionary], seq, progress)[0]


@torch.no_grad()
def scan_features(model: GPT, dictionary, seq: torch.Tensor, vocab_size: int | None = None,
                  progress=None) -> FeatureScan:
    """The module docstring's per-feature statistics over seq (1-D token ids). progress(fraction of tokens done) is
    called after every batch of windows (a page's progress bar; it may raise to stop the scan)."""
    cfg = dictionary.config
    seq = torch.as_tensor(seq, dtype=torch.long).flatten()
    P, F_, V, offset = sparse_activations(model, dictionary, seq, progress)
    n, n_tokens = cfg.n_features, offset
    counts = torch.bincount(F_, minlength=n)
    # sort by feature, then activation descending: each feature's firings become one contiguous run
    order = V.argsort(descending=True)
    order = order[F_[order].argsort(stable=True)]
    F_, P, V = F_[order], P[order], V[order]
    starts = counts.cumsum(0) - counts
    k = torch.arange(TOP_K)
    idx = starts[:, None] + k[None, :]                              # (n, TOP_K)
    have = k[None, :] < counts[:, None]
    idx = idx.clamp(max=max(0, V.numel() - 1))
    top_values = torch.where(have, V[idx] if V.numel() else torch.zeros_like(idx, dtype=torch.float), 0.0)
    top_positions = torch.where(have, P[idx] if P.numel() else idx, -1)
    q_idx = starts[:, None] + (QUANTILES[None, :] * (counts[:, None] - 1).clamp(min=0)).long()
    q_have = counts[:, None] > 0
    q_idx = q_idx.clamp(max=max(0, V.numel() - 1))
    quantile_values = torch.where(q_have, V[q_idx] if V.numel() else q_idx.float(), 0.0)
    quantile_positions = torch.where(q_have, P[q_idx] if P.numel() else q_idx, -1)
    peak = top_values[:, 0].clamp(min=1e-12)
    bins = (V / peak[F_] * HIST_BINS).long().clamp(0, HIST_BINS - 1)
    hist = torch.bincount(F_ * HIST_BINS + bins, minlength=n * HIST_BINS).view(n, HIST_BINS)
    token_means = None
    vocab = vocab_size or model.config.vocab_size
    if n * vocab <= MAX_TOKEN_TABLE:
        tokens = seq[:n_tokens]
        sums = torch.bincount(F_ * vocab + tokens[P], weights=V, minlength=n * vocab).view(n, vocab)
        occurrences = torch.bincount(tokens, minlength=vocab).clamp(min=1)
        token_means = (sums / occurrences[None, :]).float()
    return FeatureScan(n_tokens, counts.float() / max(1, n_tokens), top_values.float(), top_positions,
                       quantile_values.float(), quantile_positions, hist, token_means)


def scan_path(folder: str | Path, seq: torch.Tensor) -> Path:
    return scan_file(folder, "cards", seq)


def is_card_scanned(loaded: LoadedDictionary, seq: torch.Tensor) -> bool:
    """Whether cached_scan would read seq's scan from the dictionary's folder instead of computing it."""
    return scan_path(loaded.path, seq).is_file()


def cached_scan(model: GPT, loaded: LoadedDictionary, seq: torch.Tensor, progress=None) -> FeatureScan:
    """scan_features, read from / written to the dictionary's folder (keyed by the text; the folder's own weights
    file replaced means a new folder, so the cache cannot outlive its dictionary). A scan stopped by progress
    raising writes nothing."""
    stored = cached_tensors(scan_path(loaded.path, seq),
                            lambda t: t["density"].numel() == loaded.config.n_features,
                            lambda: scan_features(model, loaded.module, seq, progress=progress).tensors())
    return FeatureScan.from_tensors(stored)


@torch.no_grad()
def feature_logit_effect(model: GPT, dictionary, feature: int) -> torch.Tensor:
    """(vocab,) W_U @ W_dec[feature]: how much one unit of the feature raises each token's logit directly."""
    return (model.lm_head.weight.float() @ dictionary.W_dec[feature].float()).cpu()


@torch.no_grad()
def features_at(model: GPT, dictionaries: list[LoadedDictionary], ids, position: int
                ) -> list[tuple[LoadedDictionary, list[tuple[int, float]]]]:
    """For each dictionary, its active features at `position` of the prompt ids: [(feature, activation)], strongest
    first. One forward records every input site at once."""
    from gpt.interp.capture import run_with_cache
    names = {d.config.input for d in dictionaries}
    cache = run_with_cache(model, ids, names)
    out = []
    for d in dictionaries:
        f = d.module.encode(cache[d.config.input][0, position].float())
        active = (f > 0).nonzero().flatten()
        pairs = sorted(((int(i), float(f[i])) for i in active), key=lambda p: -p[1])
        out.append((d, pairs))
    return out


@torch.no_grad()
def feature_activations(model: GPT, loaded: LoadedDictionary, ids) -> torch.Tensor:
    """(T, n) every feature's activation at every position of the prompt ids."""
    from gpt.interp.capture import run_with_cache
    name = loaded.config.input
    return loaded.module.encode(run_with_cache(model, ids, {name})[name][0].float())


def feature_direction(loaded: LoadedDictionary, feature: int) -> torch.Tensor:
    """(d_out,) what one unit of the feature writes into its output site: its (unit-norm) decoder row, the vector
    the Steering page adds to the residual stream."""
    n = loaded.config.n_features
    if not (isinstance(feature, int) and 0 <= feature < n):
        from gpt.interp.capture import InterpError
        raise InterpError(f"feature {feature!r} does not exist: {loaded.name} has features 0..{n - 1}")
    return loaded.module.W_dec[feature].detach().float().clone()
