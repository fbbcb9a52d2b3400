"""Classroom mode: who may see, stop, resume, overwrite and delete which run, and how much a learner may train.

A teacher starts `gpt-explorer --classroom` (explorer/launch.py); a class opens it in their browsers. Every rule
lives here, as plain functions over files, so tests check them without a browser and the pages only show their
answers. Nothing here imports streamlit; explorer/classroom/session.py knows who is sitting at a browser tab.

Files, all under the checkpoints root, so a server restart keeps everything:
  .classroom/settings.json   the teacher's caps and quotas, and the sha256 of the teacher's token
  .classroom/learners.json   sha256(learner key) -> {"id", "name"}: a learner's name, chosen once
  .classroom/queue.json      training requests waiting for a free slot (explorer/classroom/queue.py)
  <run>/owner.json           {"learner", "name"}: the learner whose run this is. A run without it is the
                             teacher's (the shipped model, runs made before classroom mode, the teacher's own).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from explorer.jobs import training as jobs
from gpt import runs
from gpt.runs.cached import read_json as read_cached_json

ENV = "GPT_EXPLORER_CLASSROOM"      # "1" when `gpt-explorer --classroom` started this server
CLASS_DIR = ".classroom"
SETTINGS = "settings.json"
LEARNERS = "learners.json"
OWNER = jobs.OWNER
MB = 2 ** 20


class Refused(jobs.JobError):
    """A classroom rule said no; the message says why and what to do instead. Nothing was changed."""


@dataclass(frozen=True)
class Settings:
    """The teacher's rules for the class (gpt-explorer --classroom flags; README, "A classroom")."""
    max_steps: int = 2000                 # training steps per run
    max_params: int = 2_000_000           # model size (parameters)
    max_upload_mb: int = 5                # an uploaded or pasted corpus
    learner_quota_mb: int = 200           # disk: one learner's runs and queued requests
    total_quota_mb: int = 4000            # disk: all learners' runs and queued requests together
    share_runs: bool = False              # learners see each other's runs (read-only)
    teacher_token_sha256: str = ""

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"classroom setting {f.name} must be a whole number of at least 1, not {value!r}")

    @classmethod
    def from_dict(cls, data: dict) -> Settings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def enabled() -> bool:
    return os.environ.get(ENV) == "1"


def class_dir(root: str | Path | None = None) -> Path:
    return Path(root or runs.checkpoints_root()) / CLASS_DIR


def save_settings(settings: Settings, root: str | Path | None = None) -> Path:
    path = class_dir(root) / SETTINGS
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_json(path, asdict(settings))
    return path


def load_settings(root: str | Path | None = None) -> Settings:
    """The teacher's settings; the defaults when the file is missing or damaged (the strict side: no sharing,
    no teacher token that anything could match)."""
    try:   # read again only when the file changed (gpt/runs/cached.py): every rerun of every tab asks
        return Settings.from_dict(read_cached_json(class_dir(root) / SETTINGS, {}))
    except (ValueError, TypeError):
        return Settings()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_teacher_token(settings: Settings, token: str) -> bool:
    """Constant-time check of what was typed against the launch token (only its digest is stored)."""
    return bool(settings.teacher_token_sha256 and token) and \
        hmac.compare_digest(token_digest(token), settings.teacher_token_sha256)


# ---- who is acting ----
@dataclass(frozen=True)
class Actor:
    learner_id: str | None      # None for the teacher and for a learner who has not chosen a name yet
    name: str
    teacher: bool = False


TEACHER = Actor(None, "teacher", teacher=True)
NOBODY = Actor(None, "")       # a tab whose learner has not chosen a name: may look, may not change or train


# ---- learners: a name chosen once, kept across reloads by a secret key in the learner's own tab ----
NAME_RE = re.compile(r"^[A-Za-z0-9 ._-]{1,32}$")


def _read_json(path: Path, default):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, type(default)) else default
    except (OSError, ValueError):
        return default


