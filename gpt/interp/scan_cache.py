"""Scans of a text kept on disk: the one cache helper behind the neuron scan (gpt/interp/neurons.py) and the
feature cards (gpt/interp/features/cards.py).

A scan file is named by what it scanned, `{prefix}-{digest}.safetensors`, the digest being the first 16 hex digits
of the sha256 of the token ids, so switching texts never reads a stale scan. A file that is absent, unreadable or
judged stale by the caller is computed again; writes are atomic, and a read-only folder only loses the cache.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from gpt.runs import atomic_write_bytes


def text_digest(seq) -> str:
    """16 hex digits naming a token sequence (its ids as int64 bytes)."""
    return hashlib.sha256(torch.as_tensor(seq, dtype=torch.long).numpy().tobytes()).hexdigest()[:16]


def scan_file(folder: str | Path, prefix: str, seq) -> Path:
    return Path(folder) / f"{prefix}-{text_digest(seq)}.safetensors"


def cached_tensors(path: Path, fresh: Callable[[dict[str, torch.Tensor]], bool],
                   compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensors stored at path when fresh(them) says they still answer the question, else compute() (which may
    raise to stop: then nothing is written), written atomically to path for next time."""
    try:
        stored = load_tensors(path.read_bytes())
        if fresh(stored):
            return stored
    except (OSError, SafetensorError, KeyError):
        pass  # absent or unreadable: compute again
    tensors = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save_tensors({k: v.contiguous() for k, v in tensors.items()}))
    except OSError:
        pass  # a read-only run folder (e.g. an installed copy): the result still serves this process
    return tensors
