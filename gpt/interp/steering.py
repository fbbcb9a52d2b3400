"""Steering (activation addition, Turner et al. 2023): add coefficient x vector to the residual stream at one layer
boundary, at every position, while the model generates, and see how the text changes.

Vectors, each a direction in the residual stream (C,):
* `mean_difference`: the mean residual stream over prompts of set A minus that over set B (e.g. lines of one
  character vs another), at the boundary where it will be added;
* `neuron_direction`: what one MLP neuron writes when it fires (its column of the MLP's output projection);
* `head_direction`: one head's mean output over a prompt (its attn.z through its slice of W_O).

A coefficient of 0 is the model untouched: that column is plain generation (gpt.generate.stream_tokens) by
construction, so it equals the Generate page's text for the same seed exactly.

`clamp_feature` is the other way to steer with a dictionary feature: instead of adding its direction, hold its
activation at a value (0 = off) wherever the model runs.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from gpt.generate import GenerationError, crop_prompt, new_token_ids
from gpt.interp.capture import InterpError, boundary_label, check_ids, require_attention, run_with_cache
from gpt.interp.patching import residual_points
from gpt.model import GPT, position_wise


def boundary_point(model: GPT, boundary: int) -> str:
    """The capture point of residual boundary `boundary` (boundary_label: 0 = embeddings, b = after block b-1)."""
    points = residual_points(model)  # refuses a bigram (no layers)
    if not isinstance(boundary, int) or not 0 <= boundary < len(points):
        raise InterpError(f"layer boundary {boundary!r} does not exist: this model has 0 ({boundary_label(0)}) .. "
                          f"{len(points) - 1} ({boundary_label(len(points) - 1)})")
    return points[boundary]


@torch.no_grad()
def mean_residual(model: GPT, prompts: list, boundary: int) -> torch.Tensor:
    """(C,) the residual stream at `boundary`, averaged over the positions of each prompt, then over prompts."""
    name = boundary_point(model, boundary)
    if not prompts:
        raise InterpError("give at least one prompt for each side")
    # a prompt longer than the context counts by its last block_size tokens (the one crop policy)
    means = [run_with_cache(model, crop_prompt(ids, model.config.block_size)[0], {name})[name][0].mean(0)
             for ids in prompts]
    return torch.stack(means).mean(0).float()


def mean_difference(model: GPT, prompts_a: list, prompts_b: list, boundary: int) -> torch.Tensor:
    """(C,) mean residual over prompts_a minus that over prompts_b (token-id lists), at `boundary`."""
    return mean_residual(model, prompts_a, boundary) - mean_residual(model, prompts_b, boundary)


def neuron_direction(model: GPT, layer: int, neuron: int) -> torch.Tensor:
    """(C,) what neuron `neuron` of block `layer`'s MLP adds to the residual stream per unit of activation."""
    cfg = model.config
    if not cfg.has_mlp:
        raise InterpError("this model has no MLPs, so no neurons: pick a GPT model or another vector")
    if not 0 <= layer < cfg.n_layer:
        raise InterpError(f"layer {layer} does not exist: this model has layers 0..{cfg.n_layer - 1}")
    hidden = model.blocks[layer].mlp.c_proj.weight.size(1)  # (C, 4C)
    if not 0 <= neuron < hidden:
        raise InterpError(f"neuron {neuron} does not exist: each MLP has neurons 0..{hidden - 1}")
    return model.blocks[layer].mlp.c_proj.weight[:, neuron].detach().float().clone()


@torch.no_grad()
def head_direction(model: GPT, ids, layer: int, head: int) -> torch.Tensor:
    """(C,) head `head` of block `layer`: its output in the residual stream, averaged over the prompt's positions."""
    require_attention(model)
    cfg = model.config
    if not (0 <= layer < cfg.n_layer and 0 <= head < cfg.effective_n_head):
        raise InterpError(f"head L{layer}H{head} does not exist: this model has layers 0..{cfg.n_layer - 1} and "
                          f"heads 0..{cfg.effective_n_head - 1}")
    z = run_with_cache(model, ids, {f"blocks.{layer}.attn.z"})[f"blocks.{layer}.attn.z"][0, head]  # (T, hs)
    hs = cfg.head_size
    W_O = model.blocks[layer].attn.c_proj.weight[:, head * hs:(head + 1) * hs]  # (C, hs)
    return (z.float() @ W_O.float().T).mean(0)  # (C,)