def register_learner(name: str, root: str | Path | None = None) -> tuple[str, Actor]:
    """A new learner: (their secret key, who they are). Names are unique in the class, case ignored."""
    name = " ".join(str(name).split())
    if not NAME_RE.match(name):
        raise Refused("choose a name of 1-32 letters, digits, spaces, '.', '_' or '-'")
    if name.lower() == TEACHER.name:
        raise Refused("'teacher' is taken; choose your own name")
    path = class_dir(root) / LEARNERS
    path.parent.mkdir(parents=True, exist_ok=True)
    with jobs.launch_lock(path.parent.parent):   # two learners choosing the same name at once: one wins
        table = _read_json(path, {})
        if any(entry.get("name", "").lower() == name.lower() for entry in table.values()):
            raise Refused(f"someone in this class is already called {name!r}; add an initial or pick another name "
                          "(if it is you in another tab, open the link of that tab: it carries your key)")
        key, learner = secrets.token_urlsafe(16), Actor(secrets.token_hex(6), name)
        table[token_digest(key)] = {"id": learner.learner_id, "name": name}
        runs.atomic_write_json(path, table)
    return key, learner


def learner_for_key(key: str | None, root: str | Path | None = None) -> Actor | None:
    if not key:
        return None
    entry = read_cached_json(class_dir(root) / LEARNERS, {}).get(token_digest(key))
    return Actor(entry["id"], entry["name"]) if isinstance(entry, dict) and "id" in entry else None


def learner_names(root: str | Path | None = None) -> dict[str, str]:
    """learner id -> name, to say whose a run is."""
    return {e["id"]: e.get("name", "?") for e in read_cached_json(class_dir(root) / LEARNERS, {}).values()
            if isinstance(e, dict) and "id" in e}


# ---- ownership ----
def owner_of(run_dir: str | Path) -> str | None:
    """The learner id that owns a run, or None: the teacher's."""
    return read_cached_json(Path(run_dir) / OWNER, {}).get("learner")


def owner_record(actor: Actor) -> dict | None:
    """What owner.json holds for a run this actor creates (None for the teacher: no file, the teacher's run)."""
    return {"learner": actor.learner_id, "name": actor.name} if actor.learner_id else None


def may_see(actor: Actor, owner: str | None, settings: Settings) -> bool:
    """The teacher's runs are everyone's to look at; a learner's are theirs (and everyone's if sharing is on)."""
    return actor.teacher or owner is None or owner == actor.learner_id or settings.share_runs


def may_change(actor: Actor, owner: str | None) -> bool:
    """Delete, stop, resume, overwrite: the teacher any run, a learner only their own."""
    return actor.teacher or (owner is not None and owner == actor.learner_id)


def whose(owner: str | None, root: str | Path | None = None) -> str:
    return "the teacher's" if owner is None else f"{learner_names(root).get(owner, 'another learner')}'s"


def check_change(actor: Actor, run_dir: str | Path, verb: str) -> None:
    """Raise Refused unless actor may `verb` (delete, stop, resume, overwrite) this run."""
    owner = owner_of(run_dir)
    if may_change(actor, owner):
        return
    raise Refused(f"You cannot {verb} {Path(run_dir).name}: it is {whose(owner, Path(run_dir).parent)} run, so "
                  f"nothing was changed. You can {verb} your own runs (the Runs page lists them), or train your "
                  "own copy with Retrain selected on the Train page.")


def visible_runs(actor: Actor, infos: list, settings: Settings) -> list:
    """The RunInfos (anything with .path) this actor may see, in the same order."""
    return [info for info in infos if may_see(actor, owner_of(info.path), settings)]


def own_runs(actor: Actor, infos: list) -> list:
    """The ones this actor may change (the teacher: all of them)."""
    return [info for info in infos if may_change(actor, owner_of(info.path))]


# ---- actions: the check, then the ordinary job machinery (jobs.py) ----
def delete_run(actor: Actor, name: str, root: str | Path | None = None, protected: tuple[str, ...] = ()) -> None:
    path = runs.run_path(name, root or runs.checkpoints_root())
    if path.is_dir():
        check_change(actor, path, "delete")
    jobs.delete_run(name, root, protected=protected)


def stop_job(actor: Actor, run_dir: str | Path) -> bool:
    check_change(actor, run_dir, "stop")
    return jobs.stop_job(run_dir)


