"""The next-token distribution after a prompt, and its top entries."""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from gpt.generate import crop_prompt
from gpt.interp.capture import InterpError, check_ids
from gpt.model import GPT


@torch.inference_mode()
def next_token_distribution(model: GPT, ids: list[int], temperature: float = 1.0) -> np.ndarray:
    """Probabilities (vocab,) of the token after `ids` (the last block_size tokens: gpt.generate.crop_prompt)."""
    if not temperature > 0:
        raise InterpError(f"temperature must be > 0, got {temperature!r}")
    idx = check_ids(model, crop_prompt(ids, model.config.block_size)[0])
    logits, _ = model(idx)
    return F.softmax(logits[0, -1].float() / temperature, dim=-1).cpu().numpy()


def top_k(probs: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k most likely (id, prob) pairs, best first."""
    k = max(1, min(int(k), probs.shape[-1]))
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), float(probs[i])) for i in order]
