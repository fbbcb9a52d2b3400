"""Training jobs as OS processes: start, stop, resume, chain (the ladder), and read their progress.

A job is `python -m gpt.train ...` started in its own session, so reruns, page switches, browser reloads and
even an app restart never kill it. Its state lives in the run folder (status.json, metrics.jsonl, train.log),
so any session re-attaches by reading files. Nothing here imports streamlit.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gpt import runs
from gpt.data import decode_bytes
from gpt.runs import log_tail  # noqa: F401  (pages read a job's log as jobs.log_tail)
from gpt.training import distributed

ROOT = Path(__file__).resolve().parents[2]  # the project folder
LOG = runs.LOG
USER_CORPUS = "corpus.txt"
OWNER = "owner.json"          # classroom mode: the learner a run belongs to (explorer/classroom/policy.py)
LIVE_STATES = ("queued", "starting", "running")
LAUNCH_LOCK = ".launch.lock"  # in the checkpoints root: one launch at a time across every app process
LAUNCH_WAIT_S = 30.0
_children: dict[int, subprocess.Popen] = {}   # processes this server started; polled so none stays a zombie
_launch_thread_lock = threading.Lock()        # the same, between the sessions (threads) of one server


class JobError(ValueError):
    """A job that cannot be started or stopped; the message says why."""


def max_concurrent_jobs() -> int:
    """Training jobs allowed at once: env GPT_EXPLORER_MAX_JOBS, else one per two cores (at least one)."""
    env = os.environ.get("GPT_EXPLORER_MAX_JOBS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 1) // 2)


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            _children.pop(pid, None)  # another session's thread may have reaped it already


def _alive(pid) -> bool:
    """Is pid a live trainer? A child we just started counts even before its exec shows gpt.train."""
    _reap()
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    return runs.pid_is_trainer(pid)


# ---- state ----
@dataclass
class JobState:
    state: str            # queued, starting, running, finished, stopped, failed, cancelled, orphaned, unknown
    step: int
    max_iters: int
    loss: float | None
    eta_s: float | None
    error: str | None
    stopping: bool = False  # Stop was pressed; the trainer is saving its checkpoint (its ETA no longer applies)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def job_state(run_dir: str | Path) -> JobState:
    """The run's state from status.json, checked against the process table."""
    run_dir = Path(run_dir)
    status = runs.read_status(run_dir)
    state = runs.effective_state(status, alive=_alive)  # the one rule for a trainer that died while running
    error = status.get("error")
    if state == "orphaned":
        error = error or ("the training process ended without a final status (killed?); "
                          "Resume continues from its last checkpoint")
    elif state == "starting" and not _alive(status.get("pid")):
        state = "failed"
        error = error or runs.startup_error(run_dir) or "the trainer exited before it started; see train.log"
    elif state == "queued" and not _alive(status.get("chain_pid")):
        state = "cancelled"
    stopping = state in LIVE_STATES and (run_dir / runs.STOP_REQUEST).exists()
    return JobState(state, int(status.get("step") or 0), int(status.get("max_iters") or 0),
                    status.get("loss"), None if stopping else status.get("eta_s"), error, stopping)


def live_jobs(root: str | Path | None = None) -> list[tuple[str, JobState]]:
    """(run name, state) of every queued, starting or running job under the checkpoints root."""
    root = Path(root or runs.checkpoints_root())
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and (folder / runs.STATUS).exists():
            st = job_state(folder)
            if st.live:
                found.append((folder.name, st))
    return found


def recently_ended(root: str | Path | None = None, within_s: float = 120.0) -> list[tuple[str, JobState]]:
    """(run name, state) of jobs that stopped, finished or failed in the last `within_s` seconds, newest first:
    the sidebar says "stopped at step N" for a while instead of only "No training running"."""
    root = Path(root or runs.checkpoints_root())
    if not root.is_dir():
        return []
    now, found = time.time(), []
    for folder in root.iterdir():
        status = runs.read_status(folder) if (folder / runs.STATUS).is_file() else {}
        ended_at = status.get("updated_at")
        if isinstance(ended_at, (int, float)) and now - ended_at < within_s:
            state = job_state(folder)
            if not state.live:
                found.append((ended_at, folder.name, state))
    return [(name, state) for _, name, state in sorted(found, key=lambda f: f[0], reverse=True)]


def busy_message(root: str | Path | None = None) -> str | None:
    """Why a new job cannot start now, or None when it can. A ladder chain counts as one job, even while all of
    its runs are still queued (its shell is about to start the first)."""
    root = Path(root or runs.checkpoints_root())
    active: dict[object, str] = {}  # one entry per training process or chain -> a run name to show
    for name, _state in live_jobs(root):
        chain = runs.read_status(root / name).get("chain_pid")
        active.setdefault(chain if chain else name, name)
    limit = max_concurrent_jobs()
    if len(active) >= limit:
        names = ", ".join(active.values())
        return (f"Busy: {len(active)} training job(s) already running ({names}); this machine allows {limit} at "
                f"a time so training gets the CPU. Stop it or wait for it to finish.")
    return None


