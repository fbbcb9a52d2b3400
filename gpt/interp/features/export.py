"""Our dictionaries in the layouts the field's tools read: SAELens (`SAE.load_from_disk`) and circuit-tracer (per-layer
transcoder files), plus the reader of a dictionary's labels (features/<name>/labels.json).

SAELens 6.54 (sae_lens/saes/*.py, sae_lens/loading/pretrained_sae_loaders.py): a folder with `cfg.json` and
`sae_weights.safetensors`. `architecture` picks the class; its encode is act(x @ W_enc + b_enc) when
`apply_b_dec_to_input` is false (true would subtract b_dec from x first: not our formula), its decode f @ W_dec + b_dec.
Tensor names and shapes are ours (W_enc (d_in, n), W_dec (n, d_out), threshold (n)), except `W_skip`, which SAELens
stores as (d_out, d_in) and applies as x @ W_skip.T. Its JumpReLU is relu(pre) * (pre > threshold), ours pre * (pre >
threshold): equal, since our thresholds are positive. Its TopK keeps the k largest then applies ReLU, as ours. It has
no TopK *transcoder* class: a TopK transcoder is written as a `topk` SAE (its W_dec (n, d_in) holds our (n, d_out),
the same size here) with `hook_name_out` in the metadata saying where its output belongs.

circuit-tracer 0.5 (circuit_tracer/transcoder/single_layer_transcoder.py, utils/caching.py): a folder with
`config.yaml` (model_kind: transcoder_set, feature_input_hook, feature_output_hook) and `layer_{i}.safetensors` per
layer holding W_enc (n, d_model) (ours transposed), W_dec (n, d_model), b_enc (n), b_dec (d_model), for JumpReLU
`activation_function.threshold` (n) and for a skip transcoder W_skip (d_model, d_model) applied as x @ W_skip.T. Its
loader chooses JumpReLU when the threshold tensor is there, else ReLU: it has no TopK loader, so TopK transcoders are
written only when asked (allow_topk) and then need their activation set after loading (README). Our
`blocks.{i}.mlp.in` (ln_2's output) is its `mlp.hook_in`; `blocks.{i}.mlp.out` its `mlp.hook_out`.

Cross-layer transcoders (a later format of ours) go to circuit-tracer's CLT layout instead (cross_layer_transcoder.py,
load_clt): per layer l, `W_enc_{l}.safetensors` holding W_enc_{l} (n, d), b_enc_{l} (n), b_dec_{l} (d: the bias of
layer l's *output*) and, for JumpReLU, threshold_{l} (n); and `W_dec_{l}.safetensors` holding W_dec_{l} (n, L - l, d),
the decoders of layer l's features to the outputs of layers l..L-1; config.yaml with model_kind
cross_layer_transcoder. Its loader reads no W_skip from these files, and it too has no TopK.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save as save_tensors

from gpt.interp.features.dictionary import DictionaryError, LoadedDictionary, site_layer
from gpt.runs import atomic

SAELENS_VERSION = "6.54.12"            # the SAELens whose layout we write (metadata.sae_lens_version)
SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
CT_CONFIG = "config.yaml"
CT_INPUT_HOOK, CT_OUTPUT_HOOK = "mlp.hook_in", "mlp.hook_out"
LABELS_FILE = "labels.json"
LABELS_FORMAT = "gpt-explorer feature labels v1"
FORMATS = ("saelens", "circuit-tracer")


# ---- labels ----

def read_labels(folder: str | Path) -> dict[int, str]:
    """{feature index: label} from features/<name>/labels.json (format "gpt-explorer feature labels v1"); labels
    scored below the file's `weak_below` get " (weak)". A missing or unreadable file, or another format, gives {}:
    labels are optional, and the callers fall back to the dictionary's name and the index."""
    try:
        data = json.loads((Path(folder) / LABELS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != LABELS_FORMAT or not isinstance(data.get("features"), dict):
        return {}
    weak = data.get("weak_below")
    out = {}
    for key, entry in data["features"].items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(entry, dict)):
            continue
        text = entry.get("label")
        if not isinstance(text, str) or not text.strip():
            continue
        score = entry.get("score")
        is_weak = isinstance(weak, (int, float)) and isinstance(score, (int, float)) and score < weak
        out[int(key)] = text.strip() + (" (weak)" if is_weak else "")
    return out


def feature_names(dictionaries) -> list[dict[int, str]]:
    """Per layer, {index: label} read from the dictionaries' folders (empty where there are no labels).
    dictionaries: one per layer (a list of LoadedDictionary), or a cross-layer transcoder (one folder for every
    layer: no per-layer labels yet, so empty)."""
    if not isinstance(dictionaries, (list, tuple)):
        return [{} for _ in range(dictionaries.config.n_layers)]
    return [read_labels(d.path) for d in dictionaries]


# ---- SAELens ----

def _tl_hook(site: str) -> str:
    """Our capture point -> the TransformerLens hook SAELens names (its `hook_name`). mlp.in is ln_2's output with
    its weight and bias: TransformerLens' ln2.hook_normalized when the model is loaded without folding
    (from_pretrained_no_processing, which model_from_pretrained_kwargs asks for)."""
    layer = site_layer(site)
    tail = site.split(".", 2)[2]
    return {"mlp.in": f"blocks.{layer}.ln2.hook_normalized", "mlp.out": f"blocks.{layer}.hook_mlp_out"}.get(
        tail, f"blocks.{layer}.hook_{tail}")


def saelens_files(d: LoadedDictionary, model_name: str = "") -> tuple[dict, dict[str, torch.Tensor]]:
    """(cfg.json as a dict, the tensors of sae_weights.safetensors) for one of our dictionaries."""
    c = d.config
    tensors = d.module.tensors()
    transcoder_class = c.kind == "transcoder" and c.activation != "topk"
    if c.activation == "topk":
        if c.skip:
            raise DictionaryError(f"{d.name}: SAELens has no TopK skip transcoder (its TopK class is an SAE without "
                                  "W_skip); export this one with --format circuit-tracer --allow-topk, or train a "
                                  "JumpReLU or ReLU skip transcoder")
        architecture = "topk"
    elif c.kind == "sae":
        architecture = {"jumprelu": "jumprelu", "relu": "standard"}[c.activation]
    else:
        architecture = {"jumprelu": "jumprelu_transcoder", "relu": "transcoder"}[c.activation]
        if c.skip:
            architecture = architecture.replace("transcoder", "skip_transcoder")
    if "W_skip" in tensors:
        tensors["W_skip"] = tensors["W_skip"].T.contiguous()  # SAELens: (d_out, d_in), applied as x @ W_skip.T
    metadata = {
        "sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": SAELENS_VERSION,
        "model_name": model_name, "hook_name": _tl_hook(c.input), "hook_head_index": None,
        "prepend_bos": False, "neuronpedia_id": None,
        "model_from_pretrained_kwargs": {"fold_ln": False, "center_writing_weights": False, "center_unembed": False},
        "gpt_explorer": {"name": d.name, "input": c.input, "output": c.output, "activation": c.activation,
                         "weights_digest": c.weights_digest},
    }
    if c.kind == "transcoder":
        metadata["hook_name_out"] = _tl_hook(c.output)
        metadata["hook_head_index_out"] = None
    cfg = {"architecture": architecture, "d_in": c.d_in, "d_sae": c.n_features, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": False, "normalize_activations": "none", "reshape_activations": "none",
           "metadata": metadata}
    if transcoder_class:
        cfg["d_out"] = c.d_out
    if architecture == "topk":
        cfg["k"] = c.k
        cfg["rescale_acts_by_decoder_norm"] = False
    return cfg, tensors


def export_saelens(d: LoadedDictionary, out: str | Path, model_name: str = "") -> Path:
    """Write one dictionary as a folder SAELens' `SAE.load_from_disk(out)` loads (cfg.json + sae_weights.safetensors);
    its encode/decode equal ours."""
    cfg, tensors = saelens_files(d, model_name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / SAELENS_CFG, json.dumps(cfg, indent=2))
    atomic.write_bytes(out / SAELENS_WEIGHTS, save_tensors(tensors))
    return out


# ---- circuit-tracer ----

def circuit_tracer_layer(d: LoadedDictionary, width: int | None = None) -> dict[str, torch.Tensor]:
    """The tensors of circuit-tracer's layer_{i}.safetensors for one of our per-layer transcoders, padded to `width`
    features when given: circuit-tracer stacks one width for every layer, and a padded feature (zero encoder column,
    bias and decoder row) has pre-activation 0, so it never fires under ReLU, JumpReLU or TopK and changes nothing."""
    t = d.module.tensors()
    n = t["W_enc"].size(1)
    pad = (width or n) - n
    if pad < 0:
        raise DictionaryError(f"{d.name} has {n} features, more than the {width} it is padded to")
    if pad:
        t = dict(t)
        t["W_enc"] = torch.cat([t["W_enc"], t["W_enc"].new_zeros(t["W_enc"].size(0), pad)], 1)
        t["b_enc"] = torch.cat([t["b_enc"], t["b_enc"].new_zeros(pad)])
        t["W_dec"] = torch.cat([t["W_dec"], t["W_dec"].new_zeros(pad, t["W_dec"].size(1))])
        if "threshold" in t:
            t["threshold"] = torch.cat([t["threshold"], t["threshold"].new_zeros(pad)])
    out = {"W_enc": t["W_enc"].T.contiguous(), "W_dec": t["W_dec"], "b_enc": t["b_enc"], "b_dec": t["b_dec"]}
    if "threshold" in t:
        out["activation_function.threshold"] = t["threshold"]
    if "W_skip" in t:
        out["W_skip"] = t["W_skip"].T.contiguous()  # circuit-tracer applies x @ W_skip.T
    return out


def check_transcoder_set(transcoders: list[LoadedDictionary], allow_topk: bool = False) -> None:
    """What circuit-tracer's TranscoderSet needs: one transcoder per layer 0..L-1, in order, one kind of activation
    (narrower layers are padded to the widest: circuit_tracer_layer); TopK only when asked (its loader would read
    them as ReLU)."""
    if not transcoders:
        raise DictionaryError("no transcoders to export")
    for layer, d in enumerate(transcoders):
        c = d.config
        if c.kind != "transcoder" or c.layer != layer:
            raise DictionaryError(f"{d.name} is not a transcoder of layer {layer}: circuit-tracer needs one "
                                  f"transcoder per layer, 0..{len(transcoders) - 1}")
    if len({d.config.skip for d in transcoders}) > 1:
        raise DictionaryError("circuit-tracer needs all transcoders with a skip connection or none")
    if len({(d.config.activation, d.config.k) for d in transcoders}) > 1:
        raise DictionaryError("these transcoders use different activations (or k): config.yaml records one for the set")
    topk = [d.name for d in transcoders if d.config.activation == "topk"]
    if topk and not allow_topk:
        raise DictionaryError(f"{', '.join(topk)} {'is' if len(topk) == 1 else 'are'} TopK: circuit-tracer 0.5 has no "
                              "TopK loader and would read them as ReLU transcoders (wrong activations). Pass "
                              "--allow-topk to write them anyway and set the activation after loading (README: "
                              "'Open our files in SAELens and circuit-tracer'), or train with --activation jumprelu")


def _yaml(config: dict) -> str:
    """A flat YAML mapping of JSON scalars (JSON strings are valid YAML): no YAML library needed."""
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items())


