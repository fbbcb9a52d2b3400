"""Per-token loss: how surprised the model is by each token of a passage, and what it expected instead."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from gpt.interp.capture import InterpError, check_ids
from gpt.model import GPT


@dataclass
class TokenLoss:
    ids: list[int]              # the passage, T tokens
    losses: torch.Tensor        # (T,) loss of token t given tokens < t; NaN at t=0 (nothing predicts it)
    top_ids: torch.Tensor       # (T, k) the model's top-k guesses for token t (row 0: unused, NaN probs)
    top_probs: torch.Tensor     # (T, k)

    @property
    def mean_loss(self) -> float:
        return float(self.losses[1:].mean()) if len(self.ids) > 1 else float("nan")

    def worst(self, n: int = 10) -> list[int]:
        """Positions of the n most surprising tokens, worst first."""
        order = torch.argsort(torch.nan_to_num(self.losses, nan=-1.0), descending=True)
        return order[: min(n, len(self.ids) - 1)].tolist()


@torch.no_grad()
def token_losses(model: GPT, ids, k: int = 5) -> TokenLoss:
    """Loss of every token of a passage (at most block_size tokens) and the top-k predictions for it."""
    ids_t = check_ids(model, ids)
    if ids_t.size(0) != 1:
        raise InterpError("give one passage at a time")
    T = ids_t.size(1)
    k = max(1, min(k, model.config.vocab_size))
    logits, _ = model(ids_t)
    logp = F.log_softmax(logits[0].float(), -1)  # (T, V): row t predicts token t+1
    losses = torch.full((T,), float("nan"))
    top_ids = torch.zeros((T, k), dtype=torch.long)
    top_probs = torch.full((T, k), float("nan"))
    if T > 1:
        losses[1:] = -logp[:-1].gather(1, ids_t[0, 1:, None])[:, 0]
        top = torch.topk(logp[:-1].exp(), k, dim=-1)
        top_ids[1:], top_probs[1:] = top.indices, top.values
    return TokenLoss(ids_t[0].tolist(), losses, top_ids, top_probs)


def validation_passage(val_ids: torch.Tensor, n_tokens: int, offset: int = 0) -> list[int]:
    """n_tokens of the validation split starting at offset (clamped so the passage fits)."""
    n = max(2, min(int(n_tokens), len(val_ids)))
    start = max(0, min(int(offset), len(val_ids) - n))
    return val_ids[start:start + n].tolist()
