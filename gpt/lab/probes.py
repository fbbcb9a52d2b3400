"""In-context learning and induction heads (Olsson et al. 2022, "In-context learning and induction heads").

Two measurements, cheap enough to log at every evaluation of any run with attention (`eval_probes`):
* the in-context-learning (ICL) score: mean loss late in the context minus mean loss early in the context, on
  held-out text. The paper takes the loss at token 500 minus that at token 50 of a 512-token context; here the
  two positions are scaled to the block size T (early = round(50/512 T), late = round(500/512 T)) and each is
  a window of +-max(0, T//64) positions averaged over several validation windows, so one noisy position does
  not decide it. Negative = the model predicts better once it has more context (a 1-layer attention-only model
  barely can; induction heads make it clearly negative, about -0.4 nats in the paper's small models);
* the strongest head's induction and previous-token scores (gpt/interp/detectors.py: the one definition of each,
  the strongest = the highest score) on the repeated-text probe: 16 held-out passages, each followed by itself
  (p1..pn p1..pn); the induction score is the attention each token of the second copy pays to the token after
  its earlier occurrence (TransformerLens' induction pattern). The paper repeats random tokens; for the
  small text models here those are far out of distribution (the induction lab's 2-layer BPE model trained on
  lines said twice scored 0.08 on them and 0.22 on repeated text, measured 2026-12-06; the one trained on
  passages said twice 0.50 and 0.52), so the probe is held-out text,
  as the Heads page's "repeated validation text" probe. Random tokens are used only when the validation text is
  shorter than one context.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from gpt.interp.capture import InterpError, attention_patterns
from gpt.interp.detectors import (
    detector_grid,
    detector_scores,
    head_name,
    repeated_random_tokens,
    strongest_head,
    text_probe,
)
from gpt.model import GPT

PAPER_CONTEXT, PAPER_EARLY, PAPER_LATE = 512, 50, 500  # Olsson et al.: loss at token 500 minus token 50 of 512


def icl_positions(block_size: int) -> tuple[range, range]:
    """(early, late) position windows of a block_size context, scaled from the paper's 50 and 500 of 512.
    Position i holds the loss of predicting token i+1 from tokens 0..i."""
    if not isinstance(block_size, int) or block_size < 8:
        raise ValueError(f"an ICL score needs a context of at least 8 tokens (block_size {block_size!r})")
    early = round(PAPER_EARLY / PAPER_CONTEXT * block_size)
    late = min(block_size - 1, round(PAPER_LATE / PAPER_CONTEXT * block_size))
    half = max(0, block_size // 64)
    return (range(max(0, early - half), early + half + 1),
            range(max(early + half + 1, late - half), min(block_size - 1, late + half) + 1))


def icl_from_losses(losses: torch.Tensor) -> float:
    """losses (N, T) per-position losses of N windows -> mean loss in the late window minus the early one."""
    losses = torch.as_tensor(losses, dtype=torch.float64)
    if losses.dim() != 2:
        raise ValueError(f"need per-position losses shaped (windows, positions), got {tuple(losses.shape)}")
    early, late = icl_positions(losses.size(1))
    return float(losses[:, list(late)].mean() - losses[:, list(early)].mean())


def held_out_windows(val_ids: torch.Tensor, block_size: int, max_windows: int = 16) -> torch.Tensor:
    """(N, block_size + 1) non-overlapping validation windows, evenly spread over the split (always the same
    ones, so successive evaluations compare like with like)."""
    val_ids = torch.as_tensor(val_ids, dtype=torch.long).flatten()
    n = (len(val_ids) - 1) // block_size
    if n < 1:
        raise InterpError(f"the validation text ({len(val_ids)} tokens) is shorter than one context of {block_size}")
    starts = torch.linspace(0, n - 1, min(n, max_windows)).round().long() * block_size
    return torch.stack([val_ids[s:s + block_size + 1] for s in starts.tolist()])


@torch.no_grad()
def position_losses(model: GPT, windows: torch.Tensor, autocast=None) -> torch.Tensor:
    """windows (N, T+1) -> (N, T) loss at every position."""
    device = next(model.parameters()).device
    x, y = windows[:, :-1].to(device), windows[:, 1:].to(device)
    with autocast if autocast is not None else torch.autocast(device.type, enabled=False):
        logits, _ = model(x)
    return F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none").cpu()


@torch.no_grad()
def icl_score(model: GPT, val_ids: torch.Tensor, max_windows: int = 16, autocast=None) -> float:
    """The model's ICL score on held-out text (see the module docstring): negative = context helps."""
    return icl_from_losses(position_losses(model, held_out_windows(val_ids, model.config.block_size, max_windows),
                                           autocast))


def induction_probe(model: GPT, batch: int = 4, seed: int = 0) -> torch.Tensor:
    """Repeated random tokens over the model's whole context (up to 2 x 128 tokens)."""
    half = max(2, min(128, model.config.block_size // 2))
    return repeated_random_tokens(model.config.vocab_size, half, batch, seed)


PROBE_PASSAGES = 16  # 4 passages gave 0.68 and 0.45 for the same head at two offsets; 16 agree within ~0.05


def repeated_text_probe(model: GPT, val_ids: torch.Tensor) -> torch.Tensor:
    """PROBE_PASSAGES held-out passages, each followed by itself, filling the context (random tokens when the
    validation text is shorter than one context)."""
    val_ids = torch.as_tensor(val_ids, dtype=torch.long).flatten()
    if len(val_ids) < model.config.block_size:
        return induction_probe(model)
    return text_probe(val_ids, model.config.block_size, seed=0, batch=PROBE_PASSAGES)


@torch.no_grad()
def head_probe(model: GPT, probe: torch.Tensor | None = None) -> dict[str, float | str]:
    """The strongest induction head and the strongest previous-token head, with their scores, on `probe`
    (default: repeated random tokens)."""
    probe = induction_probe(model) if probe is None else probe
    scores = detector_scores(attention_patterns(model, probe), probe)  # (4, L, H)
    out = {}
    for name, key in (("induction", "induction_score"), ("previous_token", "prev_token_score")):
        layer, head, score = strongest_head(detector_grid(scores, name))
        out[key] = round(score, 4)
        out[key.replace("_score", "_head")] = head_name(layer, head)
    return out


@torch.no_grad()
def eval_probes(model: GPT, val_ids: torch.Tensor, autocast=None) -> dict:
    """What the trainer logs at each evaluation of a model with attention: icl_score, induction_score (+ head),
    prev_token_score (+ head). Empty for a bigram or a context too short to tell early from late."""
    cfg = model.config
    if not cfg.has_attention or cfg.block_size < 8:
        return {}
    was_training = model.training
    model.eval()
    try:
        row = {"icl_score": round(icl_score(model, val_ids, autocast=autocast), 4)}
        row.update(head_probe(model, repeated_text_probe(model, val_ids)))
    except InterpError:
        return {}
    finally:
        model.train(was_training)
    return row
