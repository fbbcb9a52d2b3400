"""One prediction, stage by stage: the forward pass recomputed by hand from the weights (the landing page's numbers).

`forward_steps(model, ids, position)` does not call GPT.forward or read a Trace: it redoes every stage with
plain tensor arithmetic (the LayerNorm's mean and variance, each head's q . k, the mask, the softmax, ...), so
what the page shows is the textbook computation, and tests/test_forward_steps.py proves it lands on the same
logits as the model (within 1e-5) for every ladder rung, a GPT-2 import and every architecture option.

Causality makes it cheap: position p depends only on tokens 0..p, so only ids[:p+1] are computed. Everything
returned is a float32 CPU tensor about the one chosen position, except the keys and values, which span the
positions 0..p the query can see. Shapes: C = n_embd, nh = heads, hs = head size, P = position + 1, V = vocab.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gpt.generate import filter_logits
from gpt.interp.capture import InterpError, check_ids
from gpt.layers import ROPE_BASE
from gpt.model import GPT

QK_NORM_EPS = 1e-6  # gpt.layers.rms_normalise's eps
TOP_NEURONS = 8


@dataclass
class NormStep:
    """A LayerNorm / RMSNorm / no-norm applied to one position's vector."""
    kind: str                  # "layernorm", "rmsnorm" or "none"
    before: torch.Tensor       # (C,) the input
    mean: float                # subtracted by LayerNorm (RMSNorm: 0, nothing subtracted)
    var: float                 # LayerNorm: variance; RMSNorm: mean square; divided out as sqrt(var + eps)
    eps: float
    normalised: torch.Tensor   # (C,) (before - mean) / sqrt(var + eps)
    gain: torch.Tensor | None  # (C,) learned scale (None: no norm)
    bias: torch.Tensor | None  # (C,) learned shift (LayerNorm with bias only)
    after: torch.Tensor        # (C,) normalised * gain + bias


@dataclass
class HeadStep:
    """One attention head, seen from the chosen query position p."""
    q: torch.Tensor            # (hs,) this position's query as used in q . k (after QK-norm / rotation)
    q_raw: torch.Tensor        # (hs,) the query straight out of W_Q (same as q without QK-norm and rotary)
    keys: torch.Tensor         # (P, hs) keys of positions 0..p (as used)
    keys_raw: torch.Tensor     # (P, hs) keys straight out of W_K
    values: torch.Tensor       # (P, hs) values of positions 0..p
    dots: torch.Tensor         # (P,) q . k_j
    scale: float               # 1 / sqrt(hs)
    scores: torch.Tensor       # (P,) dots * scale
    masked: torch.Tensor       # (T,) scores over the whole prompt, -inf at the future positions j > p
    weights: torch.Tensor      # (P,) softmax(scores): how much p reads from each j, sums to 1
    out: torch.Tensor          # (hs,) weights @ values


@dataclass
class AttentionStep:
    heads: list[HeadStep]      # nh of them
    concat: torch.Tensor       # (C,) every head's out side by side
    out: torch.Tensor          # (C,) concat @ W_O + b_O: what attention adds to the residual stream


@dataclass
class MLPStep:
    norm: NormStep
    pre: torch.Tensor          # (4C,) h @ W_in + b_in, before the activation
    post: torch.Tensor         # (4C,) after the activation
    activation: str
    top_neurons: list[tuple[int, float]]  # the TOP_NEURONS largest post-activations: (neuron index, value)
    out: torch.Tensor          # (C,) post @ W_out + b_out


@dataclass
class BlockStep:
    layer: int
    resid_in: torch.Tensor     # (C,) residual stream entering the block
    norm1: NormStep
    attention: AttentionStep
    resid_mid: torch.Tensor    # (C,) resid_in + attention.out
    mlp: MLPStep | None        # None on the attention-only ladder rungs
    resid_out: torch.Tensor    # (C,) resid_mid + mlp.out (= resid_mid without an MLP)


@dataclass
class ForwardSteps:
    """Every intermediate of the forward pass for the prediction made at `position`."""
    ids: list[int]             # the whole prompt (T tokens)
    position: int              # p: the token whose next-token prediction is shown
    token_id: int
    tok_emb: torch.Tensor      # (C,) row token_id of the token embedding W_E
    pos_emb: torch.Tensor | None  # (C,) row p of the position table (None: bigram or rotary)
    embedding: torch.Tensor    # (C,) tok_emb + pos_emb: the residual stream's start
    blocks: list[BlockStep]
    final_norm: NormStep
    raw_logits: torch.Tensor   # (V,) final_norm.after @ W_U (before the soft cap)
    softcap: float             # 0 = off
    logits: torch.Tensor       # (V,) softcap(raw_logits): the model's next-token logits at p


