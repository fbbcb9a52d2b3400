"""A dictionary's folder in a run, whatever its kind (a per-layer dictionary, gpt.interp.features.dictionary, or a
cross-layer transcoder, gpt.interp.features.crosslayer): the file names, the error every refusal raises, the checks
every loader makes on config.json and dictionary.safetensors (same messages for both kinds), writing a folder, and
listing a run's folders of one kind.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from gpt.runs import WEIGHTS, atomic

FOLDER = "features"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "dictionary.safetensors"
METRICS_FILE = "metrics.json"


class DictionaryError(ValueError):
    """A dictionary that cannot be used: the message names the file and what is wrong."""


def weights_digest(weights_path: str | Path) -> str:
    """sha256 of a weights file: which weights a dictionary was trained on (anyone can recompute it)."""
    h = hashlib.sha256()
    with open(weights_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Checks a per-layer dictionary's config and a cross-layer transcoder's (gpt.interp.features.crosslayer) share;
# each raises DictionaryError("<where>: <what is wrong>").

def check_fields(d: dict, required: tuple[str, ...], where: str) -> dict:
    """A config.json object with every required field (and k for TopK); returns its "training" record ({} if none)."""
    if not isinstance(d, dict):
        raise DictionaryError(f"{where}: expected a JSON object")
    missing = [k for k in required if k not in d]
    if d.get("activation") == "topk" and "k" not in d:
        missing.append("k")
    if missing:
        raise DictionaryError(f"{where}: missing field(s) {', '.join(missing)}")
    return d.get("training") if isinstance(d.get("training"), dict) else {}


def check_sizes(cfg, names: tuple[str, ...], where: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DictionaryError(f"{where}: {name} must be a positive integer, got {value!r}")


def check_k(cfg, where: str) -> None:
    if cfg.activation == "topk":
        if not isinstance(cfg.k, int) or isinstance(cfg.k, bool) or not 1 <= cfg.k <= cfg.n_features:
            raise DictionaryError(f"{where}: k must be an integer in 1..n_features ({cfg.n_features}) for a TopK "
                                  f"dictionary, got {cfg.k!r}")


def check_digest_field(digest, where: str) -> None:
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise DictionaryError(f"{where}: weights_digest must be the sha256 (64 hex digits) of the weights it was "
                              "trained on")


def write_folder(folder: Path, config: dict, tensors: dict[str, torch.Tensor], file_format: str) -> Path:
    """config.json then dictionary.safetensors (metadata format: file_format), each atomically, the weights last."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_text(folder / CONFIG_FILE, json.dumps(config, indent=2))
    atomic.write_bytes(folder / WEIGHTS_FILE, save_tensors(tensors, metadata={"format": file_format}))
    (folder / METRICS_FILE).unlink(missing_ok=True)  # metrics of the weights this folder held before are stale
    return folder


def read_config_json(folder: Path) -> tuple[dict, str]:
    """(config.json as a dict, "<folder>/config.json" for messages); DictionaryError when it is missing or unreadable."""
    where = f"{folder.name}/{CONFIG_FILE}"
    try:
        return json.loads((folder / CONFIG_FILE).read_text()), where
    except FileNotFoundError:
        raise DictionaryError(f"{where} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DictionaryError(f"{where} is not readable JSON ({e})") from None


def check_digest(where: str, trained_on: str, digest: str | None) -> None:
    """Refuse a dictionary trained on other weights than the run's (digest None: not checked)."""
    if digest is not None and trained_on != digest:
        raise DictionaryError(f"{where}: trained on other weights (digest {trained_on[:12]}..., the run's "
                              f"weights are {digest[:12]}...); train it again for these weights")


def read_checked_tensors(folder: Path, shapes: dict[str, tuple], dtype: torch.dtype | None = None
                         ) -> dict[str, torch.Tensor]:
    """dictionary.safetensors with every tensor of `shapes` present, of that shape, finite (and stored as `dtype`
    when given); DictionaryError names the file and what is wrong."""
    wwhere = f"{folder.name}/{WEIGHTS_FILE}"
    try:
        tensors = load_tensors((folder / WEIGHTS_FILE).read_bytes())
    except FileNotFoundError:
        raise DictionaryError(f"{wwhere} is missing (a training that did not finish?)") from None
    except (OSError, SafetensorError, ValueError) as e:
        raise DictionaryError(f"{wwhere} is not a readable safetensors file ({e})") from None
    for name, shape in shapes.items():
        if name not in tensors:
            raise DictionaryError(f"{wwhere}: tensor {name} is missing")
        if tuple(tensors[name].shape) != shape:
            raise DictionaryError(f"{wwhere}: {name} is {list(tensors[name].shape)}, config.json implies {list(shape)}")
        if dtype is not None and tensors[name].dtype != dtype:
            raise DictionaryError(f"{wwhere}: {name} is stored as {str(tensors[name].dtype).removeprefix('torch.')}, "
                                  f"config.json says {str(dtype).removeprefix('torch.')}")
        if not torch.isfinite(tensors[name].float()).all():
            raise DictionaryError(f"{wwhere}: {name} holds NaN or infinite values")
    return tensors


def read_metrics(folder: Path) -> dict | None:
    """metrics.json, or None before the dictionary is evaluated."""
    try:
        return json.loads((folder / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None


def folder_kind(folder: str | Path) -> str | None:
    """The "kind" a dictionary folder's config.json names (None if unreadable): list_dictionaries leaves the
    cross-layer transcoders ("clt", gpt.interp.features.crosslayer) to their own listing."""
    try:
        raw = json.loads((Path(folder) / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return raw.get("kind") if isinstance(raw, dict) else None


@dataclass
class BrokenDictionary:
    name: str
    error: str


def load_folders(run_dir: str | Path, wanted: Callable[[str | None], bool], load: Callable, model_config,
                 digest: str | None) -> tuple[list, list[BrokenDictionary]]:
    """load(folder, model_config, digest) for each dictionary folder of the run whose config kind is wanted (sorted
    by name; hidden folders, a training's temporary ones, skipped): (loaded, refused with their reason). When digest
    is None it is computed from the run's weights file."""
    root = Path(run_dir) / FOLDER
    if not root.is_dir():
        return [], []
    if digest is None and (Path(run_dir) / WEIGHTS).is_file():
        digest = weights_digest(Path(run_dir) / WEIGHTS)
    good, broken = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not wanted(folder_kind(folder)):
            continue
        try:
            good.append(load(folder, model_config, digest))
        except DictionaryError as e:
            broken.append(BrokenDictionary(folder.name, str(e)))
    return good, broken
