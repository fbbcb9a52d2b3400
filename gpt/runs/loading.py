"""Loading a run folder: its config, the weights (checked against the config stored with them), snapshots, and the
listing of every run (with the folders that failed and why)."""
import json
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model

from gpt.config import ConfigError, GPTConfig, TrainConfig
from gpt.model import GPT
from gpt.runs import atomic, cached
from gpt.runs.folder import (
    _SNAPSHOT_RE,
    CONFIG,
    METRICS,
    SNAPSHOTS,
    STATUS,
    TOKENIZER,
    WEIGHTS,
    RunError,
    atomic_write_json,
    checkpoints_root,
    effective_state,
    pid_is_trainer,
    read_status,
    startup_error,
)
from gpt.tokenizers import TokenizerError, load_tokenizer


# ---- config and loading ----
def read_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CONFIG
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RunError(f"{run_dir} has no {CONFIG}; is it a run folder?") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(raw, dict) or "model" not in raw:
        raise RunError(f"{path} must be an object with a 'model' section")
    try:
        raw["model"] = GPTConfig.from_dict(raw["model"])
        raw["train"] = TrainConfig.from_dict(raw.get("train", {}))
    except ConfigError as e:
        raise RunError(f"{path}: {e}") from e
    return raw


def write_config(run_dir: str | Path, model_cfg: GPTConfig, train_cfg: TrainConfig, **extra) -> None:
    atomic_write_json(Path(run_dir) / CONFIG,
                      {"format_version": 1, "model": model_cfg.to_dict(), "train": train_cfg.to_dict(), **extra})


def snapshot_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / SNAPSHOTS / f"step_{step:07d}.safetensors"


def list_snapshots(run_dir: str | Path) -> list[int]:
    folder = Path(run_dir) / SNAPSHOTS
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _SNAPSHOT_RE.match(p.name)))


# ---- the model config stored with the weights ----
CONFIG_META = "model_config"  # safetensors metadata key: JSON of the GPTConfig the weights were written with
_RUNTIME_ONLY = ("dropout",)  # acts only while training: editing it does not change what the weights compute


def config_metadata(model_cfg: GPTConfig) -> dict[str, str]:
    return {CONFIG_META: json.dumps(model_cfg.to_dict(), sort_keys=True)}


def check_config_metadata(model_cfg: GPTConfig, metadata: dict[str, str], path: str | Path) -> None:
    """Refuse weights written for another model than config.json describes. Shapes cannot tell an n_head edit
    (the same tensors, cut into heads differently): the config saved inside the weights file can. Files
    without it (older runs) rely on the shape checks alone."""
    raw = metadata.get(CONFIG_META)
    if raw is None:
        return
    try:
        saved = json.loads(raw)
    except json.JSONDecodeError:
        saved = None
    if not isinstance(saved, dict):
        raise RunError(f"{Path(path).name} is corrupt: its {CONFIG_META} metadata is not a JSON object")
    wanted = model_cfg.to_dict()
    differ = [k for k in wanted if k in saved and k not in _RUNTIME_ONLY and saved[k] != wanted[k]]
    if differ:
        says = ", ".join(f"{k}={json.dumps(wanted[k])}" for k in differ)
        trained = ", ".join(f"{k}={json.dumps(saved[k])}" for k in differ)
        raise RunError(f"{Path(path).name} does not match config.json: config.json says {says} but the weights "
                       f"were trained with {trained}; restore config.json or use the weights' own run folder")


