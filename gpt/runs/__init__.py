"""Run folders: the only interface between the trainer process and the UI.

A run folder holds config.json, tokenizer.json, model.safetensors (latest weights), resume.safetensors
(weights + optimizer + RNG state, one file so a checkpoint is all-or-nothing), snapshots/step_NNNNNNN.safetensors,
metrics.jsonl, samples.jsonl and status.json. Every file is written to a temporary name and renamed into place.

Longer than our ~400-line habit on purpose: this is the one module that knows the run-folder format (names,
writes, status, loading, listing, the folders that failed); splitting it would spread that format over two.
"""
from __future__ import annotations

import json
import os
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model

from gpt.config import ConfigError, GPTConfig, TrainConfig
from gpt.model import GPT
from gpt.runs import atomic
from gpt.tokenizers import TokenizerError, load_tokenizer

CONFIG, TOKENIZER, WEIGHTS, RESUME = "config.json", "tokenizer.json", "model.safetensors", "resume.safetensors"
METRICS, SAMPLES, STATUS, SNAPSHOTS = "metrics.jsonl", "samples.jsonl", "status.json", "snapshots"
STOP_REQUEST = "stop_request"  # written by the app when it asks a trainer to stop; the trainer removes it at start
TMP_PREFIX = atomic.TMP_PREFIX
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "checkpoints"
_SNAPSHOT_RE = re.compile(r"^step_(\d{7})\.safetensors$")


class RunError(ValueError):
    """A run folder that cannot be used; the message says which file and why."""


def checkpoints_root() -> Path:
    return Path(os.environ.get("GPT_EXPLORER_CHECKPOINTS", DEFAULT_ROOT))


# ---- names ----
def sanitize_run_name(name: str) -> str:
    """A folder-safe run name: letters, digits, '.', '_' and '-' only, at most 64 characters."""
    if not isinstance(name, str):
        raise RunError("run name must be text")
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_name).strip(".-_")[:64].strip(".-_")
    if not cleaned:
        raise RunError(f"run name {name!r} has no usable characters; use letters, digits, '-', '_' or '.'")
    return cleaned


def run_path(name: str, root: str | Path | None = None) -> Path:
    """The folder for a run name, guaranteed to sit directly inside the checkpoints root."""
    root = Path(root or checkpoints_root()).resolve()
    path = (root / sanitize_run_name(name)).resolve()
    if path.parent != root:
        raise RunError(f"run name {name!r} would leave {root}")
    return path


# ---- atomic writes (gpt/runs/atomic.py; the names below are what the rest of the project calls) ----
atomic_write_bytes = atomic.write_bytes
atomic_write_text = atomic.write_text
atomic_write_json = atomic.write_json
atomic_save_file = atomic.save_tensors


