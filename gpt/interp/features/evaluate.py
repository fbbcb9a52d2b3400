"""How good a dictionary is, over the whole validation split (consecutive non-overlapping block_size windows, fp32):

* fraction of variance explained: 1 - sum ||y - y_hat||^2 / sum ||y - mean(y)||^2 over every token;
* mean L0: active features per token;
* dead features: never active on the split; dense features: active on more than 10% of its tokens;
* CE loss recovered = (L_zero - L_spliced) / (L_zero - L_clean), where L_spliced runs the model with the output
  site replaced by y_hat and L_zero with it set to zero (1 = the model loses nothing, 0 = as bad as no layer).

For what replaces every MLP at once (a cross-layer transcoder, or one transcoder per layer: `Transcoders`),
evaluate_all_replaced gives CE loss recovered with *every* MLP output replaced in one forward (each layer's
features read the MLP input the replaced layers below produced) against every MLP output set to zero, and per
layer the variance explained of its MLP output (from the clean forward's MLP inputs), mean L0 and dead features.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.nn import functional as F

from gpt.evaluate import consecutive_windows
from gpt.interp.features.dictionary import Dictionary
from gpt.interp.features.stack import Transcoders
from gpt.model import GPT, Trace

DENSE_SHARE = 0.1


def splice(dictionary: Dictionary, replace_with: str = "reconstruction") -> dict[str, Callable]:
    """Trace interventions that replace the dictionary's output site by its reconstruction from the input site of
    the same forward ("reconstruction") or by zeros ("zero")."""
    cfg = dictionary.config
    if replace_with == "zero":
        return {cfg.output: torch.zeros_like}
    if cfg.input == cfg.output:   # an SAE: reconstruct the site from itself
        return {cfg.output: lambda y: dictionary(y.float()).to(y.dtype)}
    seen = {}

    def keep(x):
        seen["x"] = x
        return x
    return {cfg.input: keep, cfg.output: lambda y: dictionary(seen["x"].float()).to(y.dtype)}


def _loss_sum(model: GPT, x: torch.Tensor, y: torch.Tensor, interventions: dict | None) -> float:
    trace = Trace(set(), interventions) if interventions else None
    logits, _ = model(x, trace=trace)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()


def _traced_windows(model: GPT, val_ids: torch.Tensor, names: set[str],
                    progress: Callable[[int, int], None] | None) -> Iterator[tuple]:
    """Each validation window (consecutive block_size windows of val_ids, on the model's device) run once with
    `names` traced: yields (x, y, trace, summed clean loss); progress(done, total) after the caller's work on it."""
    device = next(model.parameters()).device
    batches = list(consecutive_windows(val_ids, model.config.block_size))
    for b, (x, y) in enumerate(batches):
        x, y = x.to(device), y.to(device)
        trace = Trace(names)
        logits, _ = model(x, trace=trace)
        yield x, y, trace, F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
        if progress is not None:
            progress(b + 1, len(batches))


@torch.no_grad()
def evaluate_dictionaries(model: GPT, dictionaries: list[Dictionary], val_ids: torch.Tensor,
                          progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """The module docstring's metrics for each dictionary (in order), over val_ids (1-D token ids)."""
    was_training = model.training
    model.eval()
    names = {n for d in dictionaries for n in (d.config.input, d.config.output)}
    stats = [{"sse": 0.0, "sum_y": 0.0, "sum_y2": 0.0, "l0": 0.0, "spliced": 0.0,
              "fired": torch.zeros(d.config.n_features, dtype=torch.long)} for d in dictionaries]
    zero_by_site: dict[str, float] = {d.config.output: 0.0 for d in dictionaries}
    clean, tokens = 0.0, 0
    for x, y, trace, clean_sum in _traced_windows(model, val_ids, names, progress):
        clean += clean_sum
        tokens += y.numel()
        for site in zero_by_site:  # L_zero depends on the site only
            zero_by_site[site] += _loss_sum(model, x, y, {site: torch.zeros_like})
        for d, s in zip(dictionaries, stats):
            inp = trace.acts[d.config.input].float().reshape(-1, d.config.d_in)
            out = trace.acts[d.config.output].float().reshape(-1, d.config.d_out)
            f = d.encode(inp)
            active = f > 0
            s["sse"] += ((d.decode(f) + d.skip_term(inp) - out) ** 2).sum().item()
            s["sum_y"] = s["sum_y"] + out.sum(0)
            s["sum_y2"] += (out ** 2).sum().item()
            s["l0"] += active.sum().item()
            s["fired"] += active.sum(0).cpu()
            s["spliced"] += _loss_sum(model, x, y, splice(d))
    model.train(was_training)
    l_clean = clean / tokens
    out = []
    for d, s in zip(dictionaries, stats):
        total_var = s["sum_y2"] - float((s["sum_y"] ** 2).sum()) / tokens
        l_zero, l_spliced = zero_by_site[d.config.output] / tokens, s["spliced"] / tokens
        share = s["fired"].float() / tokens
        out.append({
            "variance_explained": 1 - s["sse"] / max(total_var, 1e-12),
            "mean_l0": s["l0"] / tokens,
            "dead": int((s["fired"] == 0).sum()), "dead_share": float((s["fired"] == 0).float().mean()),
            "dense": int((share > DENSE_SHARE).sum()), "dense_share": float((share > DENSE_SHARE).float().mean()),
            "ce_loss_recovered": (l_zero - l_spliced) / (l_zero - l_clean) if l_zero != l_clean else float("nan"),
            "loss_clean": l_clean, "loss_spliced": l_spliced, "loss_zero": l_zero,
            "tokens": tokens, "n_features": d.config.n_features,
        })
    return out


@torch.no_grad()
def evaluate_all_replaced(model: GPT, transcoders: Transcoders, val_ids: torch.Tensor,
                          progress: Callable[[int, int], None] | None = None) -> dict:
    """The module docstring's every-MLP-replaced metrics over val_ids (1-D token ids)."""
    was_training = model.training
    model.eval()
    L = transcoders.n_layer
    names = {f"blocks.{i}.mlp.{s}" for i in range(L) for s in ("in", "out")}
    zero_all = {f"blocks.{i}.mlp.out": torch.zeros_like for i in range(L)}
    clean = spliced = zeroed = 0.0
    sse, sum_y2, l0 = [0.0] * L, [0.0] * L, [0.0] * L
    sum_y: list = [0.0] * L
    fired = [torch.zeros(transcoders.n_features(i), dtype=torch.long) for i in range(L)]
    tokens = 0
    for x, y, trace, clean_sum in _traced_windows(model, val_ids, names, progress):
        clean += clean_sum
        tokens += y.numel()
        zeroed += _loss_sum(model, x, y, zero_all)
        spliced += _loss_sum(model, x, y, transcoders.all_mlps_replaced())
        ins = [trace.acts[f"blocks.{i}.mlp.in"].float().flatten(0, 1) for i in range(L)]
        features = [transcoders.encode(i, ins[i]) for i in range(L)]
        for j in range(L):
            out = trace.acts[f"blocks.{j}.mlp.out"].float().flatten(0, 1)
            sse[j] += ((transcoders.decode(j, features, ins[j]) - out) ** 2).sum().item()
            sum_y[j] = sum_y[j] + out.sum(0)
            sum_y2[j] += (out ** 2).sum().item()
            active = features[j] > 0
            l0[j] += active.sum().item()
            fired[j] += active.sum(0).cpu()
    model.train(was_training)
    l_clean, l_spliced, l_zero = clean / tokens, spliced / tokens, zeroed / tokens
    variance = [sum_y2[j] - float((sum_y[j] ** 2).sum()) / tokens for j in range(L)]
    return {
        "ce_loss_recovered_all": (l_zero - l_spliced) / (l_zero - l_clean) if l_zero != l_clean else float("nan"),
        "loss_clean": l_clean, "loss_spliced_all": l_spliced, "loss_zero_all": l_zero,
        "variance_explained": [1 - sse[j] / max(variance[j], 1e-12) for j in range(L)],
        "mean_l0": [l0[j] / tokens for j in range(L)],
        "dead": [int((fired[j] == 0).sum()) for j in range(L)],
        "tokens": tokens, "n_features": [transcoders.n_features(j) for j in range(L)],
        "dictionaries": sorted(set(transcoders.names), key=transcoders.names.index),
    }
