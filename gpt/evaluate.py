"""Validation loss over the whole validation split: the number README, notes and bench/ quote.

The trainer's periodic evaluation averages a few random batches (cheap, noisy); comparing runs needs the mean
next-token cross-entropy over every token of the split (the last 10% of the corpus, as nanoGPT), read in
consecutive non-overlapping windows of the block size (the last one may be shorter), in fp32.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
from torch.nn import functional as F

from gpt import runs
from gpt.data import CorpusError, corpus_splits, load_corpus
from gpt.model import GPT

WINDOWS_PER_BATCH = 32


def consecutive_windows(ids, block_size: int, batch: int = WINDOWS_PER_BATCH, targets: bool = True
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """The one way a whole text (the validation split) is read: batches of consecutive non-overlapping windows of
    block_size tokens, the last one shorter (alone in its batch) so nothing at the end is dropped.

    targets=True: (x, y) with x (B, T) inputs and y (B, T) the next tokens; every token but the first is
    predicted exactly once (losses). targets=False: (x, None), every token of ids in exactly one window
    (activation scans: positions are the running count of x's tokens)."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    n = ids.numel() - 1 if targets else ids.numel()  # how many input tokens
    n_full = max(0, n) // block_size
    xs = ids[:n_full * block_size].view(n_full, block_size)
    ys = ids[1:n_full * block_size + 1].view(n_full, block_size) if targets else None
    for start in range(0, n_full, batch):
        yield xs[start:start + batch], None if ys is None else ys[start:start + batch]
    end = n_full * block_size
    if n - end >= 1:  # the shorter last window
        yield ids[None, end:n], ids[None, end + 1:n + 1] if targets else None


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
    total, count = 0.0, 0
    for x, y in consecutive_windows(ids, T, batch_size):
        logits, _ = model(x.to(device))
        total += F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


def run_validation_ids(run: "runs.LoadedRun") -> torch.Tensor:
    """The validation split (last 10%) of the corpus a run was trained on, as token ids: exactly the split its
    trainer validated on (token ids split at 90%). The app's evaluation text (gpt/evaltext.py) reads it too."""
    spec = run.extra.get("corpus")
    if not spec:
        raise CorpusError("this run does not record its corpus, so it has no validation split of its own; "
                          "choose a built-in corpus or give a text as the evaluation text")
    text, _ = load_corpus(str(spec))
    return corpus_splits(text, run.tokenizer, run.config.block_size).val


def run_validation_loss(run_dir: str | Path, step: int | None = None) -> float:
    """Whole-split validation loss of a saved run (its final weights, or a snapshot's), in fp32 on the CPU."""
    run = runs.load_run(run_dir, step=step)
    model = run.model.float()
    return validation_loss(model, run_validation_ids(run))
