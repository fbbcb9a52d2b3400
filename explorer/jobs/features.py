"""Dictionary training in the background: `python -m gpt.interp.features train RUN_DIR ...` as a subprocess (like the
trainer: a crash or a page change cannot touch the UI), its progress read from features/.training.json, a stop
requested through features/.stop_request (a file of its own; the trainer saves nothing then)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from explorer.jobs.training import ROOT, trainer_threads
from gpt.interp.features.cli import PROGRESS, STOP
from gpt.interp.features.dictionary import FOLDER

LOG = ".training.log"
_children: dict[str, subprocess.Popen] = {}  # run folder -> the process this server started


def train_command(run_dir: Path, kind: str, layers: list[int], n_features: int, k: int, tokens: int,
                  site: str = "resid_mid") -> list[str]:
    cmd = [sys.executable, "-m", "gpt.interp.features", "train", str(run_dir), "--kind", kind,
           "--layers", ",".join(str(i) for i in layers), "--n-features", str(int(n_features)), "--k", str(int(k)),
           "--tokens", str(int(tokens)), "--threads", str(trainer_threads())]
    return cmd + (["--site", site] if kind == "sae" else [])


def progress(run_dir: str | Path) -> dict | None:
    """The last progress the training wrote ({"state", "step", "total", "eta_s", "names"...}), or None."""
    try:
        state = json.loads((Path(run_dir) / FOLDER / PROGRESS).read_text())
    except (OSError, ValueError):
        return None
    proc = _children.get(str(run_dir))
    if proc is not None and proc.poll() is not None and state.get("state") in ("training", "evaluating"):
        state["state"] = "failed"   # the process ended without saying so: a crash
        state["log"] = log_tail(run_dir)
    return state


def running(run_dir: str | Path) -> bool:
    proc = _children.get(str(run_dir))
    return proc is not None and proc.poll() is None


def log_tail(run_dir: str | Path, n_chars: int = 800) -> str:
    try:
        return (Path(run_dir) / FOLDER / LOG).read_text(errors="replace")[-n_chars:]
    except OSError:
        return ""


def start(run_dir: str | Path, cmd: list[str]) -> None:
    run_dir = Path(run_dir)
    if running(run_dir):
        raise RuntimeError("a dictionary training is already running for this run; stop it first")
    folder = run_dir / FOLDER
    folder.mkdir(exist_ok=True)
    (folder / STOP).unlink(missing_ok=True)
    (folder / PROGRESS).write_text(json.dumps({"state": "starting"}))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(folder / LOG, "w") as log:
        _children[str(run_dir)] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True)


def request_stop(run_dir: str | Path) -> None:
    (Path(run_dir) / FOLDER / STOP).write_text("stop")
