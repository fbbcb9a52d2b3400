"""Head detectors: which attention heads behave like a known circuit part.

Every score is the average attention mass a head puts where a given circuit would look:
* previous-token: on position i-1 (the token just before);
* first-token (sink): on position 0, measured from position 2 on so it never overlaps previous-token;
* duplicate-token: on earlier positions holding the same token as the query;
* induction: on positions right after an earlier occurrence of the query's token ("A B ... A -> look at B").

Induction is measured on a repeated random token sequence (r1..rn r1..rn): in the second copy the model can
only predict well by finding the earlier occurrence and copying what followed it (Olsson et al. 2022).
Scores lie in [0, 1]; a head that does nothing but that behaviour scores 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gpt.interp.capture import InterpError, attention_patterns, check_ids
from gpt.model import GPT

DETECTORS = ("previous_token", "first_token", "duplicate_token", "induction")
LABELS = {"previous_token": "previous-token", "first_token": "first-token (sink)",
          "duplicate_token": "duplicate-token", "induction": "induction"}


# ---- probes ----
def repeated_random_tokens(vocab_size: int, half_len: int, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """(batch, 2*half_len) ids: a random sequence followed by itself. Adjacent tokens never repeat, so
    previous-token and duplicate-token behaviour cannot be confused with each other."""
    if half_len < 2 or vocab_size < 3:
        raise InterpError("need half_len >= 2 and a vocabulary of at least 3 tokens")
    gen = torch.Generator().manual_seed(seed)
    first = torch.empty(batch, half_len, dtype=torch.long)
    first[:, 0] = torch.randint(vocab_size, (batch,), generator=gen)
    for t in range(1, half_len):  # each token differs from the one before it
        first[:, t] = (first[:, t - 1] + 1 + torch.randint(vocab_size - 1, (batch,), generator=gen)) % vocab_size
    for b in range(batch):  # ... also across the seam, where the copy starts again
        if first[b, 0] == first[b, -1]:
            first[b, 0] = min(set(range(3)) - {int(first[b, 1]), int(first[b, -1])})
    return torch.cat([first, first], dim=1)


def repeated_passage(ids, half_len: int) -> torch.Tensor:
    """(1, 2*half_len): a stretch of real text followed by itself. Natural text is what a model knows, so an
    induction head that ignores random tokens can still show up here."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()[:half_len]
    if len(ids) < 2:
        raise InterpError("need at least 2 tokens of text to repeat")
    return torch.cat([ids, ids])[None]


# A probe holds 4 sequences where that costs at most PROBE_BUDGET parameter x token products, fewer for a big model
# (the shipped model: 4; GPT-2 small: 1, so the Heads page opens in about a second).
PROBE_BUDGET = 2e10