def atomic_save_model(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """A GPT's weights, with its model config in the file's metadata (see check_config_metadata)."""
    if isinstance(getattr(model, "config", None), GPTConfig):
        metadata = {**(metadata or {}), **config_metadata(model.config)}
    atomic.save_module(model, path, metadata)


def _writer_alive(tmp: Path) -> bool:
    """True when the temp file's writer (the pid suffix) is another live process, e.g. the UI writing status."""
    pid = tmp.name.rsplit(".", 1)[-1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
        return True
    except PermissionError:
        return True
    except OSError:
        return False


def remove_stale_temp_files(run_dir: str | Path) -> int:
    """Temporary files left by a process killed mid-write; returns how many were removed."""
    removed = 0
    for folder in (Path(run_dir), Path(run_dir) / SNAPSHOTS):
        if folder.is_dir():
            for p in folder.glob(TMP_PREFIX + "*"):
                if _writer_alive(p):
                    continue
                p.unlink(missing_ok=True)
                removed += 1
    return removed


# ---- the trainer lock ----
LOCK = ".trainer.lock"
_held_locks: dict[str, object] = {}  # run folder -> open lock file, held while this process trains it


def lock_run(run_dir: str | Path) -> None:
    """Take the run folder's trainer lock: an flock the OS drops when the process ends (even on kill -9), so two
    trainers never write one folder, whatever status.json says. RunError when another process holds it."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: the status.json pid check is all there is
        return
    key = str(Path(run_dir).resolve())
    if key in _held_locks:
        return
    f = open(Path(run_dir) / LOCK, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        pid = read_status(run_dir).get("pid")
        raise RunError(f"{run_dir} is being trained by another process{f' ({pid})' if pid else ''}; "
                       "not starting a second one") from None
    _held_locks[key] = f


def release_locks() -> None:
    """Drop every trainer lock this process holds (the end of gpt.train.main)."""
    while _held_locks:
        _held_locks.popitem()[1].close()


# ---- jsonl ----
def append_jsonl(path: str | Path, row: dict) -> None:
    # one write() of one line: a crash can tear at most the final line, which readers skip
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn last line from a killed writer
                if isinstance(row, dict):
                    rows.append(row)
    except FileNotFoundError:
        pass
    return rows


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """On resume: drop rows logged after the checkpoint (they will be logged again) and any torn line."""
    for name in (METRICS, SAMPLES):
        path = Path(run_dir) / name
        if path.exists():
            rows = [r for r in read_jsonl(path) if isinstance(r.get("step"), int) and r["step"] <= last_step]
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# ---- status ----
def write_status(run_dir: str | Path, **fields) -> dict:
    status = read_status(run_dir)
    status.update(fields, updated_at=time.time())
    atomic_write_json(Path(run_dir) / STATUS, status)
    return status


def read_status(run_dir: str | Path) -> dict:
    try:
        data = json.loads((Path(run_dir) / STATUS).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def pid_is_trainer(pid) -> bool:
    """True when pid is alive and is a gpt.train or gpt.lab process (guards against pid reuse)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        return b"gpt.train" in cmdline or b"gpt.lab" in cmdline  # the lab's experiments are trainers too
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def effective_state(status: dict, alive=None) -> str:
    """The status file's state, with 'running' downgraded to 'orphaned' when its process is gone.
    alive(pid) -> bool decides that (default pid_is_trainer; the app also counts children it just started)."""
    state = status.get("state", "unknown")
    if state == "running" and not (alive or pid_is_trainer)(status.get("pid")):
        return "orphaned"
    return state


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


def run_summary(run_dir: Path) -> RunInfo | None:
    try:
        cfg = read_config(run_dir)
    except RunError:
        return None
    from gpt.model import count_params
    metrics = read_jsonl(run_dir / METRICS)
    vals = [r["val_loss"] for r in metrics if isinstance(r.get("val_loss"), (int, float))]
    status = read_status(run_dir)
    steps = [r["step"] for r in metrics if type(r.get("step")) is int] + [status.get("step")]
    step = max(s for s in steps if type(s) is int) if any(type(s) is int for s in steps) else 0
    modified = max((p.stat().st_mtime for p in (run_dir / METRICS, run_dir / STATUS, run_dir / CONFIG)
                    if p.exists()), default=0.0)
    return RunInfo(run_dir.name, run_dir, cfg["model"].arch, count_params(cfg["model"]), int(step),
                   cfg["train"].max_iters, min(vals) if vals else None, effective_state(status), modified, cfg)


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
            found.append(BrokenRun(path.name, path, error or _startup_error(path)))
            continue
        try:
            read_config(path)   # (not run_summary: this runs on every rerun and need not read the metrics)
        except RunError as e:
            found.append(BrokenRun(path.name, path, str(e)))
            continue
        if not (path / WEIGHTS).exists():
            found.append(BrokenRun(path.name, path, error or "no weights: it stopped before its first checkpoint"))
    return sorted(found, key=lambda b: b.path.stat().st_mtime, reverse=True)


def _startup_error(run_dir: Path) -> str:
    """The last `error:` line of the trainer's log (train.log), the reason a start failed."""
    try:
        lines = (run_dir / "train.log").read_bytes()[-4000:].decode("utf-8", "replace").splitlines()
    except OSError:
        lines = []
    errors = [line[len("error:"):].strip() for line in lines if line.startswith("error:")]
    return errors[-1] if errors else "it failed before writing its config (no train.log error line)"


def list_runs(root: str | Path | None = None) -> list[RunInfo]:
    """Every readable run folder under root, most recently active first."""
    root = Path(root or checkpoints_root())
    if not root.is_dir():
        return []
    # a dot-folder is work in progress (e.g. gpt.hf.gpt2's import, renamed into place when complete): never a run
    runs = [info for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
            and (info := run_summary(p)) is not None]
    return sorted(runs, key=lambda r: r.modified, reverse=True)
