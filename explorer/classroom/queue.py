"""The classroom's training queue: learners' (and the teacher's) training requests wait in a file and start, in
order, whenever the server-wide job limit (jobs.max_concurrent_jobs) leaves a slot.

  .classroom/queue.json   [{"id", "run", "learner", "name", "options", "corpus_file", "expected_s",
                            "needed_bytes", "requested_at", "error"}, ...] in the order they start
  .classroom/queue/       the uploaded or pasted corpus of each waiting request (<id>.txt)

A request is checked when it is made (the teacher's caps, one job per learner, the disk quotas: explorer/classroom/policy.py)
and started by `advance`, under the queue lock and then start_job's own launch lock, so no slot is taken twice.
`advance` runs right after a request is queued (a free slot starts it at once) and in a small runner process,
`python -m explorer.classroom.queue ROOT`, which polls while requests wait and exits when none is left. The runner
runs in its own session and the queue is a file: a server restart loses nothing, and the app starts a runner again
when it finds requests waiting. A request that fails to start stays listed with its error until its learner
dismisses it. Nothing here imports streamlit.
"""
from __future__ import annotations

import contextlib
import heapq
import math
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from explorer.classroom import policy as classroom
from explorer.classroom.policy import Actor, Refused, Settings
from explorer.jobs import training as jobs
from gpt import runs

QUEUE = "queue.json"
CORPORA = "queue"
QUEUE_LOCK = "queue.lock"
RUNNER_LOCK = "runner.lock"
POLL_S = 1.0


def _paths(root: str | Path | None) -> tuple[Path, Path]:
    folder = classroom.class_dir(root)
    return folder / QUEUE, folder / CORPORA


def read_queue(root: str | Path | None = None) -> list[dict]:
    """Every request, waiting ones first in the order they start, failed ones (with "error") kept for their learner."""
    path, _ = _paths(root)
    entries = classroom._read_json(path, [])
    return [e for e in entries if isinstance(e, dict) and "id" in e and "run" in e]


def waiting(root: str | Path | None = None) -> list[dict]:
    return [e for e in read_queue(root) if not e.get("error")]


@contextlib.contextmanager
def queue_lock(root: str | Path | None = None):
    """One writer of queue.json at a time, across sessions and processes (an flock the OS drops if we die)."""
    import fcntl
    folder = classroom.class_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / QUEUE_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write(root: str | Path | None, entries: list[dict]) -> None:
    path, _ = _paths(root)
    runs.atomic_write_json(path, entries)


# ---- making and cancelling a request ----
def enqueue(actor: Actor, settings: Settings, run_name: str, options: dict, *, params: int,
            corpus_bytes: bytes | None = None, expected_s: float | None = None,
            root: str | Path | None = None, spawn_runner: bool = True) -> dict:
    """Queue a training request after every classroom check; Refused (nothing queued) says why and what to do.
    Starts it at once when a slot is free. Returns the queue entry."""
    root = Path(root or runs.checkpoints_root())
    if not (actor.teacher or actor.learner_id):
        raise Refused("Choose your name in the sidebar first: your runs are kept under it.")
    out = runs.run_path(run_name, root)            # RunError for a name that is not a folder name
    max_iters = int(options.get("max_iters") or 0)
    n_corpus = len(corpus_bytes) if corpus_bytes is not None else 0
    if not actor.teacher:
        problems = classroom.request_problems(settings, params, max_iters, n_corpus)
        if problems:
            raise Refused("The teacher's limits: " + "; ".join(problems) + ".")
    needed = classroom.estimate_run_bytes(params, max_iters, int(options.get("eval_interval") or max_iters or 1),
                                          n_corpus)
    with queue_lock(root):
        entries = read_queue(root)
        if out.exists() or any(e["run"] == out.name for e in entries):
            raise Refused(f"A run named {out.name!r} already exists or is queued; pick another name.")
        if not actor.teacher:
            mine = [e for e in entries if e.get("learner") == actor.learner_id and not e.get("error")]
            live = classroom.learner_job(actor, root)
            if mine or live:
                what = f"{mine[0]['run']} is waiting in the queue" if mine else f"{live} is training"
                raise Refused(f"You already have a training job: {what}. One job per learner at a time: wait for "
                              "it to finish, or stop or cancel it on the Train page, then start this one.")
            usage = classroom.disk_usage(root)
            for e in entries:   # waiting requests will take their space too
                if e.get("learner") and not e.get("error"):
                    usage[e["learner"]] = usage.get(e["learner"], 0) + int(e.get("needed_bytes") or 0)
            problem = classroom.quota_problem(settings, usage, actor.learner_id, needed)
            if problem:
                raise Refused(problem)
        entry = {"id": secrets.token_hex(6), "run": out.name, "learner": actor.learner_id, "name": actor.name,
                 "options": dict(options), "corpus_file": None, "expected_s": expected_s,
                 "needed_bytes": needed, "requested_at": time.time(), "error": None}
        if corpus_bytes is not None:
            _, corpora = _paths(root)
            corpora.mkdir(parents=True, exist_ok=True)
            entry["corpus_file"] = str(corpora / f"{entry['id']}.txt")
            runs.atomic_write_bytes(entry["corpus_file"], corpus_bytes)
        _write(root, [*entries, entry])
    advance(root)
    if spawn_runner and waiting(root):
        ensure_runner(root)
    return entry


