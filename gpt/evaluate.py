"""Validation loss over the whole validation split: the number README, notes and bench/ quote.

The trainer's periodic evaluation averages a few random batches (cheap, noisy); comparing runs needs the mean
next-token cross-entropy over every token of the split (the last 10% of the corpus, as nanoGPT), read in
consecutive non-overlapping windows of the block size (the last one may be shorter), in fp32.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from . import runs
from .data import BUILTIN_CORPORA, CorpusError, load_corpus, split_ids, validation_text
from .model import GPT


@torch.no_grad()
def validation_loss(model: GPT, ids: torch.Tensor, block_size: int | None = None, batch_size: int = 64) -> float:
    """Mean cross-entropy of every token of ids (1-D) given the ones before it in its window of block_size
    tokens (default: the model's). Every token but the first is predicted exactly once."""
    T = block_size or model.config.block_size
    if T > model.config.block_size:
        raise ValueError(f"block_size {T} is longer than the model's context ({model.config.block_size})")
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if ids.numel() < 2:
        raise ValueError("need at least two tokens to measure a loss")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n_full = (ids.numel() - 1) // T  # windows of T inputs with T targets each
    total, count = 0.0, 0
    x_all = ids[:n_full * T].view(n_full, T)
    y_all = ids[1:n_full * T + 1].view(n_full, T)
    for start in range(0, n_full, batch_size):
        x, y = x_all[start:start + batch_size].to(device), y_all[start:start + batch_size].to(device)
        logits, _ = model(x)
        total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    tail = ids[n_full * T:]  # the last, shorter window
    if tail.numel() >= 2:
        logits, _ = model(tail[None, :-1].to(device))
        total += F.cross_entropy(logits[0].float(), tail[1:].to(device), reduction="sum").item()
        count += tail.numel() - 1
    model.train(was_training)
    return total / count


def run_validation_ids(run: "runs.LoadedRun") -> torch.Tensor:
    """The validation split (last 10%) of the corpus a run was trained on, as token ids."""
    spec = run.extra.get("corpus")
    if not spec:
        raise CorpusError("this run does not record its corpus, so its validation split is unknown")
    text, _ = load_corpus(str(spec))
    return split_ids(run.tokenizer.encode(text), run.config.block_size).val


RUN_TEXT = "run"        # evaluation text sources: the run's own validation split,
PASTED_TEXT = "pasted"  # ... text the learner pasted or uploaded, or a built-in corpus name (gpt.data.BUILTIN_CORPORA)


def evaluation_sources(run: "runs.LoadedRun") -> list[str]:
    """The evaluation texts a run can use, the best first: its own validation split where it records its corpus,
    then the built-in corpora (held-out part), then a pasted text."""
    own = [RUN_TEXT] if run.extra.get("corpus") else []
    return own + list(BUILTIN_CORPORA) + [PASTED_TEXT]


def evaluation_ids(run: "runs.LoadedRun", source: str, pasted: str = "") -> tuple[torch.Tensor, str]:
    """(token ids, a line saying which text it is) of an evaluation text for pages that scan text (ablation, head
    probes, per-token loss, neurons' and features' top contexts). Characters the run's tokenizer cannot read are
    left out and named; CorpusError says what is missing (an unknown corpus, an empty or too short text)."""
    if source == RUN_TEXT:
        ids = run_validation_ids(run)
        return ids, f"the validation split of {run.extra['corpus']}, this run's own corpus ({len(ids):,} tokens)"
    if source == PASTED_TEXT:
        text, what = pasted or "", "the pasted text"
    elif source in BUILTIN_CORPORA:
        text, what = validation_text(load_corpus(source)[0]), f"the held-out 10% of the built-in {source}"
    else:
        raise CorpusError(f"unknown evaluation text {source!r}; choose the run's own, "
                          f"{', '.join(BUILTIN_CORPORA)} or a pasted text")
    tok = run.tokenizer
    unknown = tok.unknown_chars(text)
    note = ""
    if unknown:
        text = "".join(c for c in text if c not in set(unknown))
        shown = ", ".join(repr(c) for c in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        note = f"; {len(unknown)} character(s) this tokenizer cannot read were left out: {shown}"
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    if len(ids) < 2:
        raise CorpusError(f"{what} has {len(ids)} token(s) this model can read; an evaluation text needs at least 2 "
                          "(paste more text, or pick a built-in corpus)")
    return ids, f"{what} ({len(ids):,} tokens{note})"


def run_validation_loss(run_dir: str | Path, step: int | None = None) -> float:
    """Whole-split validation loss of a saved run (its final weights, or a snapshot's), in fp32 on the CPU."""
    run = runs.load_run(run_dir, step=step)
    model = run.model.float()
    return validation_loss(model, run_validation_ids(run))