def _norm(module, x: torch.Tensor, kind: str, eps: float) -> tuple[torch.Tensor, NormStep | None]:
    """Apply the block's norm by hand to x (P, C); returns the result and the NormStep of the last row."""
    if kind == "none":
        row = x[-1]
        return x, NormStep(kind, row, 0.0, 0.0, 0.0, row, None, None, row)
    gain = module.weight.float()
    bias = getattr(module, "bias", None)
    bias = None if bias is None else bias.float()
    if kind == "layernorm":
        mean = x.mean(-1, keepdim=True)                       # (P, 1)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)        # biased variance, as nn.LayerNorm
    else:  # rmsnorm: no centring, divide by the root mean square
        mean = torch.zeros_like(x[:, :1])
        var = (x ** 2).mean(-1, keepdim=True)
    normalised = (x - mean) / torch.sqrt(var + eps)
    after = normalised * gain + (bias if bias is not None else 0.0)
    step = NormStep(kind, x[-1], float(mean[-1]), float(var[-1]), eps, normalised[-1], gain, bias, after[-1])
    return after, step


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + QK_NORM_EPS)


def _rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """RoPE by hand: channel pairs (i, i + hs/2) of x (..., P, hs) turn by the angle pos * base^(-2i/hs)."""
    hs = x.size(-1)
    freqs = ROPE_BASE ** (-torch.arange(0, hs, 2, dtype=torch.float32) / hs)   # (hs/2,)
    angles = torch.outer(positions.float(), freqs)                              # (P, hs/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :hs // 2], x[..., hs // 2:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def _activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "gelu":      # exact GELU: x * Phi(x)
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name == "gelu_tanh":  # GPT-2's tanh approximation
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "relu":
        return x.clamp(min=0.0)
    return x.clamp(min=0.0) ** 2  # relu2


def _linear(x: torch.Tensor, layer) -> torch.Tensor:
    """x @ W^T + b with the layer's weights (nn.Linear stores W as (out, in))."""
    y = x @ layer.weight.float().T
    return y + layer.bias.float() if layer.bias is not None else y