def cancel(actor: Actor, entry_id: str, root: str | Path | None = None) -> dict:
    """Take a request out of the queue (its learner, or the teacher); Refused for anyone else's."""
    with queue_lock(root):
        entries = read_queue(root)
        entry = next((e for e in entries if e["id"] == entry_id), None)
        if entry is None:
            raise Refused("That request is no longer in the queue (it has started or was cancelled).")
        if not classroom.may_change(actor, entry.get("learner")):
            whose = f"{entry.get('name') or 'another learner'}'s" if entry.get("learner") else "the teacher's"
            raise Refused(f"You cannot cancel {entry['run']}: it is {whose} request, so nothing was changed.")
        _write(root, [e for e in entries if e["id"] != entry_id])
    if entry.get("corpus_file"):
        Path(entry["corpus_file"]).unlink(missing_ok=True)
    return entry


# ---- starting requests ----
def _start(entry: dict, root: Path) -> Path:
    corpus_bytes = Path(entry["corpus_file"]).read_bytes() if entry.get("corpus_file") else None
    owner = {"learner": entry["learner"], "name": entry["name"]} if entry.get("learner") else None
    return jobs.start_job(entry["run"], entry["options"], corpus_bytes=corpus_bytes, root=root, owner=owner)


def advance(root: str | Path | None = None, start=None) -> list[str]:
    """Start waiting requests, first come first served, while the job limit leaves a slot; returns the runs
    started. start(entry, root) is jobs.start_job underneath (tests pass their own)."""
    root = Path(root or runs.checkpoints_root())
    start = start or _start
    started = []
    with queue_lock(root):
        entries = read_queue(root)
        for entry in [e for e in entries if not e.get("error")]:
            if jobs.busy_message(root):
                break
            try:
                start(entry, root)
            except (jobs.JobError, runs.RunError, ValueError, OSError) as e:
                if jobs.busy_message(root):   # another server or a direct start took the slot: wait
                    break
                entry["error"] = str(e)       # this request cannot start: its learner sees why
                continue
            entries.remove(entry)
            started.append(entry["run"])
            if entry.get("corpus_file"):
                Path(entry["corpus_file"]).unlink(missing_ok=True)
        _write(root, entries)
    return started


# ---- where a learner stands ----
def expected_starts(remaining_s: list[float | None], durations_s: list[float | None], limit: int) -> list[float | None]:
    """Seconds from now until each waiting request starts: running jobs end after remaining_s (None: unknown),
    each request then trains for its expected duration (None: unknown), `limit` jobs at a time, in order. None
    where an unknown time lies on the way."""
    ends = sorted(math.inf if r is None else max(0.0, float(r)) for r in remaining_s)
    ends = ends[max(0, len(ends) - limit):] if len(ends) > limit else ends + [0.0] * (limit - len(ends))
    # with more jobs running than the limit (it was lowered), a slot opens only when enough of them have ended:
    # dropping the earliest ends keeps, as the first free slot, the end of the (running - limit + 1)-th job
    heapq.heapify(ends)
    starts = []
    for duration in durations_s:
        t = heapq.heappop(ends)
        starts.append(None if math.isinf(t) else t)
        heapq.heappush(ends, t + (math.inf if duration is None else float(duration)))
    return starts


def standing(root: str | Path | None = None) -> list[tuple[dict, int, float | None]]:
    """(entry, place from 1, expected seconds until it starts) for every waiting request, in order."""
    root = Path(root or runs.checkpoints_root())
    queue = waiting(root)
    remaining = [state.eta_s if state.state == "running" else None for _, state in jobs.live_jobs(root)]
    starts = expected_starts(remaining, [e.get("expected_s") for e in queue], jobs.max_concurrent_jobs())
    return [(entry, i + 1, start) for i, (entry, start) in enumerate(zip(queue, starts))]


def describe(place: int, start_s: float | None) -> str:
    ordinal = {1: "1st", 2: "2nd", 3: "3rd"}.get(place, f"{place}th")
    when = (f"expected to start in about {jobs.format_eta(start_s)}" if start_s is not None
            else "its start time is not known yet (a job ahead of it has no estimate)")
    return f"{ordinal} in the queue, {when}"


# ---- the runner process ----
def ensure_runner(root: str | Path | None = None) -> None:
    """Start a runner unless one is running (a second one exits at once: it cannot take the runner lock)."""
    root = Path(root or runs.checkpoints_root())
    if runner_alive(root):
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(jobs.ROOT), os.environ.get("PYTHONPATH")]))}
    folder = classroom.class_dir(root)
    with open(folder / "runner.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "explorer.classroom.queue", str(root)], cwd=jobs.ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    jobs._children[proc.pid] = proc  # polled by jobs, so it never stays a zombie


def runner_alive(root: str | Path | None = None) -> bool:
    """Is some process holding the runner lock?"""
    import fcntl
    path = classroom.class_dir(root) / RUNNER_LOCK
    if not path.exists():
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def run_runner(root: str | Path, poll_s: float = POLL_S, max_idle_s: float = 5.0) -> int:
    """The runner's loop: advance the queue every poll_s while requests wait; exit once none has waited for
    max_idle_s (a request queued meanwhile spawns a new runner)."""
    import fcntl
    root = Path(root)
    folder = classroom.class_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / RUNNER_LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0   # another runner serves this queue
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < max_idle_s:
            advance(root)
            if waiting(root):
                idle_since = time.monotonic()
            time.sleep(poll_s)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m explorer.classroom.queue CHECKPOINTS_ROOT", file=sys.stderr)
        return 2
    return run_runner(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