def probe_batch(model: GPT, half: int, batch: int = 4) -> int:
    from gpt.sizing import count_params
    return max(1, min(batch, int(PROBE_BUDGET // (count_params(model.config) * 2 * half))))


def probe_for(model: GPT, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """The default probe: repeated random tokens filling the model's context (at most 2 x 64 tokens), `batch`
    sequences (fewer for a big model, probe_batch)."""
    half = max(2, min(64, model.config.block_size // 2))
    return repeated_random_tokens(model.config.vocab_size, half, probe_batch(model, half, batch), seed)


PROBES = ("repeated random tokens", "repeated validation text")


def text_probe(val_ids, block_size: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """(batch, 2*half): passages of held-out text (validation ids), each followed by itself, at seed-chosen
    offsets (passage b is seed + b's); half fills the context like `probe_for` (at most 64 tokens)."""
    val_ids = torch.as_tensor(val_ids, dtype=torch.long).flatten()
    half = max(2, min(64, block_size // 2))
    starts = [((seed + b) * 997) % max(1, len(val_ids) - half) for b in range(batch)]
    return torch.cat([repeated_passage(val_ids[s:s + half], half) for s in starts])


def build_probe(model: GPT, kind: str = PROBES[0], seed: int = 0, val_ids=None) -> torch.Tensor:
    """The probe named `kind` (one of PROBES); the text probe needs the run's validation ids."""
    if kind == PROBES[0]:
        return probe_for(model, seed=seed)
    if kind == PROBES[1]:
        if val_ids is None:
            raise InterpError("the repeated-text probe needs the run's validation text")
        half = max(2, min(64, model.config.block_size // 2))
        return text_probe(val_ids, model.config.block_size, seed, batch=probe_batch(model, half))
    raise InterpError(f"unknown probe {kind!r}; choose one of {', '.join(PROBES)}")


# ---- target masks: (B, T, T) booleans, True where a circuit of that kind would attend ----
def target_masks(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids[None]
    B, T = ids.shape
    q = torch.arange(T)[:, None]
    k = torch.arange(T)[None, :]
    earlier = (k < q)[None]  # (1, T, T)
    same = ids[:, :, None] == ids[:, None, :]  # (B, T, T): token at query == token at key
    prev = (k == q - 1)[None].expand(B, T, T)
    first = ((k == 0) & (q >= 2))[None].expand(B, T, T)
    duplicate = same & earlier
    # key j is an induction target of query i when token j-1 equals token i (and j-1 < i, j <= i)
    shifted_same = torch.zeros_like(same)
    shifted_same[:, :, 1:] = same[:, :, :-1]
    induction = shifted_same & (k <= q)[None] & (k >= 1)[None]
    return {"previous_token": prev, "first_token": first, "duplicate_token": duplicate, "induction": induction}


def detector_scores(patterns: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """patterns (B, L, H, T, T), ids (B, T) -> scores (4, L, H) in DETECTORS order.

    Each score averages, over the query positions where that behaviour is possible, the attention mass on
    the target positions."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids[None]
    if patterns.dim() != 5 or patterns.shape[0] != ids.shape[0] or patterns.shape[-1] != ids.shape[1]:
        raise InterpError(f"patterns {tuple(patterns.shape)} do not match ids {tuple(ids.shape)}")
    out = []
    for mask in target_masks(ids).values():
        mass = (patterns * mask[:, None, None].float()).sum(-1)  # (B, L, H, T)
        has_target = mask.any(-1)[:, None, None].float()  # (B, 1, 1, T)
        denom = has_target.sum((0, 3))  # (1, 1)
        out.append((mass * has_target).sum((0, 3)) / denom.clamp(min=1))
    return torch.stack(out)  # (4, L, H)


@dataclass
class HeadScores:
    scores: torch.Tensor  # (4, L, H) in DETECTORS order
    in_context_gain: float  # loss on the first copy minus loss on the second (nats/token): > 0 means copying

    def of(self, detector: str) -> torch.Tensor:
        return self.scores[DETECTORS.index(detector)]


@torch.no_grad()
def head_scores(model: GPT, probe: torch.Tensor | None = None) -> HeadScores:
    """All four detector scores of every head on the probe (default: repeated random tokens)."""
    probe = probe_for(model) if probe is None else check_ids(model, probe)
    patterns = attention_patterns(model, probe)
    scores = detector_scores(patterns, probe)
    return HeadScores(scores, in_context_gain(model, probe))


@torch.no_grad()
def in_context_gain(model: GPT, repeated: torch.Tensor) -> float:
    """Mean loss on the first half of a repeated sequence minus that on the second half (nats per token)."""
    repeated = check_ids(model, repeated)
    half = repeated.size(1) // 2
    logits, _ = model(repeated[:, :-1])
    losses = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), repeated[:, 1:], reduction="none")
    return float(losses[:, : half - 1].mean() - losses[:, half:].mean())


def best_head(per_head: torch.Tensor) -> tuple[int, int, float]:
    """(layer, head, score) of the highest entry of an (L, H) per-head score grid."""
    per_head = torch.as_tensor(per_head)
    layer, head = divmod(int(per_head.argmax()), per_head.shape[-1])
    return layer, head, float(per_head[layer, head])


def strongest_head(scores: torch.Tensor, detector: str) -> tuple[int, int, float]:
    """(layer, head, score) of the head scoring highest on `detector`; scores (4, L, H) in DETECTORS order."""
    if detector not in DETECTORS:
        raise InterpError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    return best_head(torch.as_tensor(scores)[DETECTORS.index(detector)])


def name_heads(scores: torch.Tensor, threshold: float = 0.4) -> list[tuple[int, int, str, float]]:
    """(layer, head, detector, score) for every head scoring at least threshold, strongest first."""
    found = []
    for d, name in enumerate(DETECTORS):
        for layer, head in (scores[d] >= threshold).nonzero().tolist():
            found.append((layer, head, name, float(scores[d, layer, head])))
    return sorted(found, key=lambda f: -f[3])


def describe_heads(scores: torch.Tensor, threshold: float = 0.4) -> list[str]:
    """Human sentences naming the heads found, e.g. 'L1H3 is an induction head (0.82)'."""
    return [f"L{layer}H{head} is {'an' if LABELS[name][0] in 'aeiou' else 'a'} {LABELS[name]} head ({score:.2f})"
            for layer, head, name, score in name_heads(scores, threshold)]