@torch.no_grad()
def forward_steps(model: GPT, ids, position: int | None = None) -> ForwardSteps:
    """Recompute the forward pass for the prediction at `position` (default: the last token) from the weights.

    ids: a 1-D list or tensor of token ids (at most block_size). Raises InterpError for an empty or too long
    prompt, unknown ids, or a position outside the prompt."""
    ids_2d = check_ids(model, ids)
    if ids_2d.size(0) != 1:
        raise InterpError("forward_steps walks one prompt at a time: pass a 1-D list of token ids")
    ids_list = ids_2d[0].tolist()
    T = len(ids_list)
    if position is None:
        position = T - 1
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < T:
        raise InterpError(f"position must be a whole number from 0 to {T - 1} (the prompt has {T} tokens); "
                          f"got {position!r}")
    cfg = model.config
    eps = cfg.layer_norm_eps
    P = position + 1
    seen = ids_2d[0, :P].cpu()                                   # (P,) causality: later tokens cannot matter
    wte = model.wte.weight.detach().float().cpu()
    x = wte[seen]                                                # (P, C) token embeddings
    tok_emb = x[-1].clone()
    pos_emb = None
    if model.wpe is not None:
        table = model.wpe.weight.detach().float().cpu()[:P]      # (P, C)
        pos_emb = table[-1].clone()
        x = x + table
    embedding = x[-1].clone()
    model_cpu = model if next(model.parameters()).device.type == "cpu" else model.cpu()

    blocks = []
    for layer, block in enumerate(model_cpu.blocks):
        resid_in = x[-1].clone()
        h, norm1 = _norm(block.ln_1, x, cfg.norm, eps)            # (P, C)
        attn = block.attn
        nh, C = attn.n_head, attn.n_embd
        hs = C // nh
        qkv = _linear(h, attn.c_attn)                             # (P, 3C): [q | k | v]
        q_all, k_all, v_all = (t.reshape(P, nh, hs).transpose(0, 1) for t in qkv.split(C, dim=-1))  # (nh, P, hs)
        q_raw, k_raw = q_all, k_all
        if cfg.qk_norm:
            q_all, k_all = _rms(q_all), _rms(k_all)
        if cfg.uses_rotary:
            positions = torch.arange(P)
            q_all, k_all = _rotate(q_all, positions), _rotate(k_all, positions)
        heads = []
        scale = 1.0 / math.sqrt(hs)
        for head in range(nh):
            q = q_all[head, -1]                                   # (hs,) only the chosen query matters
            keys, values = k_all[head], v_all[head]               # (P, hs)
            dots = keys @ q                                       # (P,)
            scores = dots * scale
            masked = torch.full((T,), float("-inf"))
            masked[:P] = scores                                   # the future j > p is hidden
            weights = torch.exp(scores - scores.max())
            weights = weights / weights.sum()
            heads.append(HeadStep(q, q_raw[head, -1], keys, k_raw[head], values, dots, scale, scores, masked,
                                  weights, weights @ values))
        # the other positions' head outputs are needed by the next layer's keys: all rows, same formula
        att = torch.softmax((q_all @ k_all.transpose(1, 2)) * scale
                            + torch.full((P, P), float("-inf")).triu(1), dim=-1)   # (nh, P, P)
        z = (att @ v_all).transpose(0, 1).reshape(P, C)            # (P, C) heads side by side
        attn_out = _linear(z, attn.c_proj)                         # (P, C)
        concat = torch.cat([hd.out for hd in heads])
        x = x + attn_out
        resid_mid = x[-1].clone()
        mlp_step = None
        if block.mlp is not None:
            h2, norm2 = _norm(block.ln_2, x, cfg.norm, eps)
            pre = _linear(h2, block.mlp.c_fc)                      # (P, 4C)
            post = _activation(cfg.activation, pre)
            mlp_out = _linear(post, block.mlp.c_proj)              # (P, C)
            top = torch.topk(post[-1], min(TOP_NEURONS, post.size(-1)))
            mlp_step = MLPStep(norm2, pre[-1], post[-1], cfg.activation,
                               [(int(i), float(v)) for v, i in zip(top.values, top.indices)], mlp_out[-1])
            x = x + mlp_out
        blocks.append(BlockStep(layer, resid_in, norm1, AttentionStep(heads, concat, attn_out[-1]), resid_mid,
                                mlp_step, x[-1].clone()))

    final, final_norm = _norm(model_cpu.ln_f, x[-1:], cfg.norm, eps)
    raw_logits = final[-1] @ model_cpu.lm_head.weight.detach().float().T   # (V,)
    cap = float(cfg.logit_softcap)
    logits = cap * torch.tanh(raw_logits / cap) if cap > 0 else raw_logits
    return ForwardSteps(ids_list, position, ids_list[position], tok_emb, pos_emb, embedding, blocks, final_norm,
                        raw_logits, cap, logits)


@dataclass
class Sampling:
    """What temperature, top-k and top-p do to one logit vector, and the token sampling would pick."""
    probs: torch.Tensor        # (V,) softmax(logits / temperature)
    kept: torch.Tensor         # (V,) bool: survives the top-k and top-p cut-offs
    final: torch.Tensor        # (V,) the renormalised distribution sampling draws from
    pick: int                  # the token drawn with the given seed (greedy: the argmax)


def sampling_view(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  seed: int = 0, greedy: bool = False) -> Sampling:
    """The generation settings applied to logits (V,) as gpt.generate applies them: temperature, top-k, top-p."""
    if not temperature > 0:
        raise InterpError(f"temperature must be > 0, got {temperature!r}")
    if not 0 < top_p <= 1:
        raise InterpError(f"top-p must be in (0, 1], got {top_p!r}")
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    # the generator's own filter (one definition of top-k and top-p): cut tokens come back as -inf
    filtered = filter_logits(logits.float(), temperature, int(top_k) or None, float(top_p) if top_p < 1 else None)
    kept = torch.isfinite(filtered)
    final = torch.softmax(filtered, dim=-1)
    if greedy:
        pick = int(torch.argmax(probs))
    else:
        pick = int(torch.multinomial(final, 1, generator=torch.Generator().manual_seed(int(seed))))
    return Sampling(probs, kept, final, pick)