@torch.no_grad()
def typical_residual_norm(model: GPT, ids, boundary: int) -> float:
    """Mean length of the residual stream at `boundary` over a prompt: the scale a steering vector competes with."""
    name = boundary_point(model, boundary)
    return float(run_with_cache(model, ids, {name})[name][0].float().norm(dim=-1).mean())


def steer_intervention(vector: torch.Tensor, coefficient: float):
    @position_wise
    def add(x):  # x (B, T, C): every position of this forward call
        return x + coefficient * vector.to(x.dtype)
    return add


def clamp_feature(loaded, feature: int, value: float) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Trace interventions that hold one dictionary feature at `value` at every position ("clamping", as in
    Templeton et al. 2024): the dictionary's output site gets (value - the feature's activation there) * its
    decoder row, the activation read from its input site as it is in this very forward call (so what earlier
    layers did is seen). value 0 switches the feature off where it fired; other features are left alone."""
    cfg = loaded.config
    n = cfg.n_features
    if not (isinstance(feature, int) and 0 <= feature < n):
        raise InterpError(f"feature {feature!r} does not exist: {loaded.name} has features 0..{n - 1}")
    if not math.isfinite(value):
        raise InterpError(f"a clamp value must be a finite number (got {value})")
    module = loaded.module
    row = module.W_dec[feature].detach()
    seen: dict[str, torch.Tensor] = {}

    @position_wise  # the input seen at these very positions, in this very forward call
    def remember(x):
        seen["in"] = x
        return x

    @position_wise
    def clamp(out):
        act = module.encode(seen.get("in", out).float())[..., feature]  # (B, T)
        return out + ((value - act)[..., None] * row).to(out.dtype)

    if cfg.input == cfg.output:  # an SAE reads and writes the same site
        return {cfg.output: clamp}
    return {cfg.input: remember, cfg.output: clamp}


def generate_with(model: GPT, prompt_ids: list[int], interventions: dict | None, max_new_tokens: int = 100,
                  **sampling) -> list[int]:
    """New token ids with `interventions` (capture point -> fn) at every position of every forward call: the one
    sampler, gpt.generate.stream_tokens (its sampling keywords and defaults; None or {} is plain generation).
    The prompt is cropped to its last block_size tokens."""
    ids, _ = crop_prompt(prompt_ids, model.config.block_size)
    check_ids(model, ids)
    try:
        return new_token_ids(model, ids, max_new_tokens, interventions=interventions, **sampling)
    except GenerationError as e:
        raise InterpError(str(e)) from None


def generate_steered(model: GPT, prompt_ids: list[int], vector: torch.Tensor, boundary: int, coefficient: float,
                     **sampling) -> list[int]:
    """New token ids with coefficient * vector added to the residual stream at `boundary` for every position;
    coefficient 0 is plain generation (generate_with's sampling keywords)."""
    vector = torch.as_tensor(vector, dtype=torch.float32)
    if vector.shape != (model.config.n_embd,):
        raise InterpError(f"a steering vector has {model.config.n_embd} numbers (n_embd), got {tuple(vector.shape)}")
    steer = None
    if coefficient != 0:
        device = next(model.parameters()).device
        steer = {boundary_point(model, boundary): steer_intervention(vector.to(device), float(coefficient))}
    return generate_with(model, prompt_ids, steer, **sampling)


def generate_clamped_side_by_side(model: GPT, prompt_ids: list[int], loaded, feature: int,
                                  values: list[float | None], **sampling) -> list[list[int]]:
    """One generation per clamp value (None = the feature left as it is), all with the same seed."""
    if not values:
        raise InterpError("give at least one clamp value")
    return [generate_with(model, prompt_ids, None if v is None else clamp_feature(loaded, feature, float(v)),
                          **sampling) for v in values]


def generate_side_by_side(model: GPT, prompt_ids: list[int], vector: torch.Tensor, boundary: int,
                          coefficients: list[float], **sampling) -> list[list[int]]:
    """One generation per coefficient, all with the same seed (so differences come from the vector alone)."""
    if not coefficients:
        raise InterpError("give at least one coefficient (0 = unsteered)")
    return [generate_steered(model, prompt_ids, vector, boundary, c, **sampling) for c in coefficients]


def default_coefficients(vector: torch.Tensor, residual_norm: float) -> list[float]:
    """0 and three steps up to the coefficient whose push is as long as the residual stream itself."""
    length = float(vector.norm())
    if length == 0:
        raise InterpError("the steering vector is all zeros (the two prompt sets give the same mean?)")
    full = residual_norm / length
    return [0.0] + [float(f"{full * f:.2g}") for f in (0.25, 0.5, 1.0)]
