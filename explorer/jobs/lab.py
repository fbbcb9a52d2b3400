"""Lab experiments as jobs: `python -m gpt.lab induction|grokking --out checkpoints/lab-<kind>-<stamp>`, started
under the same launch lock and job limit as any training job (explorer/jobs/training.py), stopped the same way. Each lab
folder's status.json names the lab process, so a lab counts as one job (the induction lab's two trainers
are nested inside its folder, each at one thread). Nothing here imports streamlit."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from explorer.jobs import training as jobs
from gpt import runs

KINDS = ("induction", "grokking")
PREFIX = "lab-"


def lab_folders(kind: str, root: str | Path | None = None) -> list[Path]:
    """This kind's lab folders under the checkpoints root, newest first."""
    root = Path(root or runs.checkpoints_root())
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(f"{PREFIX}{kind}-")]
    return sorted(found, key=lambda p: p.name, reverse=True)


def start_lab(kind: str, root: str | Path | None = None, extra_args: list[str] | None = None) -> Path:
    """Start one lab experiment in a new folder; JobError when the job limit is reached."""
    if kind not in KINDS:
        raise jobs.JobError(f"unknown lab experiment {kind!r}; choose one of {', '.join(KINDS)}")
    root = Path(root or runs.checkpoints_root())
    name = time.strftime(f"{PREFIX}{kind}-%m%d-%H%M%S")
    with jobs._writes_to(root / name), jobs.launch_lock(root):
        busy = jobs.busy_message(root)
        if busy:
            raise jobs.JobError(busy)
        out = jobs.new_run_dir(name, root)
        out.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "gpt.lab", kind, "--out", str(out), *(extra_args or [])]
        if kind == "grokking" and "--threads" not in cmd:
            cmd += ["--threads", str(jobs.trainer_threads())]
        return jobs._launch(out, cmd, None)


def induction_rows(lab_dir: str | Path) -> dict[str, list[dict]]:
    """Each model's evaluation rows (the ones carrying induction scores), by run folder name."""
    from gpt.lab.induction_lab import MODELS, eval_rows
    return {name: eval_rows(Path(lab_dir) / name) for name in MODELS}


def lab_result(lab_dir: str | Path) -> dict | None:
    """The induction lab's lab.json (verdict and summaries), once it has finished."""
    path = Path(lab_dir) / "lab.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
