"""Direct logit attribution (DLA): how much each part of the model wrote directly towards one logit.

The residual stream entering the final norm is a sum of parts: the embeddings (token + position), every attention
head's output through its slice of W_O, every attention output bias, every MLP. The final norm is linear in its
input once its scale (1 / std or 1 / rms of this very vector) is frozen at the value of this forward pass, and the
unembedding is linear, so the logit splits exactly into one number per part plus the norm's bias term:

    logit[target] = sum over parts p of  norm_frozen(p) . W_U[target]  +  ln_f.bias . W_U[target]

With a contrast token every number is for the logit difference target - contrast (W_U[target] - W_U[contrast]).
"Direct" means the path straight to the logits: a head that matters by feeding a later head shows up in that
later head's number, not its own (activation patching, gpt/interp/patching.py, measures the total effect).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from gpt.interp.capture import InterpError, check_ids, run_with_cache
from gpt.interp.detectors import head_name, ranked_heads
from gpt.model import GPT


@dataclass
class Attribution:
    parts: dict[str, float]   # ordered: embed, then per layer L{i}H{h}..., L{i}.attn_bias, L{i}.mlp; ln_f.bias
    total: float              # sum of parts = the (pre-soft-cap) logit or logit difference
    position: int             # the prompt position whose next-token prediction is explained
    target: int
    contrast: int | None
    model_logit: float        # the model's own output (after the soft cap, if any): what `total` reproduces
    softcap: float = 0.0      # > 0: the parts explain the logit before cap * tanh(. / cap)
    n_layer: int = 0
    n_head: int = 0
    heads: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))  # (n_layer, n_head) head parts

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The k parts of largest magnitude, largest first."""
        return sorted(self.parts.items(), key=lambda kv: -abs(kv[1]))[:k]

    def top_heads(self, k: int = 3) -> list[tuple[str, float]]:
        """The k strongest heads: a signed effect, so the largest in size, either sign (detectors.ranked_heads)."""
        if self.heads.numel() == 0:
            return []
        return [(head_name(layer, head), value) for layer, head, value in ranked_heads(self.heads, signed=True)[:k]]


def check_token(model: GPT, token, what: str = "target") -> int:
    try:
        token = int(token)
    except (TypeError, ValueError):
        raise InterpError(f"the {what} must be a token id, got {token!r}") from None
    if not 0 <= token < model.config.vocab_size:
        raise InterpError(f"the {what} token id {token} is outside this model's vocabulary [0, "
                          f"{model.config.vocab_size})")
    return token


def check_position(position, T: int) -> int:
    """A prompt position (negative counts from the end, as in Python) as 0..T-1."""
    try:
        position = int(position)
    except (TypeError, ValueError):
        raise InterpError(f"the position must be a whole number, got {position!r}") from None
    if not -T <= position < T:
        raise InterpError(f"position {position} is outside the prompt of {T} tokens (0..{T - 1})")
    return position % T


def final_residual_name(model: GPT) -> str:
    """The capture point holding the residual stream that enters the final norm."""
    cfg = model.config
    if not cfg.has_attention:
        return "embed.tok"
    return f"blocks.{cfg.n_layer - 1}.{'resid_post' if cfg.has_mlp else 'resid_mid'}"


def frozen_norm(norm: nn.Module, x: torch.Tensor):
    """The final norm at one residual vector x (C,) as a linear map plus a constant, with its scale frozen:
    returns (apply, bias) where apply(p) maps a part p (..., C) to its share of the norm's output."""
    if isinstance(norm, nn.LayerNorm):
        scale = torch.rsqrt(x.var(unbiased=False) + norm.eps)  # 1 / std of this very vector
        gain = norm.weight.double() * scale if norm.weight is not None else scale
        bias = norm.bias.double() if norm.bias is not None else None
        return (lambda p: (p - p.mean(-1, keepdim=True)) * gain), bias  # the mean is linear, so it splits too
    if isinstance(norm, nn.RMSNorm):
        eps = norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps
        scale = torch.rsqrt(x.pow(2).mean() + eps)  # 1 / rms
        gain = norm.weight.double() * scale if norm.weight is not None else scale
        return (lambda p: p * gain), None
    if isinstance(norm, nn.Identity):
        return (lambda p: p), None
    raise InterpError(f"direct logit attribution does not know the final norm {type(norm).__name__}")


