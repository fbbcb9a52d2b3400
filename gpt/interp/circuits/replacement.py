"""The local replacement model of one prompt (Ameisen et al., "Circuit Tracing", 2025), for this library's GPT.

Three things make a GPT nonlinear in its residual stream: the MLPs, the norms' division by a scale, and the
attention softmax. For one prompt we
* replace each MLP by its transcoder plus an *error* vector per position, the exact difference
  `mlp.out - transcoder(mlp.in)`, so the replacement reproduces the model's activations exactly (a skip
  transcoder's dense path `mlp.in @ W_skip` stays in the model as one more linear path, like attention). With a
  cross-layer transcoder (gpt.interp.features.crosslayer) layer j's MLP output is the sum over i <= j of layer i's
  features through W_dec_i[:, j - i], plus b_dec_j and layer j's error vector;
* freeze every norm's scale (LayerNorm's sqrt(var + eps), RMSNorm's rms) at this prompt's values, so a norm becomes
  `(x - mean(x)) / scale * weight + bias`, affine in x;
* freeze the attention patterns, so attention becomes `pattern @ (norm(x) @ W_V + b_V) @ W_O + b_O`, affine in x.

With the features' activations held as constants, what remains between any two nodes is affine: each node's input
(a feature's pre-activation, a logit before any soft cap) is a sum of direct effects of the nodes below it plus a
constant made of biases. `gpt.interp.circuits.graph` reads those direct effects off with one batched backward
pass through the frozen attention layers.

Residual slots: r_0 = the embeddings, r_s = the residual entering block s, r_L = the final residual. Block l reads
r_l, adds attention (giving resid_mid, which its transcoder reads through ln_2) and writes its MLP output into
r_{l+1}. So transcoder features and error nodes of layer l write slot l+1 (a CLT's layer-l features also write
every later slot); embeddings write slot 0. `Transcoders` (gpt.interp.features.stack) gives PLTs and a CLT one
interface; every function here takes either (a list of per-layer LoadedDictionary, a LoadedCrossLayer, or one).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from gpt.interp.capture import InterpError, check_ids, run_with_cache
from gpt.interp.features.crosslayer import LoadedCrossLayer, list_crosslayers
from gpt.interp.features.dictionary import LoadedDictionary, list_dictionaries, weights_digest
from gpt.interp.features.stack import Transcoders, as_transcoders
from gpt.model import GPT
from gpt.runs import WEIGHTS


class CircuitError(InterpError):
    """Transcoders that cannot explain this model (missing layer, other weights, wrong shape), or a model the
    method does not apply to. The message names the file or says why."""


# ---- norms with a frozen scale ----

def norm_scale(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(..., C) -> (...,): the scale the norm divides by at x (1 for no norm)."""
    if isinstance(norm, nn.LayerNorm):
        return (x.var(-1, unbiased=False) + norm.eps).sqrt()
    if isinstance(norm, nn.RMSNorm):
        eps = norm.eps if norm.eps is not None else torch.finfo(x.dtype).eps
        return (x.pow(2).mean(-1) + eps).sqrt()
    return torch.ones(x.shape[:-1], dtype=x.dtype, device=x.device)


