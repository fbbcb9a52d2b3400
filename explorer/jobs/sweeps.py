"""Sweeps as a queue: a small runner process starts the sweep's runs one by one, each as an ordinary job through
`jobs.start_job`, whenever the job limit leaves a slot; none starts beyond it (start_job's busy check and launch
happen under the launch lock). The runner itself is not a training job and holds no slot.

`python -m explorer.jobs.sweeps MANIFEST` is the runner; `start_sweep` writes the manifest and spawns it,
`stop_sweep` stops it and every run it started. A sweep is stopped by a `<name>.stop` file beside the manifest
(the runner alone writes the manifest, so the two never race on it) and a SIGTERM to the runner.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from explorer.jobs import training as jobs
from gpt import runs
from gpt.lab.sweeps import SweepError, manifest_path, plan, read_manifest

POLL_S = 1.0


def _write(path: Path, manifest: dict) -> None:
    runs.atomic_write_json(path, manifest)


def start_sweep(name: str, params: dict[str, list], seeds: list[int], base: dict,
                root: str | Path | None = None, corpus_text: str | None = None) -> Path:
    """Plan the sweep, write its manifest and start its queue runner; returns the manifest's path.
    corpus_text (uploaded or pasted) is saved beside the manifest and every run trains on that file."""
    root = Path(root or runs.checkpoints_root())
    planned = plan(name, params, seeds)
    path = manifest_path(name, root)
    if path.exists():
        raise SweepError(f"a sweep named {path.stem!r} already exists; pick another name")
    taken = [p.run for p in planned if (root / p.run).exists()]
    if taken:
        raise SweepError(f"runs named {', '.join(taken[:3])} already exist; pick another sweep name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if corpus_text is not None:
        corpus_file = path.with_suffix(".corpus.txt")
        runs.atomic_write_text(corpus_file, corpus_text)
        base = {**base, "corpus": str(corpus_file)}
    if not base.get("corpus"):
        raise SweepError("a sweep needs a corpus: a built-in one, an uploaded file or pasted text")
    manifest = {"name": path.stem, "params": params, "seeds": seeds, "base": base, "runner_pid": None,
                "created_at": time.time(),
                "runs": [{"run": p.run, "values": p.values, "seed": p.seed, "state": "pending", "error": None}
                         for p in planned]}
    _write(path, manifest)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(jobs.ROOT), os.environ.get("PYTHONPATH")]))}
    with open(path.with_suffix(".log"), "ab") as log:  # own session: the queue outlives the page that started it
        proc = subprocess.Popen([sys.executable, "-m", "explorer.jobs.sweeps", str(path)], cwd=jobs.ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    jobs._children[proc.pid] = proc  # polled by jobs, so it never stays a zombie
    return path


def stop_file(path: Path) -> Path:
    return path.with_suffix(".stop")


def sweep_state(path: str | Path, root: str | Path | None = None) -> dict[str, int]:
    """How many of the sweep's runs are pending, live (starting/running), finished, or ended otherwise."""
    path = Path(path)
    root = Path(root or path.parent.parent)
    manifest = read_manifest(path)
    counts = {"pending": 0, "live": 0, "finished": 0, "other": 0}
    for entry in manifest["runs"]:
        if entry["state"] == "pending":
            counts["pending" if not stop_file(path).exists() else "other"] += 1
            continue
        state = jobs.job_state(root / entry["run"]).state if (root / entry["run"]).is_dir() else "failed"
        counts["live" if state in jobs.LIVE_STATES else "finished" if state == "finished" else "other"] += 1
    return counts


def runner_alive(path: str | Path) -> bool:
    pid = read_manifest(path).get("runner_pid")
    if not isinstance(pid, int):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"explorer.jobs.sweeps" in cmdline


def stop_sweep(path: str | Path, root: str | Path | None = None) -> int:
    """Stop the queue (no further run starts) and every run of it still live; returns how many runs were stopped."""
    path = Path(path)
    root = Path(root or path.parent.parent)
    runs.atomic_write_text(stop_file(path), "stop\n")
    manifest = read_manifest(path)
    pid = manifest.get("runner_pid")
    if runner_alive(path):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    stopped = 0
    for entry in manifest["runs"]:
        run_dir = root / entry["run"]
        if entry["state"] == "started" and run_dir.is_dir() and jobs.job_state(run_dir).live:
            stopped += bool(jobs.stop_job(run_dir))
    return stopped


def run_queue(path: str | Path, poll_s: float = POLL_S) -> int:
    """The runner's loop: start each pending run when a slot is free, until none is left or the sweep is stopped."""
    path = Path(path)
    root = path.parent.parent
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    manifest = read_manifest(path)
    manifest["runner_pid"] = os.getpid()
    _write(path, manifest)
    while not stop["now"] and not stop_file(path).exists():
        pending = [e for e in manifest["runs"] if e["state"] == "pending"]
        if not pending:
            break
        entry = pending[0]
        if jobs.busy_message(root):  # no slot: wait (start_job checks again under the launch lock)
            time.sleep(poll_s)
            continue
        options = {**manifest["base"], **entry["values"], "seed": entry["seed"]}
        try:
            jobs.start_job(entry["run"], options, root=root)
            entry["state"] = "started"
        except jobs.JobError as e:
            if jobs.busy_message(root):  # another session took the slot first: wait for the next one
                time.sleep(poll_s)
                continue
            entry["state"], entry["error"] = "failed", str(e)
        except (ValueError, OSError) as e:  # a bad option or an unwritable folder: this run cannot start
            entry["state"], entry["error"] = "failed", str(e)
        _write(path, manifest)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m explorer.jobs.sweeps MANIFEST", file=sys.stderr)
        return 2
    try:
        return run_queue(Path(argv[0]))
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