def atomic_save_model(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """A GPT's weights, with its model config in the file's metadata (see check_config_metadata)."""
    if isinstance(getattr(model, "config", None), GPTConfig):
        metadata = {**(metadata or {}), **config_metadata(model.config)}
    atomic.save_module(model, path, metadata)


def read_header(path: str | Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """(tensor name -> shape, metadata) from a safetensors file's header, without reading any tensor."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}, f.metadata() or {}
    except FileNotFoundError as e:
        raise RunError(f"{path} is missing") from e
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise RunError(f"{Path(path).name} is corrupt: {str(e).splitlines()[0][:300]}") from e


def load_weights(model: GPT, path: str | Path) -> dict[str, str]:
    """Load safetensors weights into model (strict); returns the file's metadata. Never unpickles."""
    _, metadata = read_header(path)
    if isinstance(getattr(model, "config", None), GPTConfig):
        check_config_metadata(model.config, metadata, path)
    try:
        load_model(model, str(path), strict=True)
    except FileNotFoundError as e:
        raise RunError(f"{path} is missing") from e
    except (SafetensorError, OSError, RuntimeError, ValueError, KeyError) as e:
        raise RunError(f"{Path(path).name} is corrupt or does not match config.json: "
                       f"{str(e).splitlines()[0][:300]}") from e
    return metadata


def check_weights_fit(model_cfg: GPTConfig, path: str | Path) -> None:
    """Compare the weights file's tensor shapes (read from its header) with the model config.json describes,
    before any real model is built: a config.json with absurd sizes never gets to allocate them."""
    if not Path(path).is_file():
        raise RunError(f"{path} is missing")
    found, metadata = read_header(path)
    check_config_metadata(model_cfg, metadata, path)  # the clearest message when the file says what it was
    # first the overall size, cheaply: even a model built on the meta device takes long for absurd layer counts
    width = next((shape[-1] for name, shape in found.items() if name in ("wte.weight", "lm_head.weight")), None)
    layers = len({name.split(".")[1] for name in found if name.startswith("blocks.")})
    positions = found.get("wpe.weight", (None,))[0]
    want = (model_cfg.n_embd, model_cfg.n_layer if model_cfg.has_attention else 0,
            model_cfg.block_size if model_cfg.has_position_table else None)
    if (width, layers, positions) != want:
        raise RunError(f"{Path(path).name} does not match config.json: the file holds {layers} layer(s) of width "
                       f"{width} and block size {positions}; config.json says {want[1]} of width {want[0]} and "
                       f"block size {want[2]}")
    with torch.device("meta"):  # shapes only, no memory
        expected = {name: tuple(t.shape) for name, t in GPT(model_cfg).state_dict().items()}
    for name, shape in found.items():
        if expected.get(name) != shape:
            want = f"config.json implies {list(expected[name])}" if name in expected else "config.json has no such tensor"
            raise RunError(f"{Path(path).name} does not match config.json: {name} is {list(shape)} in the file, "
                           f"but {want}")


@dataclass
class LoadedRun:
    path: Path
    model: GPT
    tokenizer: object
    config: GPTConfig
    train_config: TrainConfig
    step: int
    extra: dict


def load_run(path: str | Path, step: int | None = None, device: str = "cpu") -> LoadedRun:
    """Model (eval mode), tokenizer and config from a run folder; `step` picks a snapshot."""
    path = Path(path)
    cfg = read_config(path)
    try:
        tokenizer = load_tokenizer(path / TOKENIZER)
    except TokenizerError as e:
        raise RunError(str(e)) from e
    model_cfg: GPTConfig = cfg["model"]
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise RunError(f"tokenizer.json has {tokenizer.vocab_size} tokens but the model expects "
                       f"{model_cfg.vocab_size}; the files do not belong together")
    weights = snapshot_path(path, step) if step is not None else path / WEIGHTS
    check_weights_fit(model_cfg, weights)
    model = GPT(model_cfg)
    metadata = load_weights(model, weights)
    model.to(device).eval()
    loaded_step = int(metadata.get("step", step or 0))
    extra = {k: v for k, v in cfg.items() if k not in ("model", "train")}
    return LoadedRun(path, model, tokenizer, model_cfg, cfg["train"], loaded_step, extra)


@dataclass
class RunInfo:
    name: str
    path: Path
    arch: str
    params: int
    step: int
    max_iters: int
    best_val: float | None
    state: str
    modified: float
    config: dict


_summaries: dict[str, tuple] = {}   # run folder -> (signature of its three files, RunInfo, status)
_summaries_lock = threading.Lock()


def run_summary(run_dir: Path) -> RunInfo | None:
    """The run's RunInfo, or None when its config cannot be read. Computed again only when config.json,
    metrics.jsonl or status.json changed (gpt/runs/cached.py; metrics are read incrementally while a run trains);
    the state is checked on every call (a trainer that died leaves its status file as it was: 'orphaned').
    The config dict is shared between callers: do not mutate it."""
    run_dir = Path(run_dir)
    key = str(run_dir)
    sig = tuple(cached.signature(run_dir / name) for name in (CONFIG, METRICS, STATUS))
    with _summaries_lock:
        hit = _summaries.get(key)
    if hit is None or hit[0] != sig:
        hit = (sig, *_summarise(run_dir, sig))
        with _summaries_lock:
            if len(_summaries) >= cached.MAX_FILES:
                _summaries.clear()
            _summaries[key] = hit
    _, info, status = hit
    return None if info is None else replace(info, state=effective_state(status))


def _summarise(run_dir: Path, sig: tuple) -> tuple[RunInfo | None, dict]:
    try:
        cfg = read_config(run_dir)
    except RunError:
        return None, {}
    from gpt.sizing import count_params
    metrics = cached.read_jsonl_rows(run_dir / METRICS)
    vals = [r["val_loss"] for r in metrics if isinstance(r.get("val_loss"), (int, float))]
    status = read_status(run_dir)
    steps = [r["step"] for r in metrics if type(r.get("step")) is int] + [status.get("step")]
    step = max(s for s in steps if type(s) is int) if any(type(s) is int for s in steps) else 0
    modified = max((s[3] / 1e9 for s in sig if s is not None), default=0.0)
    info = RunInfo(run_dir.name, run_dir, cfg["model"].arch, count_params(cfg["model"]), int(step),
                   cfg["train"].max_iters, min(vals) if vals else None, "unknown", modified, cfg)
    return info, status


@dataclass
class BrokenRun:
    """A folder under the checkpoints root that cannot be opened as a model: a failed start, a crash before the
    first checkpoint, a damaged config. Listed (so it can be deleted from the app) with what went wrong."""
    name: str
    path: Path
    error: str


def broken_runs(root: str | Path | None = None) -> list[BrokenRun]:
    """Run folders (a config.json or a status.json) that have no usable config or no weights and no live
    trainer that is about to write them, newest first."""
    root = Path(root or checkpoints_root())
    found = []
    for path in (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else ():
        if not ((path / CONFIG).exists() or (path / STATUS).exists()):
            continue  # not a run folder at all (e.g. an unrelated directory)
        status = read_status(path)
        if status.get("kind") == "induction-lab":
            continue  # the induction lab's folder holds two run folders (gpt/lab/induction_lab.py); it is not one
        if any(pid_is_trainer(status.get(k)) for k in ("pid", "chain_pid")):
            continue  # a live trainer (or its ladder) will write config.json and the weights shortly
        if status.get("state") in ("starting", "queued") and time.time() - (status.get("updated_at") or 0) < 10:
            continue  # the app is launching it this moment: its pid is written next
        error = status.get("error") if status.get("state") == "failed" else None
        if not (path / CONFIG).exists():
            if status.get("state") in ("queued", "cancelled", "stopped"):
                error = error or "stopped before it started (e.g. a ladder stopped before this rung)"
            found.append(BrokenRun(path.name, path, error or startup_error(path) or "it failed before writing its config (its log is empty)"))
            continue
        try:
            read_config(path)   # (not run_summary: this runs on every rerun and need not read the metrics)
        except RunError as e:
            found.append(BrokenRun(path.name, path, str(e)))
            continue
        if not (path / WEIGHTS).exists():
            found.append(BrokenRun(path.name, path, error or "no weights: it stopped before its first checkpoint"))
    return sorted(found, key=lambda b: b.path.stat().st_mtime, reverse=True)


def list_runs(root: str | Path | None = None) -> list[RunInfo]:
    """Every readable run folder under root, most recently active first."""
    root = Path(root or checkpoints_root())
    if not root.is_dir():
        return []
    # a dot-folder is work in progress (e.g. gpt.hf.gpt2's import, renamed into place when complete): never a run
    runs = [info for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
            and (info := run_summary(p)) is not None]
    return sorted(runs, key=lambda r: r.modified, reverse=True)
