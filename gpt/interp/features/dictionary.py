"""A sparse dictionary of a model's activations: a transcoder (MLP input -> MLP output) or a sparse autoencoder
(one residual site -> the same site), in one file format any tool can read without this code.

The formula (also in the README), for an input x (..., d_in):

    f     = act(x @ W_enc + b_enc)          # (..., n_features) feature activations, mostly zero
    y_hat = f @ W_dec + b_dec [+ x @ W_skip] # (..., d_out) the reconstruction of the output site

    act = "topk":     keep the k largest *positive* entries of x @ W_enc + b_enc per token, zero the rest
    act = "jumprelu": pre * (pre > threshold), one threshold per feature
    act = "relu":     max(pre, 0)

Any input centring is folded into b_enc. Decoder rows are unit-norm, so a feature's activation is the length of
what it writes. A *skip transcoder* (config "skip": true; Paulo, Shabalin & Belrose 2025) adds a dense linear
path x @ W_skip that carries the MLP's linear part, so its features spend their sparsity on the nonlinear rest.

On disk, in the run folder: features/<name>/config.json (kind, input, output, activation, k, n_features, d_in,
d_out, weights_digest = sha256 of the model.safetensors it was trained on, plus how it was trained) and
features/<name>/dictionary.safetensors (W_enc (d_in, n), b_enc (n), W_dec (n, d_out), b_dec (d_out), and
threshold (n) for JumpReLU, W_skip (d_in, d_out) for a skip transcoder), stored in the dtype config.json names
("dtype": "float32", "float16" or "bfloat16"; absent = float32, as files written before it existed). Loading upcasts
to float32: half precision halves the file, not the arithmetic. Metrics written by evaluation live in
features/<name>/metrics.json.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

# the folder format both dictionary kinds share; FOLDER, WEIGHTS_FILE and weights_digest are still imported from here
from gpt.interp.features.folder import (
    CONFIG_FILE,
    METRICS_FILE,
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
from gpt.interp.features.folder import FOLDER as FOLDER
from gpt.interp.features.folder import WEIGHTS_FILE as WEIGHTS_FILE
from gpt.interp.features.folder import weights_digest as weights_digest
from gpt.runs import atomic

KINDS = ("transcoder", "sae")
ACTIVATIONS = ("topk", "jumprelu", "relu")
SAE_SITES = ("resid_pre", "resid_mid", "resid_post")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}  # on-disk dtypes
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SITE_RE = re.compile(r"^blocks\.(\d+)\.(mlp\.in|mlp\.out|resid_pre|resid_mid|resid_post)$")


def activate(pre: torch.Tensor, activation: str, k: int | None = None,
             threshold: torch.Tensor | None = None) -> torch.Tensor:
    """(..., n) pre-activations -> (..., n) feature activations, for every dictionary kind (inference: plain, no
    straight-through): TopK keeps the k largest (clamped at 0), JumpReLU those above their threshold (n), ReLU."""
    if activation == "topk":
        top = pre.topk(k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.clamp(min=0))
    if activation == "jumprelu":
        return pre * (pre > threshold.to(pre.dtype))
    return pre.clamp(min=0)


def site_layer(site: str) -> int:
    """The layer of a capture-point name such as "blocks.2.mlp.in"."""
    m = _SITE_RE.match(site)
    if not m:
        raise DictionaryError(f"{site!r} is not a capture point a dictionary can read (blocks.<layer>.mlp.in, "
                              f"mlp.out, {', '.join(SAE_SITES)})")
    return int(m.group(1))


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DictionaryError(f"dictionary name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
                              "starting with a letter or digit")
    return name


@dataclass
class DictionaryConfig:
    """What config.json holds. `training` records how it was made (tokens, seconds, learning rate...)."""
    kind: str
    input: str
    output: str
    activation: str
    n_features: int
    d_in: int
    d_out: int
    weights_digest: str
    k: int | None = None
    training: dict = field(default_factory=dict)
    skip: bool = False  # a skip transcoder: y_hat also gets x @ W_skip
    dtype: str = "float32"  # how the tensors are stored on disk (loaded as float32 whatever it is)

    @property
    def layer(self) -> int:
        return site_layer(self.input)

    def validate(self, where: str = CONFIG_FILE) -> DictionaryConfig:
        def bad(what):
            raise DictionaryError(f"{where}: {what}")
        if self.kind not in KINDS:
            bad(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            bad(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        check_sizes(self, ("n_features", "d_in", "d_out"), where)
        try:
            layer_in, layer_out = site_layer(self.input), site_layer(self.output)
        except DictionaryError as e:
            bad(str(e))
        if layer_in != layer_out:
            bad(f"input {self.input} and output {self.output} are in different layers")
        if self.kind == "transcoder" and not (self.input.endswith(".mlp.in") and self.output.endswith(".mlp.out")):
            bad(f"a transcoder reads blocks.<i>.mlp.in and writes blocks.<i>.mlp.out, not {self.input} -> {self.output}")
        if self.kind == "sae" and (self.input != self.output or self.input.split(".", 2)[2] not in SAE_SITES):
            bad(f"an SAE reads and reconstructs one residual site ({', '.join(SAE_SITES)}), not "
                f"{self.input} -> {self.output}")
        check_k(self, where)
        if not isinstance(self.skip, bool):
            bad(f"skip must be true or false, got {self.skip!r}")
        if self.skip and self.kind != "transcoder":
            bad("only a transcoder has a skip connection (an SAE reconstructs its own input)")
        if not isinstance(self.dtype, str) or self.dtype not in DTYPES:
            bad(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        check_digest_field(self.weights_digest, where)
        return self

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "input": self.input, "output": self.output, "activation": self.activation,
             "n_features": self.n_features, "d_in": self.d_in, "d_out": self.d_out,
             "weights_digest": self.weights_digest, "formula": "f = act(x @ W_enc + b_enc); y_hat = f @ W_dec + b_dec"
             + (" + x @ W_skip" if self.skip else ""), "dtype": self.dtype, "training": self.training}
        if self.activation == "topk":
            d["k"] = self.k
        if self.skip:
            d["skip"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = CONFIG_FILE) -> DictionaryConfig:
        training = check_fields(d, ("kind", "input", "output", "activation", "n_features", "d_in", "d_out",
                                    "weights_digest"), where)
        return cls(d["kind"], d["input"], d["output"], d["activation"], d["n_features"], d["d_in"], d["d_out"],
                   d["weights_digest"], d.get("k"), training, d.get("skip", False),
                   d.get("dtype", "float32")).validate(where)


class Dictionary(nn.Module):
    """The formula of the module docstring as a module. Parameters are fp32; `threshold` exists for JumpReLU
    (trained as its log, see gpt.interp.features.training)."""

    def __init__(self, config: DictionaryConfig):
        super().__init__()
        self.config = config
        n, d_in, d_out = config.n_features, config.d_in, config.d_out
        self.W_enc = nn.Parameter(torch.zeros(d_in, n))
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.W_dec = nn.Parameter(torch.zeros(n, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.log_threshold = nn.Parameter(torch.zeros(n)) if config.activation == "jumprelu" else None
        self.W_skip = nn.Parameter(torch.zeros(d_in, d_out)) if config.skip else None

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., n): x @ W_enc + b_enc."""
        return x @ self.W_enc.to(x.dtype) + self.b_enc.to(x.dtype)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """(..., n) pre-activations -> (..., n) feature activations (inference: plain, no straight-through)."""
        threshold = self.threshold if self.config.activation == "jumprelu" else None
        return activate(pre, self.config.activation, self.config.k, threshold)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.pre_activations(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """(..., n) -> (..., d_out): f @ W_dec + b_dec."""
        return f @ self.W_dec.to(f.dtype) + self.b_dec.to(f.dtype)

    def skip_term(self, x: torch.Tensor) -> torch.Tensor | float:
        """(..., d_in) -> (..., d_out): x @ W_skip for a skip transcoder, else 0."""
        return x @ self.W_skip.to(x.dtype) if self.W_skip is not None else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)) + self.skip_term(x)

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """Unit-norm decoder rows, the scale moved into the encoder so f @ W_dec is unchanged."""
        norms = self.W_dec.norm(dim=1).clamp(min=1e-8)  # (n,)
        self.W_dec /= norms[:, None]
        self.W_enc *= norms[None, :]
        self.b_enc *= norms
        if self.log_threshold is not None:
            self.log_threshold += norms.log()

    def tensors(self) -> dict[str, torch.Tensor]:
        """The file's tensors (fp32, contiguous), named as the format says; save_dictionary casts them."""
        out = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.log_threshold is not None:
            out["threshold"] = self.threshold
        if self.W_skip is not None:
            out["W_skip"] = self.W_skip
        return {k: v.detach().float().contiguous().cpu() for k, v in out.items()}