def frozen_norm(norm: nn.Module, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """norm(x) with its scale (...,) given instead of computed: affine in x. Equals norm(x) at the frozen point."""
    if isinstance(norm, nn.LayerNorm):
        x = x - x.mean(-1, keepdim=True)
    elif not isinstance(norm, nn.RMSNorm):
        return x
    y = x / scale[..., None]
    if norm.weight is not None:
        y = y * norm.weight
    if getattr(norm, "bias", None) is not None:
        y = y + norm.bias
    return y


def frozen_norm_backward(norm: nn.Module, grad: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The transpose of frozen_norm's linear part: a gradient (..., C) at its output -> the gradient at its input."""
    if not isinstance(norm, (nn.LayerNorm, nn.RMSNorm)):
        return grad
    factor = 1 / scale[..., None]  # (..., 1): one pass over grad instead of two when there is a weight
    if norm.weight is not None:
        factor = factor * norm.weight
    g = grad * factor
    if isinstance(norm, nn.LayerNorm):  # the centring x - mean(x) is a symmetric projection
        g = g - g.mean(-1, keepdim=True)
    return g


# ---- the transcoders of a run ----

def load_transcoders(run_dir: str | Path, model: GPT | None = None) -> list[LoadedDictionary]:
    """The run's transcoders (gpt.interp.features format), one per layer in layer order, checked against the run's
    weights (digest) and the model's shape. CircuitError names the missing layer or the refused file."""
    run_dir = Path(run_dir)
    if model is not None:
        refuse_model(model)
    weights = run_dir / WEIGHTS
    digest = weights_digest(weights) if weights.is_file() else None
    good, broken = list_dictionaries(run_dir, model.config if model is not None else None, digest)
    n_layer = model.config.n_layer if model is not None else None
    return pick_transcoders(good, broken, n_layer, run_dir.name)


def pick_transcoders(good: list[LoadedDictionary], broken: list, n_layer: int | None,
                     run_name: str) -> list[LoadedDictionary]:
    """From a run's listed dictionaries (list_dictionaries' two lists), one transcoder per layer: where a layer has
    several, the one named transcoder-L{layer} wins, else the first by name. CircuitError says which layers are
    missing and why any transcoder folder was refused."""
    by_layer: dict[int, list[LoadedDictionary]] = {}
    for d in good:
        if d.config.kind == "transcoder":
            by_layer.setdefault(d.config.layer, []).append(d)
    if n_layer is None:
        n_layer = max(by_layer) + 1 if by_layer else 0
    missing = [layer for layer in range(n_layer) if layer not in by_layer]
    if missing or not by_layer:
        refused = "; ".join(f"{b.name}: {b.error}" for b in broken)
        what = (f"no transcoder for layer{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}"
                if by_layer else "no transcoders")
        raise CircuitError(f"{run_name} has {what}: an attribution graph needs one per layer (train them on the "
                           f"Features page or with `gpt-features train`)"
                           + (f". Refused: {refused}" if refused else ""))
    chosen = []
    for layer in range(n_layer):
        options = by_layer[layer]
        preferred = [d for d in options if d.name == f"transcoder-L{layer}"]
        chosen.append((preferred or sorted(options, key=lambda d: d.name))[0])
    return chosen


def load_crosslayer_transcoder(run_dir: str | Path, model: GPT | None = None,
                               name: str | None = None) -> LoadedCrossLayer:
    """The run's cross-layer transcoder (the one called `name`, else the first by name), checked against the run's
    weights and the model. CircuitError when there is none or it is refused (with the reason)."""
    run_dir = Path(run_dir)
    if model is not None:
        refuse_model(model)
    weights = run_dir / WEIGHTS
    good, broken = list_crosslayers(run_dir, model.config if model is not None else None,
                                    weights_digest(weights) if weights.is_file() else None)
    chosen = [c for c in good if name is None or c.name == name]
    if not chosen:
        refused = "; ".join(f"{b.name}: {b.error}" for b in broken if name is None or b.name == name)
        raise CircuitError(f"{run_dir.name} has no cross-layer transcoder{f' named {name}' if name else ''} (train "
                           f"one with `gpt-features train {run_dir} --kind clt`)" + (f". Refused: {refused}"
                                                                                      if refused else ""))
    return chosen[0]


def refuse_model(model: GPT) -> None:
    """Models an attribution graph does not apply to, with the reason a learner can act on."""
    cfg = model.config
    if not cfg.has_attention:
        raise CircuitError("a bigram model has no layers: its prediction is a lookup of the current token's row, "
                           "there is no circuit to trace (the Embeddings page shows that table)")
    if not cfg.has_mlp:
        raise CircuitError("this model has attention only, no MLPs, so there are no transcoder features; its "
                           "circuits are attention heads (see Attention, Heads & detectors and Why this token)")


def check_transcoders(model: GPT, transcoders) -> Transcoders:
    """transcoders (a list of per-layer transcoders, a CLT, or Transcoders) as Transcoders, checked against the
    model: one per layer, as wide as the model."""
    refuse_model(model)
    n_layer, width = model.config.n_layer, model.config.n_embd
    try:
        tc = as_transcoders(transcoders)
    except ValueError as e:  # DictionaryError: a transcoder in the wrong place
        raise CircuitError(str(e)) from None
    if tc.n_layer != n_layer:
        raise CircuitError(f"{tc.names[0]} spans {tc.n_layer} layers, but the model has {n_layer}" if tc.is_crosslayer
                           else f"an attribution graph needs one transcoder per layer ({n_layer}); got {tc.n_layer}")
    configs = [tc.clt] if tc.is_crosslayer else tc.plts
    for t in configs:
        if t.config.d_in != width or t.config.d_out != width:
            raise CircuitError(f"{t.name}: d_in/d_out are {t.config.d_in}/{t.config.d_out}, but the model is "
                               f"{width} wide")
    return tc


# ---- one prompt, frozen ----

def work_dtype(model: GPT) -> torch.dtype:
    """fp32, or fp64 for a model in fp64 (the tests use one to check the algebra far below fp32's noise)."""
    return torch.float64 if next(model.parameters()).dtype == torch.float64 else torch.float32

@dataclass
class FrozenPrompt:
    """Everything the replacement model holds fixed for one prompt (T tokens, L layers, C wide, n features)."""
    ids: torch.Tensor               # (T,)
    embeddings: torch.Tensor        # (T, C) token (+ position) embedding: what enters the first block
    attn_scales: torch.Tensor       # (L, T) ln_1's scale per layer and position
    mlp_scales: torch.Tensor        # (L, T) ln_2's scale
    final_scales: torch.Tensor      # (T,) ln_f's scale
    patterns: torch.Tensor          # (L, nh, T, T) attention probabilities
    pre_activations: list[torch.Tensor]  # L x (T, n_l) transcoder pre-activations on the real mlp.in
    activations: list[torch.Tensor]      # L x (T, n_l) transcoder feature activations
    errors: torch.Tensor            # (L, T, C) mlp.out - transcoder(mlp.in): the error nodes' vectors
    logits: torch.Tensor            # (T, V) the model's own logits (after any soft cap)
    raw_logits: torch.Tensor        # (T, V) before the soft cap (what logit nodes attribute)
    token_embeddings: torch.Tensor | None = None  # (T, C) the token embedding alone (circuit-tracer's embedding nodes)


@torch.no_grad()
def freeze(model: GPT, ids, transcoders) -> FrozenPrompt:
    """One forward pass of the real model on ids (T,), recording what the replacement model freezes."""
    tc = check_transcoders(model, transcoders)
    ids = check_ids(model, ids)
    if ids.size(0) != 1:
        raise CircuitError("an attribution graph explains one prompt at a time")
    L = model.config.n_layer
    names = {"embed.tok", "ln_f.out", "logits"}
    if model.config.has_position_table:
        names.add("embed.pos")
    for layer in range(L):
        p = f"blocks.{layer}."
        names |= {p + "resid_pre", p + "attn.pattern", p + "resid_mid", p + "mlp.in", p + "mlp.out"}
    cache = run_with_cache(model, ids, names)
    dt = work_dtype(model)
    cache = {k: v.to(dt) for k, v in cache.acts.items()}
    emb = cache["embed.tok"][0]
    if "embed.pos" in cache:
        emb = emb + cache["embed.pos"]
    final_resid = cache[f"blocks.{L - 1}.resid_mid"][0] + cache[f"blocks.{L - 1}.mlp.out"][0]
    pre, act, errors = [], [], []
    for layer in range(L):
        mlp_in = cache[f"blocks.{layer}.mlp.in"][0]
        pre.append(tc.pre_activations(layer, mlp_in))
        act.append(tc.activate(layer, pre[-1]))
        errors.append(cache[f"blocks.{layer}.mlp.out"][0] - tc.decode(layer, act, mlp_in))
    blocks = model.blocks
    raw = model.lm_head(cache["ln_f.out"][0])
    return FrozenPrompt(
        ids=ids[0].cpu(), embeddings=emb,
        attn_scales=torch.stack([norm_scale(b.ln_1, cache[f"blocks.{i}.resid_pre"][0])
                                 for i, b in enumerate(blocks)]),
        mlp_scales=torch.stack([norm_scale(b.ln_2, cache[f"blocks.{i}.resid_mid"][0])
                                for i, b in enumerate(blocks)]),
        final_scales=norm_scale(model.ln_f, final_resid),
        patterns=torch.stack([cache[f"blocks.{i}.attn.pattern"][0] for i in range(L)]),
        pre_activations=pre, activations=act, errors=torch.stack(errors),
        logits=cache["logits"][0], raw_logits=raw, token_embeddings=cache["embed.tok"][0])


# ---- the frozen attention layer and its transpose ----

def _value_output(model: GPT, layer: int):
    attn = model.blocks[layer].attn
    C = attn.n_embd
    w_v = attn.c_attn.weight[2 * C:]  # (C out, C in)
    b_v = attn.c_attn.bias[2 * C:] if attn.c_attn.bias is not None else None
    b_o = attn.c_proj.bias if attn.c_proj.bias is not None else None
    return attn.n_head, w_v, b_v, attn.c_proj.weight, b_o


def frozen_attention(model: GPT, frozen: FrozenPrompt, layer: int, resid: torch.Tensor) -> torch.Tensor:
    """resid (..., T, C) entering block `layer` -> its attention output with the pattern and ln_1 scale frozen."""
    T, C = resid.shape[-2:]
    nh, w_v, b_v, w_o, b_o = _value_output(model, layer)
    h = frozen_norm(model.blocks[layer].ln_1, resid, frozen.attn_scales[layer, :T])
    v = h @ w_v.T + (b_v if b_v is not None else 0)                      # (..., T, C)
    v = v.unflatten(-1, (nh, C // nh)).transpose(-3, -2)                  # (..., nh, T, hs)
    z = (frozen.patterns[layer, :, :T, :T] @ v).transpose(-3, -2).flatten(-2)  # (..., T, C)
    return z @ w_o.T + (b_o if b_o is not None else 0)


def frozen_attention_backward(model: GPT, frozen: FrozenPrompt, layer: int, grad: torch.Tensor) -> torch.Tensor:
    """The transpose of frozen_attention's linear part: grad (B, T, C) at its output -> the gradient at its input
    (through ln_1 with its frozen scale). Biases are constants and drop out."""
    T, C = grad.shape[-2:]
    nh, w_v, _, w_o, _ = _value_output(model, layer)
    gz = (grad @ w_o).unflatten(-1, (nh, C // nh)).transpose(-3, -2)      # (B, nh, T, hs)
    gv = frozen.patterns[layer, :, :T, :T].transpose(-1, -2) @ gz         # (B, nh, T, hs): query i -> key j
    gh = gv.transpose(-3, -2).flatten(-2) @ w_v                           # (B, T, C) at ln_1's output
    return frozen_norm_backward(model.blocks[layer].ln_1, gh, frozen.attn_scales[layer, :T])


def frozen_attention_backward_from(model: GPT, frozen: FrozenPrompt, layer: int, grad: torch.Tensor,
                                   positions: torch.Tensor, T: int) -> torch.Tensor:
    """frozen_attention_backward for gradients that sit at one position each: grad (B, C) at positions (B,) ->
    the gradient (B, T, C) at the attention's input. The first step of every feature target: skipping the zero
    positions saves one of its two (B, T, C) x (C, C) products and the pattern product."""
    B, C = grad.shape
    nh, w_v, _, w_o, _ = _value_output(model, layer)
    gz = (grad @ w_o).view(B, nh, 1, C // nh)                             # (B, nh, 1, hs)
    rows = frozen.patterns[layer][:, positions, :T].transpose(0, 1)       # (B, nh, T): what each query attended to
    gv = rows[..., None] * gz                                             # (B, nh, T, hs)
    gh = gv.transpose(1, 2).reshape(B, T, C) @ w_v                        # (B, T, C) at ln_1's output
    return frozen_norm_backward(model.blocks[layer].ln_1, gh, frozen.attn_scales[layer, :T])


def skip_backward(model: GPT, frozen: FrozenPrompt, layer: int, w_skip: torch.Tensor,
                  grad: torch.Tensor) -> torch.Tensor:
    """A skip transcoder's linear path resid_mid -> ln_2 (frozen scale) -> @ W_skip (d_in, d_out), transposed:
    grad (B, T, C) at the MLP's output -> the gradient it adds at resid_mid (the caller skips plain transcoders)."""
    T = grad.size(-2)
    return frozen_norm_backward(model.blocks[layer].ln_2, grad @ w_skip.to(grad.dtype).T, frozen.mlp_scales[layer, :T])


# ---- the replacement model's forward ----

@dataclass
class ReplacementOutput:
    pre_activations: list[torch.Tensor]  # L x (T, n_l)
    activations: list[torch.Tensor]      # L x (T, n_l)
    raw_logits: torch.Tensor             # (T, V) before any soft cap
    logits: torch.Tensor                 # (T, V)


@torch.no_grad()
def replacement_forward(model: GPT, frozen: FrozenPrompt, transcoders,
                        embeddings: torch.Tensor | None = None, errors: torch.Tensor | None = None,
                        activations: list[torch.Tensor] | None = None,
                        clamp: dict[tuple[int, int, int], float] | None = None) -> ReplacementOutput:
    """Run the replacement model: frozen norms and attention, transcoders plus error vectors in place of MLPs.

    embeddings (T, C) and errors (L, T, C) default to the prompt's own. activations: the features held as
    constants (the linear model the graph's edges live in); None recomputes them from the frozen pre-activations
    with each transcoder's activation function (the model interventions run). clamp: {(layer, position, feature):
    value} set after that, both ways."""
    tc = as_transcoders(transcoders)
    emb = frozen.embeddings if embeddings is None else embeddings
    errs = frozen.errors if errors is None else errors
    resid = emb
    pres, acts = [], []
    for layer in range(tc.n_layer):
        resid = resid + frozen_attention(model, frozen, layer, resid)
        mlp_in = frozen_norm(model.blocks[layer].ln_2, resid, frozen.mlp_scales[layer, :resid.size(-2)])
        pre = tc.pre_activations(layer, mlp_in)
        act = tc.activate(layer, pre) if activations is None else activations[layer].clone()
        for (cl, cp, cf), value in (clamp or {}).items():
            if cl == layer:
                act[cp, cf] = value
        pres.append(pre)
        acts.append(act)
        resid = resid + tc.decode(layer, acts, mlp_in) + errs[layer]
    final = frozen_norm(model.ln_f, resid, frozen.final_scales[:resid.size(-2)])
    raw = model.lm_head(final)
    return ReplacementOutput(pres, acts, raw, model.unembed(final))
