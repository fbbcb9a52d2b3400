"""The one way the interpretability layer looks inside a model: `run_with_cache` (in the spirit of
TransformerLens' `run_with_cache`), plus the one check every request's token ids go through.

The model is never hooked or mutated: each call passes a fresh `gpt.model.Trace`, so a model shared between
app sessions stays safe. Layout of what comes back (B = batch, T = tokens, C = n_embd, nh = heads):

    cache["embed.tok"]             (B, T, C)       token embeddings
    cache["embed.pos"]             (T, C)          learned positions (absent for bigram and rotary models)
    cache["blocks.{i}.resid_pre"]  (B, T, C)       residual stream entering block i
    cache["blocks.{i}.attn.pattern"] (B, nh, T, T) attention probabilities; row = query, column = key
    cache["blocks.{i}.attn.z"]     (B, nh, T, hs)  each head's weighted sum of values, before W_O
    cache["blocks.{i}.attn.out"]   (B, T, C)       the attention layer's output (after W_O)
    cache["blocks.{i}.resid_mid"]  (B, T, C)       after the attention residual add
    cache["blocks.{i}.mlp.in"]     (B, T, C)       the MLP's input: resid_mid after the block's second norm (GPT rung only)
    cache["blocks.{i}.mlp.post"]   (B, T, 4C)      the MLP's hidden neurons after the activation (GPT rung only)
    cache["blocks.{i}.mlp.out"]    (B, T, C)       the MLP's output (GPT rung only)
    cache["blocks.{i}.resid_post"] (B, T, C)       after the MLP residual add (GPT rung only)
    cache["ln_f.out"]              (B, T, C)       after the final norm
    cache.logits                   (B, T, vocab)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from gpt.model import GPT, Trace, capture_names


class InterpError(ValueError):
    """A request the model cannot answer (an empty prompt, one longer than block_size, a bigram asked for
    attention...). The message says why in words a learner can act on; pages show it as it is."""


def check_ids(model: GPT, ids) -> torch.Tensor:
    """Token ids (a list, a 1-D or a (B, T) tensor) as a (B, T) long tensor on the model's device."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.size(1) == 0:
        raise InterpError("the prompt is empty: type at least one character")
    if ids.size(1) > model.config.block_size:
        raise InterpError(f"the prompt has {ids.size(1)} tokens, longer than this model's context of "
                          f"{model.config.block_size} (block_size); shorten it")
    if int(ids.min()) < 0 or int(ids.max()) >= model.config.vocab_size:
        raise InterpError(f"token ids must lie in [0, {model.config.vocab_size})")
    return ids.to(next(model.parameters()).device)


def boundary_label(boundary: int) -> str:
    """THE name of a residual boundary, on every page and figure: 0 = "embeddings" (the stream entering block 0),
    b = "after block {b-1}" (the stream leaving block b-1; the last one enters the final norm)."""
    return "embeddings" if boundary == 0 else f"after block {boundary - 1}"


def residual_boundaries(model: GPT) -> list[tuple[str, str]]:
    """(boundary_label, capture point) of the residual stream at every boundary: before the first block, then
    after each block. The logit lens reads them, patching pastes into them, steering adds to them."""
    if not model.config.has_attention:
        raise InterpError("a bigram model has no layers to look through")
    after = "resid_post" if model.config.has_mlp else "resid_mid"
    return [(boundary_label(0), "blocks.0.resid_pre")] + [
        (boundary_label(i + 1), f"blocks.{i}.{after}") for i in range(model.config.n_layer)]


def require_attention(model: GPT) -> None:
    if not model.config.has_attention:
        raise InterpError("a bigram model has no attention: each prediction looks only at the current token")


@dataclass
class ActivationCache:
    """What one forward pass recorded: activations by capture-point name (see the module docstring)."""
    acts: dict[str, torch.Tensor]
    logits: torch.Tensor  # (B, T, vocab)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.acts:
            raise KeyError(f"{name!r} was not recorded; recorded: {sorted(self.acts)}")
        return self.acts[name]

    def __contains__(self, name: str) -> bool:
        return name in self.acts

    def attention(self) -> torch.Tensor:
        """(B, L, nh, T, T) attention probabilities of every layer, as float32."""
        layers = sorted(int(k.split(".")[1]) for k in self.acts if k.endswith(".attn.pattern"))
        if not layers:
            raise InterpError("no attention patterns were recorded")
        return torch.stack([self.acts[f"blocks.{i}.attn.pattern"].float() for i in layers], 1)


@torch.no_grad()
def run_with_cache(model: GPT, ids, names: set[str] | None = None,
                   interventions: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> ActivationCache:
    """Run `model` on validated `ids` once through its inspection path and return the recorded activations.

    names: which capture points to keep (None = all of `capture_names(model.config)`); interventions:
    name -> fn(tensor) -> tensor applied at that point first (ablation, patching, steering)."""
    ids = check_ids(model, ids)
    if names is not None:
        unknown = set(names) - set(capture_names(model.config))
        if unknown:
            raise InterpError(f"this model has no capture points {sorted(unknown)}")
    trace = Trace(names, interventions)
    logits, _ = model(ids, trace=trace)
    return ActivationCache(trace.acts, logits)


def attention_names(model: GPT) -> set[str]:
    return {f"blocks.{i}.attn.pattern" for i in range(model.config.n_layer)}


def attention_patterns(model: GPT, ids, interventions=None) -> torch.Tensor:
    """Attention weights of every layer and head: (B, L, nh, T, T), float32."""
    require_attention(model)
    return run_with_cache(model, ids, attention_names(model), interventions).attention()