@contextlib.contextmanager
def launch_lock(root: str | Path | None = None, wait_s: float = LAUNCH_WAIT_S):
    """Hold the checkpoints root's launch lock: the busy check and the launch that follows it become one step,
    so two sessions (threads of one server, or two servers) clicking Start at once cannot both pass the job
    limit. An flock the OS drops if the holder dies; held only until the new run's status names its process."""
    root = Path(root or runs.checkpoints_root())
    with _launch_thread_lock:
        try:
            import fcntl
        except ImportError:  # not on POSIX: the thread lock is all there is
            yield
            return
        root.mkdir(parents=True, exist_ok=True)
        with open(root / LAUNCH_LOCK, "a") as f:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise JobError("another session has been starting a training job for "
                                       f"{wait_s:.0f} s; try again in a moment") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


# ---- commands ----
def trainer_threads(cores: int | None = None) -> int:
    """CPU threads for a trainer started from the app: on a small machine leave one core to the UI and the
    browser. Two OpenMP threads sharing two busy cores stall at every barrier (bench/soak.py measured 0.03x
    tokens/s for a 0.39x CPU share); one thread slows down only in proportion to the CPU it loses."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores - 1) if cores <= 4 else cores


def train_command(out: Path, options: dict) -> list[str]:
    """`python -m gpt.train --out OUT --key value ...`; True flags become bare switches, None is skipped.
    options["nproc"] > 1 launches that many DDP processes through torchrun (one per GPU)."""
    options = dict(options)
    nproc = int(options.pop("nproc", None) or 1)
    options.setdefault("threads", trainer_threads())
    args = ["--out", str(out), "--quiet"]
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return distributed.launch_command(args, nproc, python=sys.executable)


def new_run_dir(name: str, root: str | Path | None = None) -> Path:
    """A fresh folder for a run name; refuses names that are taken."""
    path = runs.run_path(name, root or runs.checkpoints_root())
    if path.exists() and any(path.iterdir()):
        raise JobError(f"a run named {path.name!r} already exists; pick another name or delete it on Runs")
    return path


def _spawn(cmd: list[str], log_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log_dir / LOG, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # own session: outlives the UI
    _children[proc.pid] = proc
    return proc


def start_job(name: str, options: dict, corpus_bytes: bytes | None = None,
              root: str | Path | None = None, owner: dict | None = None) -> Path:
    """Start training a new run. corpus_bytes (uploaded or pasted text) is checked and saved into the run
    folder first; otherwise options['corpus'] names a built-in corpus. owner (classroom mode) is written to
    owner.json before the trainer starts, so the run is never seen without its owner. Returns the run folder."""
    root = Path(root or runs.checkpoints_root())
    out = runs.run_path(name, root)
    options = dict(options)
    with _writes_to(out), launch_lock(root):
        busy = busy_message(root)
        if busy:
            raise JobError(busy)
        out = new_run_dir(name, root)
        text = decode_bytes(corpus_bytes, "the uploaded text") if corpus_bytes is not None else None  # CorpusError
        if text is None and not options.get("corpus"):
            raise JobError("choose a corpus: a built-in one, an uploaded .txt file or pasted text")
        with _removed_on_failure(out):
            out.mkdir(parents=True, exist_ok=True)
            if owner:
                runs.atomic_write_json(out / OWNER, owner)
            if text is not None:
                runs.atomic_write_text(out / USER_CORPUS, text)
                options["corpus"] = str(out / USER_CORPUS)
            return _launch(out, train_command(out, options), options.get("max_iters"))


@contextlib.contextmanager
def _writes_to(out: Path):
    """A read-only or full checkpoints folder becomes a JobError with a clear message, not a traceback."""
    try:
        yield
    except OSError as e:
        raise JobError(f"cannot write the run folder {out}: {e.strerror or e}; is the checkpoints folder "
                       "read-only or the disk full?") from e


@contextlib.contextmanager
def _removed_on_failure(*folders: Path):
    """Folders this launch creates are removed again if it fails half-way: no half-made run is left."""
    new = [f for f in folders if not f.exists()]
    try:
        yield
    except BaseException:
        for folder in new:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _launch(out: Path, cmd: list[str], max_iters) -> Path:
    runs.write_status(out, state="starting", pid=None, step=0, max_iters=max_iters or 0, error=None,
                      loss=None, eta_s=None)
    (out / runs.STOP_REQUEST).unlink(missing_ok=True)
    proc = _spawn(cmd, out)
    if runs.read_status(out).get("state") == "starting":  # the trainer may already have taken over
        runs.write_status(out, pid=proc.pid)
    return out


def resume_job(run_dir: str | Path, max_iters: int | None = None) -> Path:
    """Continue a stopped (or orphaned) run from its last checkpoint, exactly."""
    run_dir = Path(run_dir)
    with _writes_to(run_dir), launch_lock(run_dir.parent):
        state = job_state(run_dir)
        if state.live:
            raise JobError(f"{run_dir.name} is already {state.state}")
        if not (run_dir / runs.RESUME).exists():
            raise JobError(f"{run_dir.name} has no checkpoint to resume from (resume.safetensors)")
        busy = busy_message(run_dir.parent)
        if busy:
            raise JobError(busy)
        options = {"resume": True, "max_iters": max_iters}
        return _launch(run_dir, train_command(run_dir, options), max_iters or state.max_iters)


def start_chain(jobs: list[tuple[str, dict]], corpus_bytes: bytes | None = None,
                root: str | Path | None = None) -> list[Path]:
    """Train several runs one after another (the ladder) in one background shell; returns their folders."""
    root = Path(root or runs.checkpoints_root())
    with _writes_to(root), launch_lock(root):
        busy = busy_message(root)
        if busy:
            raise JobError(busy)
        outs = [new_run_dir(name, root) for name, _ in jobs]
        if len(set(outs)) != len(outs):
            raise JobError("the chained runs need distinct names")
        jobs = [(name, dict(opts)) for name, opts in jobs]
        text = decode_bytes(corpus_bytes, "the uploaded text") if corpus_bytes is not None else None
        if text is None and not all(opts.get("corpus") for _, opts in jobs):
            raise JobError("choose a corpus: a built-in one, an uploaded .txt file or pasted text")
        with _removed_on_failure(*outs):
            for out, (_, opts) in zip(outs, jobs):
                out.mkdir(parents=True, exist_ok=True)
                if text is not None:
                    runs.atomic_write_text(out / USER_CORPUS, text)
                    opts["corpus"] = str(out / USER_CORPUS)
            script = " && ".join(f"{shlex.join(train_command(out, opts))} >> {shlex.quote(str(out / LOG))} 2>&1"
                                 for out, (_, opts) in zip(outs, jobs))
            for out, (_, opts) in zip(outs, jobs):
                runs.write_status(out, state="queued", chain_pid=None, pid=None, step=0,
                                  max_iters=opts.get("max_iters") or 0, error=None)
            # the shell's own command line names gpt.train, so pid checks treat it as a trainer process
            proc = _spawn(["/bin/sh", "-c", script], outs[0])
            for out in outs:
                runs.write_status(out, chain_pid=proc.pid)
        return outs


def stop_job(run_dir: str | Path) -> bool:
    """Ask the run's trainer to checkpoint and exit (SIGTERM); a chain stops after it. False if not running."""
    status = runs.read_status(run_dir)
    stopped = False
    chain = status.get("chain_pid")
    if _alive(chain):
        # the chain's shell leads its own process group (start_new_session), which holds the trainer it is
        # running: signal the group, so a trainer that has not written its pid yet is not left orphaned
        try:
            os.killpg(chain, signal.SIGTERM)
        except OSError:
            os.kill(chain, signal.SIGTERM)
        stopped = True
    pid = status.get("pid")
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        stopped = True
    if status.get("state") in ("queued", "starting") and not _alive(pid):
        runs.write_status(run_dir, state="cancelled")
    elif stopped:
        # the trainer writes "stopped" only after its checkpoint (seconds on a big model, longer inside an
        # evaluation): until then every status line says "stopping" instead of an ETA that no longer applies.
        # A file of its own, not a field of status.json: rewriting the trainer's status from here raced with
        # the trainer's own "stopped" and could put "running" back over it (seen as "orphaned").
        runs.atomic_write_text(Path(run_dir) / runs.STOP_REQUEST, str(time.time()))
    return stopped


