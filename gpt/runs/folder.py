"""A run folder's files and their writers: names, atomic writes, the trainer lock, metrics/samples (JSON lines),
the status file. gpt/runs/loading.py reads configs and weights and lists runs."""
import json
import os
import re
import time
import unicodedata
from pathlib import Path

from gpt.runs import atomic

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


# ---- the trainer's log ----
LOG = "train.log"   # the trainer's stdout and stderr, as the app's launcher writes them


def log_tail(run_dir: str | Path, n_chars: int = 1500) -> str:
    """The end of the trainer's log ("" when there is none)."""
    try:
        data = (Path(run_dir) / LOG).read_bytes()[-n_chars:]
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace").strip()


def startup_error(run_dir: str | Path) -> str | None:
    """Why a trainer failed, from its log: the last `error:` line (the CLI's own message), else the last line (e.g. a
    traceback's exception), else None when the log is empty or missing."""
    lines = [line for line in log_tail(run_dir, 4000).splitlines() if line.strip()]
    errors = [line[len("error:"):].strip() for line in lines if line.startswith("error:")]
    return errors[-1] if errors else (lines[-1] if lines else None)