def resume_job(actor: Actor, run_dir: str | Path, settings: Settings) -> Path:
    """Resume one's own run: also one job per learner, and the teacher's step cap."""
    run_dir = Path(run_dir)
    check_change(actor, run_dir, "resume")
    if not actor.teacher:
        busy = learner_job(actor, run_dir.parent)
        if busy:
            raise Refused(f"You already have a training job ({busy}); one job per learner at a time. Wait for it "
                          "to finish or stop it first.")
        max_iters = jobs.job_state(run_dir).max_iters
        if max_iters > settings.max_steps:
            raise Refused(f"{run_dir.name} is set to {max_iters:,} steps and the teacher allows "
                          f"{settings.max_steps:,}; train a new run with fewer steps instead.")
    return jobs.resume_job(run_dir)


def learner_job(actor: Actor, root: str | Path | None = None) -> str | None:
    """The name of this learner's live job (queued, starting or running), or None."""
    root = Path(root or runs.checkpoints_root())
    for name, _state in jobs.live_jobs(root):
        if actor.learner_id and owner_of(root / name) == actor.learner_id:
            return name
    return None


# ---- disk quotas ----
def folder_bytes(path: str | Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass   # a temporary file renamed away while we counted
    return total


def disk_usage(root: str | Path | None = None) -> dict[str, int]:
    """Bytes on disk of learners' run folders, per learner id (the teacher's runs count against no quota)."""
    root = Path(root or runs.checkpoints_root())
    used: dict[str, int] = {}
    for folder in root.iterdir() if root.is_dir() else ():
        owner = owner_of(folder) if folder.is_dir() else None
        if owner:
            used[owner] = used.get(owner, 0) + folder_bytes(folder)
    return used


def estimate_run_bytes(params: int, max_iters: int, eval_interval: int, corpus_bytes: int = 0) -> int:
    """Disk a finished run takes: fp32 weights, the resume file (weights + two AdamW moments), a bf16 snapshot
    at every evaluation (what the trainer keeps for the time machine), its corpus copy, and ~256 KB of logs."""
    n_snapshots = max_iters // max(1, eval_interval) + 1
    return 4 * params * (1 + 3) + 2 * params * n_snapshots + corpus_bytes + 256 * 1024


def quota_problem(settings: Settings, usage: dict[str, int], learner_id: str, needed: int) -> str | None:
    """Why a run of `needed` bytes does not fit this learner's or the class's disk quota, with what to do."""
    mine, everyone = usage.get(learner_id, 0), sum(usage.values())
    if mine + needed > settings.learner_quota_mb * MB:
        return (f"Disk quota: your runs use {mine / MB:.1f} MB of your {settings.learner_quota_mb} MB and this one "
                f"needs about {needed / MB:.1f} MB. Delete one of your runs on the Runs page, or train fewer steps "
                "or a smaller model.")
    if everyone + needed > settings.total_quota_mb * MB:
        return (f"The class's disk quota is full: learners' runs use {everyone / MB:.0f} MB of "
                f"{settings.total_quota_mb} MB. Delete a run of yours you no longer need, or ask the teacher to "
                "clear space.")
    return None


# ---- the teacher's caps on a training request ----
def request_problems(settings: Settings, params: int, max_iters: int, corpus_bytes: int = 0) -> list[str]:
    """What in a learner's training request goes past the teacher's caps, each with the way back under them."""
    found = []
    if max_iters > settings.max_steps:
        found.append(f"the teacher allows at most {settings.max_steps:,} training steps per run; set "
                     f"Max iterations to {settings.max_steps:,} or fewer")
    if params > settings.max_params:
        found.append(f"this model has {params:,} parameters and the teacher allows {settings.max_params:,}; "
                     "use fewer layers, a narrower embedding or a smaller vocabulary")
    if corpus_bytes > settings.max_upload_mb * MB:
        found.append(f"the text is {corpus_bytes / MB:.1f} MB and the teacher allows {settings.max_upload_mb} MB; "
                     "use a shorter excerpt or a built-in corpus")
    return found