def wait_until_done(run_dir: str | Path, timeout: float = 120.0, poll: float = 0.2) -> JobState:
    """Block until the job leaves the live states (used by tests and scripts)."""
    deadline = time.monotonic() + timeout
    while True:
        state = job_state(run_dir)
        if not state.live or time.monotonic() > deadline:
            return state
        time.sleep(poll)


# ---- progress ----
def read_metrics(run_dir: str | Path) -> list[dict]:
    return runs.read_jsonl(Path(run_dir) / runs.METRICS)


def latest_sample(run_dir: str | Path) -> dict | None:
    rows = runs.read_jsonl(Path(run_dir) / runs.SAMPLES)
    return rows[-1] if rows else None


def format_eta(seconds) -> str:
    if not isinstance(seconds, (int, float)) or seconds != seconds or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


# ---- deleting ----
def delete_run(name: str, root: str | Path | None = None, protected: tuple[str, ...] = ()) -> None:
    """Remove a run folder (never a live one, never one outside the checkpoints root)."""
    import shutil
    path = runs.run_path(name, root or runs.checkpoints_root())
    if path.name in protected:
        raise JobError(f"{path.name} ships with the app and is not deleted from here")
    if not path.is_dir():
        raise JobError(f"there is no run named {name!r}")
    state = job_state(path)
    if state.live:
        raise JobError(f"{path.name} is {state.state}; stop it before deleting it")
    shutil.rmtree(path)
