"""The small pieces the architecture options swap in (gpt/config.py GPTConfig documents each option):
normalisation layers, rotary position embeddings, feed-forward activations, logit soft-capping.

Each comes as a module (used by GPT.forward, so the trace and training see it) and, where GPT.decode_next needs
it, as a plain function on the same weights (one-token decoding is dominated by per-call overhead).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt.config import GPTConfig

M_SQRT1_2 = 1.0 / math.sqrt(2.0)
ROPE_BASE = 10000.0  # RoFormer's and LLaMA's frequency base


def make_norm(config: GPTConfig) -> nn.Module:
    """The normalisation config.norm asks for: LayerNorm (GPT-2), RMSNorm (LLaMA; no mean, no bias) or none."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.layer_norm_eps)
    if config.norm == "none":
        return nn.Identity()
    return nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)


def norm_functional(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x) without the nn.Module call overhead (decode_next): same weights, same result."""
    if isinstance(module, nn.LayerNorm):
        return F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)
    if isinstance(module, nn.RMSNorm):
        return F.rms_norm(x, module.normalized_shape, module.weight, module.eps)
    return x  # nn.Identity


def rms_normalise(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / rms(x) over the last dimension, no learned gain (QK-norm: each head's q and k get unit RMS)."""
    return F.rms_norm(x, (x.size(-1),), eps=eps)


class Rotary(nn.Module):
    """Rotary position embedding (RoPE, Su et al. 2021): each pair of channels (i, i + hs/2) of q and k is rotated
    by the angle position * ROPE_BASE^(-2i/hs), so q . k depends only on the distance between the two tokens.
    It has no weights: cos and sin are non-persistent buffers, rebuilt from the config, never saved."""

    def __init__(self, head_size: int, max_len: int):
        super().__init__()
        freqs = ROPE_BASE ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)  # (hs/2,)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), freqs)  # (max_len, hs/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, past: int = 0) -> torch.Tensor:
        """x (B, nh, T, hs) at absolute positions past..past+T-1 -> rotated x, same shape and dtype."""
        T = x.size(-2)
        cos = self.cos[past:past + T].to(x.dtype)  # (T, hs/2); a no-op cast unless x is in another dtype
        sin = self.sin[past:past + T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Activation(nn.Module):
    """The feed-forward nonlinearity: GELU (exact or GPT-2's tanh approximation), ReLU, or ReLU^2 (So et al.
    2021, "Primer"; modded-nanogpt), which is as cheap as ReLU and trains faster at small scale."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return activation_functional(self.name, x)

    def extra_repr(self) -> str:
        return self.name


def activation_functional(name: str, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """inplace=True (decode_next, no autograd) avoids F.gelu's oneDNN call, which costs ~20 us at one token."""
    if name == "gelu":
        if inplace:
            return (x * M_SQRT1_2).erf_().add_(1.0).mul_(x).mul_(0.5)
        return F.gelu(x)
    if name == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu(x)
    return F.relu(x).square()  # "relu2"


def softcap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap * tanh(logits / cap): logits stay within (-cap, cap), smoothly (Gemma 2; modded-nanogpt). 0 = off."""
    if cap <= 0:
        return logits
    return cap * torch.tanh(logits / cap)
