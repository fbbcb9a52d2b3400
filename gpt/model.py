"""A GPT in the spirit of nanoGPT, plus the ladder of simpler rungs (bigram -> one head -> multi-head -> GPT).

Two attention paths share all weights:
* the fast path (no `trace`) uses F.scaled_dot_product_attention and never materialises attention weights;
* the inspection path (a `Trace` is passed) computes the explicit softmax and routes every interesting
  activation through a named capture point, where it can be recorded or replaced (ablation, patching).
Capture is per call: a cached model shared between app sessions is never hooked or mutated.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from gpt.config import GPTConfig
from gpt.layers import Activation, Rotary, activation_functional, make_norm, norm_functional, rms_normalise, softcap


def position_wise(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Mark a Trace intervention as position-wise: what it does at a position depends only on that position's
    activations (a steering vector added everywhere, a clamped feature, a zeroed head's z). Such an intervention
    gives the same numbers whether a forward call sees the whole sequence or, with a KV cache, only the new
    positions, so gpt.generate.stream_tokens keeps its cache; an unmarked one makes it recompute every step."""
    fn.position_wise = True
    return fn


def all_position_wise(interventions: dict | None) -> bool:
    """Whether every intervention is marked with `position_wise` (True for none at all)."""
    return all(getattr(fn, "position_wise", False) for fn in (interventions or {}).values())


class Trace:
    """Named capture points for one forward call.

    names: which points to record (None = all). interventions: name -> fn(tensor) -> tensor, applied
    before recording. Recorded tensors are detached; see `capture_names(config)` for what exists.
    """

    def __init__(self, names: set[str] | None = None,
                 interventions: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None):
        self.names = None if names is None else set(names)
        self.interventions = interventions or {}
        self.acts: dict[str, torch.Tensor] = {}

    def touches(self, name: str) -> bool:
        """Whether this trace records or replaces `name` (only then must attention take its explicit path)."""
        return name in self.interventions or self.names is None or name in self.names

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        fn = self.interventions.get(name)
        if fn is not None:
            x = fn(x)
        if self.names is None or name in self.names:
            self.acts[name] = x.detach()
        return x


def capture_names(config: GPTConfig) -> list[str]:
    names = ["embed.tok"] + (["embed.pos"] if config.has_position_table else [])
    for i in range(config.n_layer if config.has_attention else 0):
        p = f"blocks.{i}."
        names += [p + "resid_pre", p + "attn.pattern", p + "attn.z", p + "attn.out", p + "resid_mid"]
        if config.has_mlp:
            names += [p + "mlp.in", p + "mlp.post", p + "mlp.out", p + "resid_post"]
    return names + ["ln_f.out", "logits"]