def expected_shapes(cfg: DictionaryConfig) -> dict[str, tuple[int, ...]]:
    shapes = {"W_enc": (cfg.d_in, cfg.n_features), "b_enc": (cfg.n_features,),
              "W_dec": (cfg.n_features, cfg.d_out), "b_dec": (cfg.d_out,)}
    if cfg.activation == "jumprelu":
        shapes["threshold"] = (cfg.n_features,)
    if cfg.skip:
        shapes["W_skip"] = (cfg.d_in, cfg.d_out)
    return shapes


@dataclass
class LoadedDictionary:
    name: str
    path: Path
    config: DictionaryConfig
    module: Dictionary
    metrics: dict | None


def save_dictionary(folder: str | Path, dictionary: Dictionary, dtype: str | None = None) -> Path:
    """Write config.json then dictionary.safetensors, each atomically; the weights file goes last, so a folder
    without it (a stopped training) is never listed as a dictionary. dtype ("float32", "float16", "bfloat16";
    default: the dictionary's config.dtype) is how the tensors are stored, and config.json records it."""
    folder = Path(folder)
    dtype = dtype or dictionary.config.dtype
    if dtype not in DTYPES:
        raise DictionaryError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    tensors = {k: v.to(DTYPES[dtype]).contiguous() for k, v in dictionary.tensors().items()}
    for name, t in tensors.items():
        if not torch.isfinite(t).all():  # float16 tops out at 65504: refuse rather than write infinities
            raise DictionaryError(f"{name} does not fit in {dtype} (values beyond its range); save it as float32")
    config = replace(dictionary.config, dtype=dtype)
    return write_folder(folder, config.to_dict(), tensors, "gpt-explorer dictionary")


