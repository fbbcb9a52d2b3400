"""Head detectors: which attention heads behave like a known circuit part.

Every score is the average attention mass a head puts where a given circuit would look:
* previous-token: on position i-1 (the token just before);
* first-token (sink): on position 0, measured from position 2 on so it never overlaps previous-token;
* duplicate-token: on earlier positions holding the same token as the query;
* induction (`induction_scores`, THE definition used by every page, the trainer's log and the lab): on a sequence
  followed by itself (r1..rn r1..rn), the attention each token of the second copy pays to the token right after
  its earlier occurrence ("A B ... A -> look at B"): TransformerLens' induction pattern (Olsson et al. 2022). In the
  second copy the model can only predict well by finding the earlier occurrence and copying what followed it.

Scores lie in [0, 1]; a head that does nothing but that behaviour scores 1. "The strongest head" follows one rule
per kind of quantity (`strongest_head`): for a score like these, the highest; for a signed effect (patching,
attribution), the largest in size, either sign.
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
    return {"previous_token": prev, "first_token": first, "duplicate_token": duplicate}


def repeated_half(ids: torch.Tensor) -> int | None:
    """n when every row of ids (B, 2n) is n tokens followed by the same n tokens, else None."""
    T = ids.size(-1)
    n = T // 2
    if T % 2 or n < 1 or not torch.equal(ids[:, :n], ids[:, n:]):
        return None
    return n


def induction_scores(patterns: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The induction score of every head: patterns (B, L, H, 2n, 2n) on ids (B, 2n), each row n tokens followed by
    the same n tokens -> (L, H): the attention each query q of the second copy (q = n..2n-1) pays to key q - n + 1,
    the token right after the earlier occurrence of its own token, averaged over those queries and the rows
    (TransformerLens' induction pattern; its tutorials' "induction stripe"). 0 for ids that are not a repeat."""
    n = repeated_half(ids)
    if n is None:
        return torch.zeros(patterns.shape[1:3])
    q = torch.arange(n, 2 * n)
    return patterns[..., q, q - n + 1].float().mean((0, 3))  # (B, L, H, n) -> (L, H)


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
    out.append(induction_scores(patterns, ids).to(out[0].dtype))
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


# ---- the strongest head: one rule per kind of quantity, said wherever a page names one ----
STRONGEST_RULE = {False: "the highest score", True: "the largest in size, either sign"}


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def ranked_heads(per_head, signed: bool = False) -> list[tuple[int, int, float]]:
    """Every (layer, head, value) of an (L, H) grid, strongest first. A score (a detector's 0..1, higher = more of
    the behaviour): by value. A signed effect (signed=True: a patching fraction, a direct logit attribution, which
    push either way): by |value|, the value kept with its sign. Ties: the earlier layer, then the lower head."""
    grid = torch.as_tensor(per_head, dtype=torch.float64)
    if grid.dim() != 2 or grid.numel() == 0:
        raise InterpError(f"a per-head grid is (layers, heads), got {tuple(grid.shape)}")
    key = grid.abs() if signed else grid
    order = sorted(range(grid.numel()), key=lambda i: (-float(key.view(-1)[i]), i))
    H = grid.size(1)
    return [(i // H, i % H, float(grid.view(-1)[i])) for i in order]


def strongest_head(per_head, signed: bool = False) -> tuple[int, int, float]:
    """(layer, head, value) of the strongest head of an (L, H) grid, by ranked_heads' rule (STRONGEST_RULE)."""
    return ranked_heads(per_head, signed)[0]


def detector_grid(scores: torch.Tensor, detector: str) -> torch.Tensor:
    """The (L, H) scores of one detector from (4, L, H) scores in DETECTORS order."""
    if detector not in DETECTORS:
        raise InterpError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    return torch.as_tensor(scores)[DETECTORS.index(detector)]


def name_heads(scores: torch.Tensor, threshold: float = 0.4) -> list[tuple[int, int, str, float]]:
    """(layer, head, detector, score) for every head scoring at least threshold, strongest first."""
    found = []
    for d, name in enumerate(DETECTORS):
        for layer, head in (scores[d] >= threshold).nonzero().tolist():
            found.append((layer, head, name, float(scores[d, layer, head])))
    return sorted(found, key=lambda f: -f[3])


def describe_heads(scores: torch.Tensor, threshold: float = 0.4) -> list[str]:
    """Human sentences naming the heads found, e.g. 'L1H3 is an induction head (0.82)'."""
    return [f"{head_name(layer, head)} is {'an' if LABELS[name][0] in 'aeiou' else 'a'} {LABELS[name]} head ({score:.2f})"
            for layer, head, name, score in name_heads(scores, threshold)]
