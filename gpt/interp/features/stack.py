"""What replaces every MLP of a model at once: one per-layer transcoder (PLT) per layer, or one cross-layer transcoder
(CLT). `Transcoders` gives both one interface, so evaluation (every MLP replaced) and attribution graphs
(gpt.interp.circuits) treat them alike:

    f_i     = encode(i, x_i)                                          # layer i's features from its MLP input
    y_hat_j = sum over i in sources(j) of f_i @ decoder(i, j) + b_dec_j [+ x_j @ W_skip_j]

sources(j) is [j] for PLTs (layer j's transcoder alone writes its MLP output) and 0..j for a CLT.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from gpt.interp.features.crosslayer import LoadedCrossLayer
from gpt.interp.features.dictionary import Dictionary, DictionaryConfig, DictionaryError, LoadedDictionary


class Transcoders:
    """One PLT per layer (`plts`, in layer order) or one CLT (`clt`)."""

    def __init__(self, plts: list[LoadedDictionary] | None = None, clt: LoadedCrossLayer | None = None):
        if (plts is None) == (clt is None):
            raise DictionaryError("give either one transcoder per layer or one cross-layer transcoder")
        self.plts, self.clt = plts, clt
        self.n_layer = clt.config.n_layers if clt is not None else len(plts)
        for layer, t in enumerate(plts or []):
            cfg = t.config
            if cfg.kind != "transcoder" or cfg.input != f"blocks.{layer}.mlp.in" or \
                    cfg.output != f"blocks.{layer}.mlp.out":
                raise DictionaryError(f"{t.name} is not the transcoder of layer {layer} (it reads {cfg.input} and "
                                      f"writes {cfg.output})")

    @property
    def is_crosslayer(self) -> bool:
        return self.clt is not None

    @property
    def names(self) -> list[str]:
        """Per layer, the dictionary its features belong to."""
        return [self.clt.name] * self.n_layer if self.clt is not None else [t.name for t in self.plts]

    @property
    def paths(self) -> list[Path]:
        return [self.clt.path] if self.clt is not None else [t.path for t in self.plts]

    @property
    def width(self) -> tuple[int, int]:
        cfg = self.clt.config if self.clt is not None else self.plts[0].config
        return cfg.d_in, cfg.d_out

    def n_features(self, layer: int) -> int:
        return self.clt.config.n_features if self.clt is not None else self.plts[layer].config.n_features

    # ---- encoders ----
    def W_enc(self, layer: int) -> torch.Tensor:
        """(d_in, n) layer's encoder."""
        return self.clt.module.W_enc[layer] if self.clt is not None else self.plts[layer].module.W_enc

    def pre_activations(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        if self.clt is not None:
            return self.clt.module.pre_activations(layer, x)
        return self.plts[layer].module.pre_activations(x)

    def activate(self, layer: int, pre: torch.Tensor) -> torch.Tensor:
        if self.clt is not None:
            return self.clt.module.activate(layer, pre)
        return self.plts[layer].module.activate(pre)

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self.activate(layer, self.pre_activations(layer, x))

    # ---- decoders ----
    def sources(self, output: int) -> range:
        """The layers whose features write layer `output`'s MLP output."""
        return range(output + 1) if self.clt is not None else range(output, output + 1)

    def decoder(self, source: int, output: int) -> torch.Tensor:
        """(n, d_out): what one unit of each of layer `source`'s features writes to layer `output`'s MLP output."""
        if self.clt is not None:
            return self.clt.module.decoder(source, output)
        if source != output:
            raise DictionaryError(f"a per-layer transcoder of layer {source} does not write layer {output}")
        return self.plts[output].module.W_dec

    def b_dec(self, output: int) -> torch.Tensor:
        return self.clt.module.b_dec[output] if self.clt is not None else self.plts[output].module.b_dec

    def W_skip(self, layer: int) -> torch.Tensor | None:
        return None if self.clt is not None else self.plts[layer].module.W_skip

    def decode(self, output: int, features: list[torch.Tensor], mlp_in: torch.Tensor | None = None) -> torch.Tensor:
        """features: per layer (..., n) (at least the sources of `output`) -> (..., d_out) y_hat of `output`;
        mlp_in (..., d_in) of `output` for a skip transcoder's dense path."""
        dt = features[output].dtype
        y = self.b_dec(output).to(dt)
        for source in self.sources(output):
            y = y + features[source] @ self.decoder(source, output).to(dt)
        w_skip = self.W_skip(output)
        if w_skip is not None:
            y = y + mlp_in @ w_skip.to(mlp_in.dtype)
        return y

    def writes(self, layer: int) -> torch.Tensor:
        """(n, d_out) each feature's total write into the residual stream (the sum of its decoder vectors over
        the layers it writes): what reaches the unembedding directly."""
        if self.clt is not None:
            return self.clt.module.W_dec[layer].sum(1)
        return self.plts[layer].module.W_dec

    def card(self, layer: int) -> LoadedDictionary:
        """A per-layer dictionary to draw layer's feature cards with: a PLT itself; for a CLT, its layer's encoder
        with, as the decoder, each feature's total write (`writes`), in a folder of its own inside the CLT's (the
        cards' scans are cached there)."""
        if self.clt is None:
            return self.plts[layer]
        c, m = self.clt.config, self.clt.module
        cfg = DictionaryConfig("transcoder", f"blocks.{layer}.mlp.in", f"blocks.{layer}.mlp.out", c.activation,
                               c.n_features, c.d_in, c.d_out, c.weights_digest, c.k)
        d = Dictionary(cfg)
        with torch.no_grad():
            d.W_enc.copy_(m.W_enc[layer])
            d.b_enc.copy_(m.b_enc[layer])
            d.W_dec.copy_(self.writes(layer))
            d.b_dec.copy_(m.b_dec[layer])
            if d.log_threshold is not None:
                d.log_threshold.copy_(m.log_threshold[layer])
        folder = self.clt.path / f"layer-{layer}"
        try:
            folder.mkdir(exist_ok=True)
        except OSError:
            pass  # a read-only run folder: cards are computed, not cached
        return replace(self.clt, name=f"{self.clt.name} L{layer}", path=folder, config=cfg,
                       module=d.eval().requires_grad_(False))

    # ---- every MLP replaced at once ----
    def all_mlps_replaced(self) -> dict[str, Callable]:
        """Trace interventions (gpt.model.Trace) that replace every layer's MLP output by y_hat, each layer's
        features computed from its MLP input in the same forward (so from the already replaced earlier layers)."""
        features: dict[int, torch.Tensor] = {}
        inputs: dict[int, torch.Tensor] = {}

        def read(x, layer):
            inputs[layer] = x
            features[layer] = self.encode(layer, x.float())
            return x

        def write(y, layer):
            return self.decode(layer, features, inputs[layer].float()).to(y.dtype)

        out = {}
        for layer in range(self.n_layer):
            out[f"blocks.{layer}.mlp.in"] = lambda x, layer=layer: read(x, layer)
            out[f"blocks.{layer}.mlp.out"] = lambda y, layer=layer: write(y, layer)
        return out


def as_transcoders(dictionaries) -> Transcoders:
    """Transcoders from a Transcoders, a LoadedCrossLayer or a list of per-layer LoadedDictionary (in layer order)."""
    if isinstance(dictionaries, Transcoders):
        return dictionaries
    if isinstance(dictionaries, LoadedCrossLayer):
        return Transcoders(clt=dictionaries)
    return Transcoders(plts=list(dictionaries))