def load_dictionary(folder: str | Path, model_config=None, digest: str | None = None) -> LoadedDictionary:
    """Read and check one dictionary folder. model_config (GPTConfig) checks the sites and widths against the model;
    digest (of the run's weights) refuses a dictionary trained on other weights. DictionaryError names the file."""
    folder = Path(folder)
    raw, where = read_config_json(folder)
    cfg = DictionaryConfig.from_dict(raw, where)
    if model_config is not None:
        layer = cfg.layer
        if layer >= model_config.n_layer:
            raise DictionaryError(f"{where}: reads layer {layer}, but the model has {model_config.n_layer} layers")
        if not model_config.has_mlp and cfg.kind == "transcoder":
            raise DictionaryError(f"{where}: a transcoder needs MLP layers; this model has none")
        if cfg.d_in != model_config.n_embd or cfg.d_out != model_config.n_embd:
            raise DictionaryError(f"{where}: d_in/d_out are {cfg.d_in}/{cfg.d_out}, but the model is "
                                  f"{model_config.n_embd} wide")
    check_digest(where, cfg.weights_digest, digest)
    tensors = read_checked_tensors(folder, expected_shapes(cfg), DTYPES[cfg.dtype])
    module = Dictionary(cfg)
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec") + (("W_skip",) if cfg.skip else ()):
            getattr(module, name).copy_(tensors[name].float())
        if cfg.activation == "jumprelu":
            module.log_threshold.copy_(tensors["threshold"].float().clamp(min=1e-12).log())
    module.eval().requires_grad_(False)
    return LoadedDictionary(folder.name, folder, cfg, module, read_metrics(folder))


def list_dictionaries(run_dir: str | Path, model_config=None, digest: str | None = None,
                      ) -> tuple[list[LoadedDictionary], list[BrokenDictionary]]:
    """Every dictionary folder of a run, loaded and checked; the ones that cannot be used come back with their
    reason (the rest are still listed); cross-layer transcoders are left out. Temporary folders of a training in
    progress are skipped. When digest is None it is computed from the run's weights file."""
    # cross-layer transcoders are listed by gpt.interp.features.crosslayer.list_crosslayers
    good, broken = load_folders(run_dir, lambda kind: kind != "clt", load_dictionary, model_config, digest)
    good.sort(key=lambda d: (d.config.kind != "transcoder", d.config.layer, d.name))
    return good, broken


def write_metrics(folder: str | Path, metrics: dict) -> None:
    atomic.write_text(Path(folder) / METRICS_FILE, json.dumps(metrics, indent=2))
