"""A cross-layer transcoder (CLT; Ameisen et al., "Circuit Tracing", 2025): one encoder per layer, reading that layer's
MLP input, and decoders from each layer's features to that layer's MLP output and to every later one. The dictionary
circuit-tracer and Anthropic's attribution graphs use: a feature can write what several MLPs together compute, so a
chain of per-layer features that only pass something along collapses into one.

The formula (also in the README), for a model with L layers, x_i = blocks.{i}.mlp.in (..., d_in):

    f_i     = act(x_i @ W_enc_i + b_enc_i)                         # (..., n) layer i's features
    y_hat_j = sum over i <= j of f_i @ W_dec_i[:, j - i] + b_dec_j  # (..., d_out) blocks.{j}.mlp.out

act is TopK (k per layer), JumpReLU (threshold_i) or ReLU, as for a per-layer transcoder (gpt.interp.features.
dictionary). Each feature's decoder, all its L - i output vectors together, has unit norm, so its activation is
the length of everything it writes.

On disk, in the run folder, one folder like any dictionary: features/<name>/config.json (kind "clt", layers,
inputs, outputs, activation, k, n_features per layer, d_in, d_out, weights_digest, training) and
features/<name>/dictionary.safetensors with, for every layer i: W_enc_{i} (d_in, n), b_enc_{i} (n),
W_dec_{i} (n, L - i, d_out) (layer i's features to outputs i..L-1), b_dec_{i} (d_out) and threshold_{i} (n) for
JumpReLU. circuit-tracer's CLT files use the same names and decoder shape, split into one file per layer
(W_enc_{i}.safetensors, W_dec_{i}.safetensors), with W_enc_{i} stored transposed, (n, d_model).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from gpt.interp.features.dictionary import ACTIVATIONS, activate
from gpt.interp.features.folder import (
    CONFIG_FILE,
    BrokenDictionary,
    DictionaryError,
    check_digest,
    check_digest_field,
    check_fields,
    check_k,
    check_sizes,
    load_folders,
    read_checked_tensors,
    read_config_json,
    read_metrics,
    write_folder,
)

KIND = "clt"
FORMULA = "f_i = act(x_i @ W_enc_i + b_enc_i); y_hat_j = sum_{i<=j} f_i @ W_dec_i[:, j-i] + b_dec_j"


@dataclass
class CrossLayerConfig:
    """What a CLT's config.json holds. n_features is per layer (every layer has as many)."""
    n_layers: int
    activation: str
    n_features: int
    d_in: int
    d_out: int
    weights_digest: str
    k: int | None = None
    training: dict = field(default_factory=dict)
    kind: str = KIND

    @property
    def inputs(self) -> list[str]:
        return [f"blocks.{i}.mlp.in" for i in range(self.n_layers)]

    @property
    def outputs(self) -> list[str]:
        return [f"blocks.{j}.mlp.out" for j in range(self.n_layers)]

    def validate(self, where: str = CONFIG_FILE) -> CrossLayerConfig:
        def bad(what):
            raise DictionaryError(f"{where}: {what}")
        if self.kind != KIND:
            bad(f"kind must be {KIND!r} for a cross-layer transcoder, got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            bad(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        check_sizes(self, ("n_layers", "n_features", "d_in", "d_out"), where)
        check_k(self, where)
        check_digest_field(self.weights_digest, where)
        return self

    def to_dict(self) -> dict:
        d = {"kind": KIND, "layers": list(range(self.n_layers)), "inputs": self.inputs, "outputs": self.outputs,
             "activation": self.activation, "n_features": self.n_features, "d_in": self.d_in, "d_out": self.d_out,
             "weights_digest": self.weights_digest, "formula": FORMULA, "training": self.training}
        if self.activation == "topk":
            d["k"] = self.k
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = CONFIG_FILE) -> CrossLayerConfig:
        training = check_fields(d, ("kind", "layers", "inputs", "outputs", "activation", "n_features", "d_in",
                                    "d_out", "weights_digest"), where)
        layers = d["layers"]
        if not isinstance(layers, list) or not layers or layers != list(range(len(layers))):
            raise DictionaryError(f"{where}: layers must be 0, 1, ..., L-1 (a CLT starts at the first layer and "
                                  f"covers every layer after it), got {layers!r}")
        cfg = cls(len(layers), d["activation"], d["n_features"], d["d_in"], d["d_out"], d["weights_digest"],
                  d.get("k"), training, d["kind"]).validate(where)
        for key, expected in (("inputs", cfg.inputs), ("outputs", cfg.outputs)):
            if d[key] != expected:
                raise DictionaryError(f"{where}: {key} must be {expected} (a CLT reads every MLP input and writes "
                                      f"every MLP output), got {d[key]!r}")
        return cfg


