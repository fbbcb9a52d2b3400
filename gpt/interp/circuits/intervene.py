"""Interventions on transcoder features, to test what an attribution graph claims.

Two ways, shown side by side:
* in the replacement model (attention patterns and norm scales frozen at the prompt's values, error vectors held
  fixed, later features recomputed by their transcoders) — the model the graph describes;
* in the real model (nothing frozen): at the feature's layer and position the MLP output gets
  (value - the feature's current activation) * its decoder row, where the current activation is re-read from the
  MLP input as it is after earlier interventions (a cross-layer transcoder's feature: every later MLP output at
  that position gets the same difference times its decoder row to that layer); everything else runs as usual.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gpt.interp.capture import check_ids, run_with_cache
from gpt.interp.circuits.graph import Node
from gpt.interp.circuits.replacement import CircuitError, check_transcoders, freeze, replacement_forward
from gpt.interp.features.stack import Transcoders
from gpt.model import GPT

FeatureKey = tuple[int, int, int]  # (layer, position, feature)


@dataclass
class InterventionResult:
    probs_before: torch.Tensor       # (V,) the model's next-token distribution, untouched
    probs_replacement: torch.Tensor  # (V,) after the intervention, in the replacement model
    probs_model: torch.Tensor        # (V,) after the intervention, in the real model
    settings: dict[FeatureKey, float]

    def top(self, k: int = 8) -> list[tuple[int, float, float, float]]:
        """[(token id, before, replacement, model)] for the tokens most likely in any of the three, by before."""
        ids = set()
        for probs in (self.probs_before, self.probs_replacement, self.probs_model):
            ids |= set(probs.topk(min(k, probs.numel())).indices.tolist())
        rows = [(i, float(self.probs_before[i]), float(self.probs_replacement[i]), float(self.probs_model[i]))
                for i in ids]
        return sorted(rows, key=lambda r: -max(r[1:]))[:k]


def _feature_key(node, transcoders: Transcoders, T: int) -> FeatureKey:
    if isinstance(node, Node):
        if node.kind != "feature":
            raise CircuitError(f"only features can be switched; {node.key} is a {node.kind} node")
        key = (node.layer, node.position, node.index)
    else:
        key = tuple(int(x) for x in node)
        if len(key) != 3:
            raise CircuitError(f"a feature is (layer, position, feature); got {node!r}")
    layer, pos, feat = key
    if not 0 <= layer < transcoders.n_layer:
        raise CircuitError(f"layer {layer} does not exist (0..{transcoders.n_layer - 1})")
    if not 0 <= pos < T:
        raise CircuitError(f"position {pos} is outside the prompt of {T} tokens")
    n = transcoders.n_features(layer)
    if not 0 <= feat < n:
        raise CircuitError(f"feature {feat} does not exist: {transcoders.names[layer]} has 0..{n - 1} in layer "
                           f"{layer}")
    return key


@torch.no_grad()
def intervene(model: GPT, ids, transcoders, settings: dict) -> InterventionResult:
    """Set features ({Node or (layer, position, feature): value}, 0 = off) and return the next-token distribution
    after the last token of ids, before and after, in the replacement model and in the real one. transcoders: one
    per layer, a cross-layer transcoder, or Transcoders."""
    transcoders = check_transcoders(model, transcoders)
    ids = check_ids(model, ids)
    T = ids.size(1)
    clamp = {_feature_key(node, transcoders, T): float(value) for node, value in settings.items()}
    for key, value in clamp.items():
        if not torch.isfinite(torch.tensor(value)):
            raise CircuitError(f"the value for feature {key} must be a finite number (got {value})")
    frozen = freeze(model, ids, transcoders)
    replaced = replacement_forward(model, frozen, transcoders, clamp=clamp)
    probs_before = torch.softmax(frozen.logits[-1].float(), -1)
    probs_replacement = torch.softmax(replaced.logits[-1].float(), -1)

    by_layer: dict[int, list[tuple[int, int, float]]] = {}
    for (layer, pos, feat), value in clamp.items():
        by_layer.setdefault(layer, []).append((pos, feat, value))
    seen_acts: dict[int, torch.Tensor] = {}  # a clamped layer's features, as its MLP input is now
    interventions = {}
    for layer in by_layer:
        def remember(x, layer=layer):
            seen_acts[layer] = transcoders.encode(layer, x[0].float())  # (T, n)
            return x
        interventions[f"blocks.{layer}.mlp.in"] = remember
    for output in range(min(by_layer, default=transcoders.n_layer), transcoders.n_layer):
        sources = [i for i in transcoders.sources(output) if i in by_layer]
        if not sources:
            continue

        def steer(out, output=output, sources=sources):
            out = out.clone()
            for i in sources:
                decoder = transcoders.decoder(i, output)
                for pos, feat, value in by_layer[i]:
                    out[0, pos] += ((value - seen_acts[i][pos, feat]) * decoder[feat]).to(out.dtype)
            return out
        interventions[f"blocks.{output}.mlp.out"] = steer
    cache = run_with_cache(model, ids, {"logits"}, interventions)
    probs_model = torch.softmax(cache["logits"][0, -1].float(), -1)
    return InterventionResult(probs_before, probs_replacement, probs_model, clamp)