def _write_circuit_tracer(out: str | Path, files: dict[str, dict[str, torch.Tensor]], config: dict, what: str) -> Path:
    """out/config.yaml + the safetensors files, written into a temporary folder and renamed into place, so a refused
    or failed export leaves nothing half-written (and an earlier export is replaced whole)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / CT_CONFIG).is_file():
        raise DictionaryError(f"{out} exists and is not a circuit-tracer export: choose a new or empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f"{atomic.TMP_PREFIX}{out.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, tensors in files.items():
            (tmp / name).write_bytes(save_tensors(tensors))
        (tmp / CT_CONFIG).write_text(f"# circuit-tracer {what} written by gpt-features export\n" + _yaml(config))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def export_circuit_tracer(transcoders: list[LoadedDictionary], out: str | Path, scan: str,
                          model_name: str = "", allow_topk: bool = False) -> Path:
    """Write per-layer transcoders as circuit-tracer's transcoder set: out/config.yaml + out/layer_{i}.safetensors.
    Load with circuit_tracer.utils.caching.load_transcoders_from_cache(out.name, cache_dir=out.parent)."""
    check_transcoder_set(transcoders, allow_topk)
    width = max(d.config.n_features for d in transcoders)
    files = {f"layer_{layer}.safetensors": circuit_tracer_layer(d, width) for layer, d in enumerate(transcoders)}
    config = {"model_kind": "transcoder_set", "model_name": model_name, "scan": scan,
              "feature_input_hook": CT_INPUT_HOOK, "feature_output_hook": CT_OUTPUT_HOOK,
              "activation_function": transcoders[0].config.activation}
    if transcoders[0].config.activation == "topk":
        config["k"] = transcoders[0].config.k
    config["gpt_explorer_transcoders"] = [d.name for d in transcoders]
    return _write_circuit_tracer(out, files, config, "transcoder set")


def circuit_tracer_clt_files(clt) -> dict[str, dict[str, torch.Tensor]]:
    """circuit-tracer's cross-layer layout (its load_clt): per layer i, W_enc_{i}.safetensors with W_enc_{i}
    (n, d_model: ours transposed), b_enc_{i}, b_dec_{i} (layer i's output bias) and threshold_{i} for JumpReLU, and
    W_dec_{i}.safetensors with W_dec_{i} (n, L - i, d_model), layer i's features to outputs i..L-1, as ours."""
    t = clt.module.tensors()
    files = {}
    for i in range(clt.config.n_layers):
        enc = {f"W_enc_{i}": t[f"W_enc_{i}"].T.contiguous(), f"b_enc_{i}": t[f"b_enc_{i}"], f"b_dec_{i}": t[f"b_dec_{i}"]}
        if f"threshold_{i}" in t:
            enc[f"threshold_{i}"] = t[f"threshold_{i}"]
        files[f"W_enc_{i}.safetensors"] = {k: v.float().contiguous() for k, v in enc.items()}
        files[f"W_dec_{i}.safetensors"] = {f"W_dec_{i}": t[f"W_dec_{i}"].float().contiguous()}
    return files


def export_circuit_tracer_clt(clt, out: str | Path, scan: str, model_name: str = "", allow_topk: bool = False) -> Path:
    """Write a cross-layer transcoder (gpt/interp/features/crosslayer.py) in circuit-tracer's CLT layout; load with
    circuit_tracer.transcoder.cross_layer_transcoder.load_clt(out, feature_input_hook="mlp.hook_in",
    feature_output_hook="mlp.hook_out"). TopK only when asked (its loader reads ReLU/JumpReLU only)."""
    cfg = clt.config
    if cfg.activation == "topk" and not allow_topk:
        raise DictionaryError(f"{clt.name} is TopK: circuit-tracer has no TopK loader and would read it as a ReLU "
                              "transcoder (wrong activations). Pass --allow-topk to write it anyway and set the "
                              "activation after loading")
    config = {"model_kind": "cross_layer_transcoder", "model_name": model_name, "scan": scan,
              "feature_input_hook": CT_INPUT_HOOK, "feature_output_hook": CT_OUTPUT_HOOK,
              "activation_function": cfg.activation, "gpt_explorer_transcoders": [clt.name]}
    if cfg.activation == "topk":
        config["k"] = cfg.k
    return _write_circuit_tracer(out, circuit_tracer_clt_files(clt), config, "cross-layer transcoder")