class CrossLayerTranscoder(nn.Module):
    """The module docstring's formula. Parameters are fp32; per layer i: W_enc[i] (d_in, n), b_enc[i] (n),
    W_dec[i] (n, L - i, d_out), b_dec[i] (d_out), log_threshold[i] (n) for JumpReLU (trained as its log)."""

    def __init__(self, config: CrossLayerConfig):
        super().__init__()
        self.config = config
        L, n, d_in, d_out = config.n_layers, config.n_features, config.d_in, config.d_out
        self.W_enc = nn.ParameterList([torch.zeros(d_in, n) for _ in range(L)])
        self.b_enc = nn.ParameterList([torch.zeros(n) for _ in range(L)])
        self.W_dec = nn.ParameterList([torch.zeros(n, L - i, d_out) for i in range(L)])
        self.b_dec = nn.ParameterList([torch.zeros(d_out) for _ in range(L)])
        self.log_threshold = (nn.ParameterList([torch.zeros(n) for _ in range(L)])
                              if config.activation == "jumprelu" else None)

    def pre_activations(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) layer's MLP input -> (..., n): x @ W_enc_layer + b_enc_layer."""
        return x @ self.W_enc[layer].to(x.dtype) + self.b_enc[layer].to(x.dtype)

    def activate(self, layer: int, pre: torch.Tensor) -> torch.Tensor:
        threshold = self.log_threshold[layer].exp() if self.log_threshold is not None else None
        return activate(pre, self.config.activation, self.config.k, threshold)

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self.activate(layer, self.pre_activations(layer, x))

    def decoder(self, source: int, output: int) -> torch.Tensor:
        """(n, d_out): what one unit of each of layer `source`'s features writes to layer `output`'s MLP output."""
        return self.W_dec[source][:, output - source]

    def decode(self, output: int, features: list[torch.Tensor]) -> torch.Tensor:
        """features: the activations (..., n) of layers 0..output (at least) -> (..., d_out) y_hat of `output`."""
        y = self.b_dec[output].to(features[0].dtype)
        for source in range(output + 1):
            y = y + features[source] @ self.decoder(source, output).to(features[source].dtype)
        return y

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every layer's MLP input -> every layer's reconstructed MLP output."""
        features = [self.encode(i, x) for i, x in enumerate(xs)]
        return [self.decode(j, features) for j in range(self.config.n_layers)]

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """Unit-norm decoders (each feature's L - i vectors together), the scale moved into the encoder."""
        for i in range(self.config.n_layers):
            norms = self.W_dec[i].flatten(1).norm(dim=1).clamp(min=1e-8)  # (n,)
            self.W_dec[i] /= norms[:, None, None]
            self.W_enc[i] *= norms[None, :]
            self.b_enc[i] *= norms
            if self.log_threshold is not None:
                self.log_threshold[i] += norms.log()

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for i in range(self.config.n_layers):
            out.update({f"W_enc_{i}": self.W_enc[i], f"b_enc_{i}": self.b_enc[i], f"W_dec_{i}": self.W_dec[i],
                        f"b_dec_{i}": self.b_dec[i]})
            if self.log_threshold is not None:
                out[f"threshold_{i}"] = self.log_threshold[i].exp()
        return {k: v.detach().float().contiguous().cpu() for k, v in out.items()}


def expected_shapes(cfg: CrossLayerConfig) -> dict[str, tuple[int, ...]]:
    L, n = cfg.n_layers, cfg.n_features
    shapes = {}
    for i in range(L):
        shapes.update({f"W_enc_{i}": (cfg.d_in, n), f"b_enc_{i}": (n,), f"W_dec_{i}": (n, L - i, cfg.d_out),
                       f"b_dec_{i}": (cfg.d_out,)})
        if cfg.activation == "jumprelu":
            shapes[f"threshold_{i}"] = (n,)
    return shapes


@dataclass
class LoadedCrossLayer:
    name: str
    path: Path
    config: CrossLayerConfig
    module: CrossLayerTranscoder
    metrics: dict | None


def save_crosslayer(folder: str | Path, clt: CrossLayerTranscoder, dtype: torch.dtype = torch.float32) -> Path:
    """config.json then dictionary.safetensors, each atomically (the weights file last, as for any dictionary)."""
    tensors = {k: v.to(dtype).contiguous() for k, v in clt.tensors().items()}
    return write_folder(Path(folder), clt.config.to_dict(), tensors, "gpt-explorer clt")


def load_crosslayer(folder: str | Path, model_config=None, digest: str | None = None) -> LoadedCrossLayer:
    """Read and check one CLT folder against the model (layers, widths) and the run's weights (digest).
    DictionaryError names the file and what is wrong."""
    folder = Path(folder)
    raw, where = read_config_json(folder)
    cfg = CrossLayerConfig.from_dict(raw, where)
    if model_config is not None:
        if not model_config.has_mlp:
            raise DictionaryError(f"{where}: a cross-layer transcoder needs MLP layers; this model has none")
        if cfg.n_layers != model_config.n_layer:
            raise DictionaryError(f"{where}: spans {cfg.n_layers} layers, but the model has {model_config.n_layer}")
        if cfg.d_in != model_config.n_embd or cfg.d_out != model_config.n_embd:
            raise DictionaryError(f"{where}: d_in/d_out are {cfg.d_in}/{cfg.d_out}, but the model is "
                                  f"{model_config.n_embd} wide")
    check_digest(where, cfg.weights_digest, digest)
    tensors = read_checked_tensors(folder, expected_shapes(cfg))
    module = CrossLayerTranscoder(cfg)
    with torch.no_grad():
        for i in range(cfg.n_layers):
            for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
                getattr(module, name)[i].copy_(tensors[f"{name}_{i}"].float())
            if module.log_threshold is not None:
                module.log_threshold[i].copy_(tensors[f"threshold_{i}"].float().clamp(min=1e-12).log())
    module.eval().requires_grad_(False)
    return LoadedCrossLayer(folder.name, folder, cfg, module, read_metrics(folder))


def list_crosslayers(run_dir: str | Path, model_config=None, digest: str | None = None,
                     ) -> tuple[list[LoadedCrossLayer], list[BrokenDictionary]]:
    """The run's CLT folders (config kind "clt"), loaded and checked; the refused ones with their reason.
    (gpt.interp.features.dictionary.list_dictionaries lists the per-layer dictionaries and leaves these out.)"""
    return load_folders(run_dir, lambda kind: kind == KIND, load_crosslayer, model_config, digest)
