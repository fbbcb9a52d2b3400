"""Zero-ablation of attention heads: remove chosen heads and see what the model loses.

A head's output is its slice of `blocks.{i}.attn.z` (B, nh, T, hs), before the output projection; zeroing that
slice removes the head's contribution exactly. The intervention travels with one forward call (gpt.model.Trace),
so a model shared between sessions is never modified.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from gpt.evaluate import consecutive_windows
from gpt.generate import GenerationError, crop_prompt, new_token_ids
from gpt.interp.capture import InterpError, check_ids, run_with_cache
from gpt.model import GPT, position_wise

Head = tuple[int, int]  # (layer, head)


def check_heads(model: GPT, heads) -> list[Head]:
    """Validated, de-duplicated, sorted (layer, head) pairs."""
    cfg = model.config
    if not cfg.has_attention:
        raise InterpError("a bigram model has no attention heads to ablate")
    out = set()
    for item in heads or []:
        try:
            layer, head = (int(v) for v in item)
        except (TypeError, ValueError):
            raise InterpError(f"a head is a (layer, head) pair, got {item!r}") from None
        if not (0 <= layer < cfg.n_layer and 0 <= head < cfg.effective_n_head):
            raise InterpError(f"head L{layer}H{head} does not exist: this model has layers 0..{cfg.n_layer - 1} "
                             f"and heads 0..{cfg.effective_n_head - 1}")
        out.add((layer, head))
    return sorted(out)


def all_heads(model: GPT) -> list[Head]:
    return [(layer, head) for layer in range(model.config.n_layer) for head in range(model.config.effective_n_head)]


def ablation_interventions(model: GPT, heads) -> dict:
    """Trace interventions that zero the given heads' outputs."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in check_heads(model, heads):
        by_layer.setdefault(layer, []).append(head)

    def zero(head_list):
        @position_wise  # each position's z on its own: exact with a KV cache
        def fn(z):  # z (B, nh, T, hs)
            z = z.clone()
            z[:, head_list] = 0
            return z
        return fn
    return {f"blocks.{layer}.attn.z": zero(hs) for layer, hs in by_layer.items()}


# The loss before and after an ablation is measured on windows of at most this many tokens, as many as fit
# LOSS_BUDGET parameter x token products per pass (between 2 and 8): the shipped model's 8 whole contexts of 128
# tokens, GPT-2 small's 3 windows of 128 (each pass ~0.8 s of a quiet core instead of 2 s for 8).
LOSS_WINDOW = 128
LOSS_BUDGET = 5e10


def loss_windows(config) -> tuple[int, int]:
    """(window length, number of windows) of the ablation loss for a model of this config."""
    from gpt.sizing import count_params
    window = min(LOSS_WINDOW, config.block_size)
    return window, max(2, min(8, int(LOSS_BUDGET // (count_params(config) * window))))


@torch.no_grad()
def logits_with_ablation(model: GPT, ids, heads=()) -> torch.Tensor:
    """(B, T, V) logits with the heads zeroed; with no heads this is the model's ordinary output."""
    return run_with_cache(model, ids, set(), ablation_interventions(model, heads)).logits.float()


def loss_sample_windows(val_ids: torch.Tensor, block_size: int, n_windows: int = 8):
    """n_windows (x, y) windows spread evenly over the evaluation text, taken from its consecutive non-overlapping
    windows (gpt.evaluate.consecutive_windows, whole ones only so the batch is square): a fixed sample, the same
    for every call, of the windows the whole-split loss reads."""
    val_ids = torch.as_tensor(val_ids, dtype=torch.long).flatten()
    if len(val_ids) < block_size + 1:
        raise InterpError(f"the evaluation text has {len(val_ids)} tokens; this needs at least {block_size + 1}")
    n_full = (len(val_ids) - 1) // block_size
    x, y = next(consecutive_windows(val_ids[:n_full * block_size + 1], block_size, batch=n_full))
    pick = torch.linspace(0, n_full - 1, min(n_windows, n_full)).round().long()
    return x[pick], y[pick]


@torch.no_grad()
def loss_with_ablation(model: GPT, x: torch.Tensor, y: torch.Tensor, heads=()) -> float:
    logits = logits_with_ablation(model, x, heads)
    return float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1)))


@dataclass
class AblationResult:
    heads: list[Head]
    base_loss: float
    ablated_loss: float
    base_top: list[tuple[int, float]]     # next-token top-k for the prompt, intact model
    ablated_top: list[tuple[int, float]]  # ... with the heads removed
    base_probs: torch.Tensor              # (V,) next-token distribution, intact
    ablated_probs: torch.Tensor           # (V,) with the heads removed

    @property
    def delta_loss(self) -> float:
        return self.ablated_loss - self.base_loss

    @property
    def total_variation(self) -> float:
        """How much the next-token distribution moved: 0 (unchanged) .. 1 (disjoint)."""
        return 0.5 * float((self.base_probs - self.ablated_probs).abs().sum())


@torch.no_grad()
def ablate(model: GPT, prompt_ids, val_ids, heads, k: int = 10, n_windows: int = 8,
           window: int | None = None) -> AblationResult:
    """Δ validation loss and the changed next-token distribution when `heads` are zeroed. The loss is measured on
    n_windows windows of `window` tokens (default and at most: the model's block size)."""
    heads = check_heads(model, heads)
    window = min(window or model.config.block_size, model.config.block_size)
    x, y = loss_sample_windows(val_ids, window, n_windows)
    prompt = check_ids(model, crop_prompt(torch.as_tensor(prompt_ids).flatten().tolist(), model.config.block_size)[0])
    base = F.softmax(logits_with_ablation(model, prompt)[0, -1], -1)
    # no head removed (the page's default): the intact model twice over; one pass of each is enough
    ablated = F.softmax(logits_with_ablation(model, prompt, heads)[0, -1], -1) if heads else base
    k = min(k, base.numel())

    def top(p):
        t = torch.topk(p, k)
        return list(zip(t.indices.tolist(), t.values.tolist()))
    base_loss = loss_with_ablation(model, x, y)
    ablated_loss = loss_with_ablation(model, x, y, heads) if heads else base_loss
    return AblationResult(heads, base_loss, ablated_loss, top(base), top(ablated), base, ablated)


def generate_with_ablation(model: GPT, prompt_ids, heads=(), max_new_tokens: int = 100, **sampling) -> list[int]:
    """New token ids sampled with the heads removed, by the one sampler (gpt.generate.stream_tokens: its sampling
    keywords and defaults; the zeroed heads are position-wise, so the KV cache stays exact). The same seed with no
    heads gives the intact model's text, so the two can be compared side by side."""
    if not isinstance(max_new_tokens, int) or not 0 <= max_new_tokens <= 2000:
        raise InterpError("max_new_tokens must be between 0 and 2000")
    if len(torch.as_tensor(prompt_ids).flatten()) == 0:
        raise InterpError("the prompt is empty")
    ids, _ = crop_prompt(torch.as_tensor(prompt_ids, dtype=torch.long).flatten().tolist(), model.config.block_size)
    check_ids(model, ids)
    try:
        return new_token_ids(model, ids, max_new_tokens, interventions=ablation_interventions(model, heads), **sampling)
    except GenerationError as e:
        raise InterpError(str(e)) from None