class KVCache:
    """Keys and values of every layer for the tokens seen so far, in buffers of max_len positions allocated on
    first use, so each new token is written in place (growing with torch.cat copied the whole cache per token
    and layer). `length` advances once per forward, after every layer has appended."""

    def __init__(self, n_layer: int, max_len: int):
        self.max_len = max_len
        self.keys: list[torch.Tensor | None] = [None] * n_layer    # each (B, nh, max_len, hs)
        self.values: list[torch.Tensor | None] = [None] * n_layer
        self.length = 0

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) at positions length..length+T; returns all keys and values so far
        (views, (B, nh, length+T, hs))."""
        B, nh, T, hs = k.shape
        end = self.length + T
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} needed")
        if self.keys[layer] is None:
            self.keys[layer] = k.new_empty(B, nh, self.max_len, hs)
            self.values[layer] = v.new_empty(B, nh, self.max_len, hs)
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.effective_n_head
        self.n_embd = config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # fused q, k, v
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        self.rotary = Rotary(config.head_size, config.block_size) if config.uses_rotary else None
        self._masks: dict[tuple, torch.Tensor] = {}  # causal masks by shape (not state: never saved)

    def causal_mask(self, T: int, past: int, device: torch.device, hidden: bool = False) -> torch.Tensor:
        """(T, past+T) bool: True where query i may see key j (j <= past+i); hidden=True gives the complement.
        Cached per shape: building it took two ops per layer and forward."""
        key = (T, past, str(device), hidden)
        mask = self._masks.get(key)
        if mask is None:
            mask = torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past)
            mask = ~mask if hidden else mask
            if len(self._masks) > 64:  # sliding generation makes many shapes; keep the cache small
                self._masks.clear()
            self._masks[key] = mask
        return mask

    def causal_bias(self, T: int, past: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(T, past+T) additive mask: 0 where query i may see key j, -inf elsewhere. Cached per shape."""
        key = ("bias", T, past, str(device), dtype)
        bias = self._masks.get(key)
        if bias is None:
            hidden = self.causal_mask(T, past, device, hidden=True)
            bias = torch.zeros(T, past + T, dtype=dtype, device=device).masked_fill(hidden, float("-inf"))
            self._masks[key] = bias
        return bias

    def explicit_attention(self, q, k, v, past: int, trace: Trace | None, prefix: str) -> torch.Tensor:
        """softmax(q k^T / sqrt(hs) + causal bias) v with the probabilities materialised (for the trace).
        q (B, nh, T, hs), k and v (B, nh, past+T, hs) -> (B, nh, T, hs)."""
        B, nh, T, hs = q.shape
        S = k.size(2)
        # one baddbmm does scale + score + mask: 3 ops (and their backward) less than matmul, mul, masked_fill
        bias = self.causal_bias(T, past, q.device, q.dtype)  # (T, S): 0 where visible, -inf where hidden
        att = torch.baddbmm(bias, q.reshape(B * nh, T, hs), k.reshape(B * nh, S, hs).transpose(1, 2),
                            alpha=1.0 / math.sqrt(hs)).view(B, nh, T, S)
        # bf16 scores hold no more than bf16 precision and the CPU/CUDA kernels accumulate in fp32, so no
        # casts around the softmax (they were 4 copies per layer and step)
        att = F.softmax(att, dim=-1)
        if trace is not None:
            att = trace(prefix + "attn.pattern", att)
        att = self.attn_dropout(att)
        y = torch.bmm(att.reshape(B * nh, T, S), v.reshape(B * nh, S, hs)).view(B, nh, T, hs)
        if trace is not None:
            y = trace(prefix + "attn.z", y)
        return y

    def forward(self, x, trace: Trace | None = None, prefix: str = "", cache: KVCache | None = None,
                layer: int = 0):
        B, T, C = x.size()
        nh, hs = self.n_head, C // self.n_head
        # On CPU the bf16 flash-attention backward is ~10x slower than the explicit softmax (measured), so
        # bf16 CPU training takes the explicit path too, recording nothing.
        qkv = self.c_attn(x)  # (B, T, 3C); bf16 under autocast even when x is fp32
        # the fused kernel never shows the weights: a trace that reads or edits them needs the explicit path
        wants_weights = trace is not None and (trace.touches(prefix + "attn.pattern") or trace.touches(prefix + "attn.z"))
        explicit = wants_weights or (qkv.device.type == "cpu" and qkv.dtype == torch.bfloat16)
        qkv = qkv.view(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        if explicit and cache is None:
            qkv = qkv.contiguous()  # one copy here instead of three inside the batched matmuls
        q, k, v = qkv.unbind(0)  # each (B, nh, T, hs)
        past = 0 if cache is None else cache.length
        q, k = self.position_qk(q, k, past)
        if cache is not None:
            k, v = cache.append(layer, k, v)  # (B, nh, past+T, hs)
        # query i sits at absolute position past+i and may see keys 0..past+i
        mask = None
        if past and T > 1:
            mask = self.causal_mask(T, past, x.device)
        if not explicit:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
                is_causal=(past == 0 and T > 1))
        else:
            y = self.explicit_attention(q, k, v, past, trace, prefix)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))

    def position_qk(self, q: torch.Tensor, k: torch.Tensor, past: int) -> tuple[torch.Tensor, torch.Tensor]:
        """QK-norm, then the rotary embedding, on q and k (B, nh, T, hs) at positions past..past+T-1 (both are
        no-ops by default). Norm first, so the rotation (which keeps norms) acts on unit-RMS vectors."""
        if self.qk_norm:
            q, k = rms_normalise(q).to(k.dtype), rms_normalise(k).to(k.dtype)
        if self.rotary is not None:
            q, k = self.rotary(q, past), self.rotary(k, past)
        return q, k


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.act = Activation(config.activation)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, trace: Trace | None = None, prefix: str = ""):
        h = self.act(self.c_fc(x))  # (B, T, 4C): the neurons' activations
        if trace is not None:
            h = trace(prefix + "mlp.post", h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-norm transformer block; without an MLP for the attention-only ladder rungs. ln_1/ln_2 hold whichever
    normalisation config.norm picks (LayerNorm, RMSNorm or an identity): the names stay for every option."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        if config.has_mlp:
            self.ln_2 = make_norm(config)
            self.mlp = MLP(config)
        else:
            self.mlp = None

    def forward(self, x, trace: Trace | None = None, prefix: str = "", cache: KVCache | None = None,
                layer: int = 0):
        if trace is not None:
            x = trace(prefix + "resid_pre", x)
        attn_out = self.attn(self.ln_1(x), trace, prefix, cache, layer)
        if trace is not None:
            attn_out = trace(prefix + "attn.out", attn_out)
        x = x + attn_out
        if trace is not None:
            x = trace(prefix + "resid_mid", x)
        if self.mlp is not None:
            mlp_in = self.ln_2(x)
            if trace is not None:
                mlp_in = trace(prefix + "mlp.in", mlp_in)
            mlp_out = self.mlp(mlp_in, trace, prefix)
            if trace is not None:
                mlp_out = trace(prefix + "mlp.out", mlp_out)
            x = x + mlp_out
            if trace is not None:
                x = trace(prefix + "resid_post", x)
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.grad_checkpoint = False
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        # no position table with rotary embeddings: positions enter as rotations of q and k inside attention
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.has_position_table else None
        if config.has_attention:
            self.drop = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        else:  # bigram: the next token depends only on the current one
            self.drop, self.blocks = None, nn.ModuleList()
        self.ln_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.ties_embeddings:
            # weight tying (Press & Wolf 2017); a tied bigram could only express symmetric scores
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual projections by depth
                if config.zero_init_proj:  # modded-nanogpt: every block starts as the identity
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * max(1, config.n_layer)))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, trace: Trace | None = None,
                kv_cache: KVCache | None = None):
        """idx (B, T) token ids -> (logits (B, T, vocab), loss or None)."""
        B, T = idx.size()
        past = kv_cache.length if kv_cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens is longer than block_size "
                             f"{self.config.block_size}; crop the context first")
        tok = self.wte(idx)  # (B, T, C)
        if trace is not None:
            tok = trace("embed.tok", tok)
        if self.wpe is not None:
            pos = self.wpe(torch.arange(past, past + T, device=idx.device))  # (T, C)
            if trace is not None:
                pos = trace("embed.pos", pos)
            x = self.drop(tok + pos)
        else:
            x = tok
        return self.forward_from(0, x, trace, kv_cache, targets)

    def forward_from(self, layer: int, x: torch.Tensor, trace: Trace | None = None, kv_cache: KVCache | None = None,
                     targets: torch.Tensor | None = None, last_only: bool = False):
        """The model from the residual stream x (B, T, C) entering block `layer` (0: the embeddings, what forward
        passes; n_layer: after the last block) to (logits, loss): blocks layer.. , the final norm and the head,
        through the same capture points as forward (blocks.i.*, ln_f.out, logits), so a trace records and
        intervenes exactly as in a full forward (patching and the lab start mid-model with it; the logit lens is
        layer n_layer). last_only: only the last position goes through the final norm and the head (ln_f.out and
        logits are then (B, 1, ...)): a metric read at the last position needs no (B, T, vocab) logits."""
        if not 0 <= layer <= len(self.blocks):
            raise ValueError(f"layer {layer} is not a residual boundary of this model (0..{len(self.blocks)})")
        if kv_cache is not None and layer != 0:
            raise ValueError("a KV cache is filled by whole forward passes: start at layer 0")
        T = x.size(1)
        for i in range(layer, len(self.blocks)):
            block = self.blocks[i]
            if self.grad_checkpoint and self.training and trace is None and kv_cache is None:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x, trace, f"blocks.{i}.", kv_cache, i)
        if kv_cache is not None:
            kv_cache.length += T
        if last_only:
            x = x[:, -1:]
        x = self.ln_f(x)
        if trace is not None:
            x = trace("ln_f.out", x)
        logits = self.unembed(x)  # (B, T, vocab)
        if trace is not None:
            logits = trace("logits", logits)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                   ignore_index=-1)
        return logits, loss

    @torch.inference_mode()
    def decode_next(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """idx (B, 1): one new token per sequence -> logits (B, vocab), appending its keys and values to cache.

        forward() specialised to generation: one query sees every cached key (no mask), no trace, no dropout,
        and functional calls on the modules' own weights, because at one token the time goes to per-call
        overhead, not arithmetic (with the preallocated cache: 1.0 -> ~0.75 ms per token at the nanoGPT CPU
        shape, bench/generate.py). tests/test_generate.py checks it against forward."""
        B = idx.size(0)
        pos = cache.length
        if pos + 1 > self.config.block_size:
            raise ValueError(f"sequence of {pos + 1} tokens is longer than block_size {self.config.block_size}")
        x = F.embedding(idx[:, 0], self.wte.weight)  # (B, C)
        if self.wpe is not None:
            x = x + self.wpe.weight[pos]
        for i, block in enumerate(self.blocks):
            attn, C = block.attn, block.attn.n_embd
            nh = attn.n_head
            h = norm_functional(block.ln_1, x)
            qkv = F.linear(h, attn.c_attn.weight, attn.c_attn.bias)  # (B, 3C)
            q, k, v = qkv.view(B, 3, nh, 1, C // nh).unbind(1)  # each (B, nh, 1, hs)
            q, k = attn.position_qk(q, k, pos)
            keys, values = cache.append(i, k, v)  # (B, nh, pos+1, hs)
            y = F.scaled_dot_product_attention(q, keys, values)  # (B, nh, 1, hs)
            x = x + F.linear(y.view(B, C), attn.c_proj.weight, attn.c_proj.bias)
            if block.mlp is not None:
                mlp = block.mlp
                h = norm_functional(block.ln_2, x)
                h = F.linear(h, mlp.c_fc.weight, mlp.c_fc.bias)
                h = activation_functional(mlp.act.name, h, inplace=True)
                x = x + F.linear(h, mlp.c_proj.weight, mlp.c_proj.bias)
        cache.length += 1
        return self.unembed(norm_functional(self.ln_f, x))  # (B, vocab)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """Final-norm output (..., C) -> logits (..., vocab): the LM head, then the soft cap if the config has one.
        The logit lens calls this too, so its logits are the model's own."""
        return softcap(self.lm_head(x), self.config.logit_softcap)

    def new_kv_cache(self) -> KVCache:
        return KVCache(len(self.blocks), self.config.block_size)

    # ---- size and cost estimates (shown on the Train page) ----
    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())  # tied weights counted once
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
        return n