@torch.no_grad()
def predicted_token(model: GPT, ids, position: int = -1) -> int:
    """The token the model ranks first after `position` (the default target of an attribution)."""
    ids = check_ids(model, ids)
    position = check_position(position, ids.size(1))
    return int(run_with_cache(model, ids[:1], names=set()).logits[0, position].argmax())


@torch.no_grad()
def direct_logit_attribution(model: GPT, ids, position: int, target, contrast=None) -> Attribution:
    """Split the logit of `target` (minus `contrast`'s, if given) after `position` of the prompt `ids` into the
    direct contributions of every part of the model; the parts sum to the model's logit (difference).

    ids: a 1-D list or tensor of token ids (or (1, T)). Computed in float64 from one recorded forward pass."""
    ids = check_ids(model, ids)
    if ids.size(0) != 1:
        raise InterpError("direct logit attribution explains one prompt at a time")
    cfg = model.config
    position = check_position(position, ids.size(1))
    target = check_token(model, target)
    contrast = None if contrast is None else check_token(model, contrast, "contrast")
    if contrast == target:
        raise InterpError("the contrast token is the target itself: their logit difference is always 0")

    cache = run_with_cache(model, ids)  # every capture point; small models, one prompt
    at = lambda name: cache[name][0, position].double()  # (C,) one position of a (1, T, C) activation
    W_U = model.lm_head.weight.double()  # (V, C)
    direction = W_U[target] - (W_U[contrast] if contrast is not None else 0)  # (C,)
    apply, norm_bias = frozen_norm(model.ln_f, at(final_residual_name(model)))
    read = lambda vecs: apply(vecs) @ direction  # (..., C) parts -> (...) logit contributions

    parts: dict[str, float] = {}
    embed = at("embed.tok")
    if "embed.pos" in cache:
        embed = embed + cache["embed.pos"][position].double()  # (T, C): no batch dim
    parts["embed"] = float(read(embed))
    n_head = cfg.effective_n_head if cfg.has_attention else 0
    heads = torch.zeros(cfg.n_layer if cfg.has_attention else 0, n_head, dtype=torch.float64)
    for i, block in enumerate(model.blocks):
        C, hs = cfg.n_embd, cfg.head_size
        z = cache[f"blocks.{i}.attn.z"][0, :, position].double()  # (nh, hs) each head's weighted values
        W_O = block.attn.c_proj.weight.double().view(C, n_head, hs)  # (C, nh, hs): column block h = head h
        head_out = torch.einsum("nd,cnd->nc", z, W_O)  # (nh, C) each head's output in the residual stream
        heads[i] = read(head_out)
        for h in range(n_head):
            parts[f"L{i}H{h}"] = float(heads[i, h])
        if block.attn.c_proj.bias is not None:
            parts[f"L{i}.attn_bias"] = float(read(block.attn.c_proj.bias.double()))
        if block.mlp is not None:
            parts[f"L{i}.mlp"] = float(read(at(f"blocks.{i}.mlp.out")))
    if norm_bias is not None:
        parts["ln_f.bias"] = float(norm_bias @ direction)

    logits = cache.logits[0, position].double()
    model_logit = float(logits[target] - (logits[contrast] if contrast is not None else 0))
    return Attribution(parts, float(sum(parts.values())), position, target, contrast, model_logit,
                       float(getattr(cfg, "logit_softcap", 0.0) or 0.0), heads.size(0), n_head, heads.float())


def describe_top_heads(result: Attribution, k: int = 3) -> str:
    """One sentence naming the heads that wrote most directly towards (or against) the target."""
    top = result.top_heads(k)
    if not top:
        return "This model has no attention heads: only the embeddings and the final norm write to the logits."
    words = [f"{name} ({value:+.2f})" for name, value in top]
    listed = ", ".join(words[:-1]) + (" and " if len(words) > 1 else "") + words[-1]
    return (f"The heads that write most directly to this logit are {listed}; "
            f"positive pushes towards the target, negative away from it.")
