"""Classroom mode's rules (explorer/classroom/policy.py), its queue (explorer/classroom/queue.py) and the launcher's flags:
each permission rule refuses with a message and changes nothing; the queue keeps its order, its limit, its
one-job-per-learner rule and its quotas, and survives a restart (it is a file)."""
from __future__ import annotations

import json
import time

import pytest
from run_support import fake_trainer_process

from explorer import launch
from explorer.classroom import policy as classroom
from explorer.classroom import queue as class_queue
from explorer.classroom.policy import TEACHER, Actor, Refused, Settings
from explorer.jobs import training as jobs
from gpt import runs


@pytest.fixture
def fake_trainers():
    """make(run_dir, owner=None): a run folder whose status names a live process that looks like a trainer
    (its command line says gpt.train), so the job limit counts it; all killed afterwards."""
    procs = []

    def make(run_dir, owner: Actor | None = None, eta_s=30.0):
        proc = fake_trainer_process()
        procs.append(proc)
        run_dir.mkdir(parents=True, exist_ok=True)
        if owner is not None and owner.learner_id:
            runs.atomic_write_json(run_dir / classroom.OWNER, classroom.owner_record(owner))
        runs.write_status(run_dir, state="running", pid=proc.pid, step=1, max_iters=100, eta_s=eta_s)
        return run_dir

    yield make
    for proc in procs:
        proc.kill()
        proc.wait()


def make_run(empty_root, name, owner: Actor | None = None):
    """A finished (not live) run folder, owned by `owner` (None: the teacher's)."""
    path = empty_root / name
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"x" * 1000)
    runs.write_status(path, state="finished", pid=None, step=10, max_iters=10)
    if owner is not None:
        runs.atomic_write_json(path / classroom.OWNER, classroom.owner_record(owner))
    return path


# ---- settings, the teacher's token, learners ----
def test_settings_round_trip_and_bad_values(empty_root):
    settings = Settings(max_steps=300, share_runs=True, teacher_token_sha256=classroom.token_digest("s3cret"))
    classroom.save_settings(settings, empty_root)
    assert classroom.load_settings(empty_root) == settings
    with pytest.raises(ValueError, match="max_params"):
        Settings(max_params=0)
    (empty_root / ".classroom" / "settings.json").write_text("{not json")
    assert classroom.load_settings(empty_root) == Settings()   # damaged: the strict defaults, no sharing


def test_teacher_token_is_checked_against_its_digest_only(empty_root):
    settings = Settings(teacher_token_sha256=classroom.token_digest("s3cret"))
    assert classroom.is_teacher_token(settings, "s3cret")
    assert not classroom.is_teacher_token(settings, "s3cre")
    assert not classroom.is_teacher_token(settings, "")
    assert not classroom.is_teacher_token(Settings(), "")   # no token set: nothing matches
    classroom.save_settings(settings, empty_root)
    assert "s3cret" not in (empty_root / ".classroom" / "settings.json").read_text()


def test_learner_names_are_chosen_once_and_unique(empty_root):
    key, ada = classroom.register_learner("  Ada   L ", empty_root)
    assert ada.name == "Ada L" and ada.learner_id
    assert classroom.learner_for_key(key, empty_root) == ada
    assert classroom.learner_for_key("guess", empty_root) is None
    with pytest.raises(Refused, match="already called"):
        classroom.register_learner("ada l", empty_root)
    for bad in ("", "x" * 33, "<script>", "teacher"):
        with pytest.raises(Refused):
            classroom.register_learner(bad, empty_root)
    assert list(classroom.learner_names(empty_root).values()) == ["Ada L"]
    assert key not in (empty_root / ".classroom" / "learners.json").read_text()   # only its digest is stored


# ---- who may see and change what ----
def test_see_and_change_rules():
    ada, bob = Actor("a1", "Ada"), Actor("b2", "Bob")
    closed, shared = Settings(), Settings(share_runs=True)
    # the teacher's runs (no owner): everyone sees them, only the teacher changes them
    assert classroom.may_see(ada, None, closed) and classroom.may_see(classroom.NOBODY, None, closed)
    assert not classroom.may_change(ada, None) and classroom.may_change(TEACHER, None)
    # a learner's run: theirs to see and change; others see it only when sharing is on, and never change it
    assert classroom.may_see(ada, "a1", closed) and classroom.may_change(ada, "a1")
    assert not classroom.may_see(bob, "a1", closed) and classroom.may_see(bob, "a1", shared)
    assert not classroom.may_change(bob, "a1")
    assert classroom.may_see(TEACHER, "a1", closed) and classroom.may_change(TEACHER, "a1")
    assert not classroom.may_change(classroom.NOBODY, None) and not classroom.may_change(classroom.NOBODY, "a1")


def test_visible_and_own_runs(empty_root):
    ada, bob = Actor("a1", "Ada"), Actor("b2", "Bob")
    teacher_run, adas, bobs = make_run(empty_root, "t"), make_run(empty_root, "a", ada), make_run(empty_root, "b", bob)

    class Info:
        def __init__(self, path):
            self.path = path
    infos = [Info(teacher_run), Info(adas), Info(bobs)]
    names = lambda found: [i.path.name for i in found]  # noqa: E731
    assert names(classroom.visible_runs(ada, infos, Settings())) == ["t", "a"]
    assert names(classroom.visible_runs(ada, infos, Settings(share_runs=True))) == ["t", "a", "b"]
    assert names(classroom.own_runs(ada, infos)) == ["a"]
    assert names(classroom.own_runs(TEACHER, infos)) == ["t", "a", "b"]


def test_deleting_what_is_not_yours_is_refused_and_changes_nothing(empty_root):
    key, ada = classroom.register_learner("Ada", empty_root)
    _, bob = classroom.register_learner("Bob", empty_root)
    adas, teachers = make_run(empty_root, "adas", ada), make_run(empty_root, "teachers")
    before = sorted(p.name for p in adas.rglob("*"))
    with pytest.raises(Refused, match="it is Ada's run"):
        classroom.delete_run(bob, "adas", empty_root)
    with pytest.raises(Refused, match="the teacher's run"):
        classroom.delete_run(ada, "teachers", empty_root)
    with pytest.raises(Refused):
        classroom.delete_run(classroom.NOBODY, "adas", empty_root)
    assert sorted(p.name for p in adas.rglob("*")) == before and teachers.is_dir()
    classroom.delete_run(ada, "adas", empty_root)          # her own
    assert not adas.exists()
    bobs = make_run(empty_root, "bobs", bob)
    classroom.delete_run(TEACHER, "bobs", empty_root)      # the teacher: any learner's run
    assert not bobs.exists()
    shipped = make_run(empty_root, "shakespeare-char")
    with pytest.raises(jobs.JobError, match="ships with the app"):
        classroom.delete_run(TEACHER, "shakespeare-char", empty_root, protected=("shakespeare-char",))
    assert shipped.is_dir()


def test_stopping_or_resuming_what_is_not_yours_is_refused(empty_root, fake_trainers):
    ada, bob = Actor("a1", "Ada"), Actor("b2", "Bob")
    adas = fake_trainers(empty_root / "adas", owner=ada)
    teachers = fake_trainers(empty_root / "teachers")
    for actor, run in ((bob, adas), (ada, teachers), (classroom.NOBODY, adas)):
        with pytest.raises(Refused, match="nothing was changed"):
            classroom.stop_job(actor, run)
        assert not (run / runs.STOP_REQUEST).exists() and jobs.job_state(run).state == "running"
    with pytest.raises(Refused, match="resume"):
        classroom.resume_job(bob, make_run(empty_root, "adas-old", ada), Settings())
    assert classroom.stop_job(ada, adas)             # her own: the trainer is asked to stop
    assert (adas / runs.STOP_REQUEST).exists()
    assert classroom.stop_job(TEACHER, teachers)


def test_resume_keeps_one_job_per_learner_and_the_step_cap(empty_root, fake_trainers):
    ada = Actor("a1", "Ada")
    fake_trainers(empty_root / "adas-live", owner=ada)
    stopped = make_run(empty_root, "adas-stopped", ada)
    (stopped / runs.RESUME).write_bytes(b"x")
    runs.write_status(stopped, state="stopped", max_iters=5000)
    with pytest.raises(Refused, match="one job per learner"):
        classroom.resume_job(ada, stopped, Settings())
    assert classroom.learner_job(ada, empty_root) == "adas-live"


# ---- caps and quotas ----
def test_request_caps_name_the_limit_and_the_way_back():
    settings = Settings(max_steps=500, max_params=100_000, max_upload_mb=1)
    assert classroom.request_problems(settings, 50_000, 500, 1000) == []
    found = classroom.request_problems(settings, 200_000, 501, 2 * classroom.MB)
    assert len(found) == 3
    assert "500 or fewer" in found[0] and "fewer layers" in found[1] and "built-in corpus" in found[2]


def test_disk_quota_per_learner_and_in_total(empty_root):
    ada, bob = Actor("a1", "Ada"), Actor("b2", "Bob")
    make_run(empty_root, "a", ada)
    make_run(empty_root, "b", bob)
    make_run(empty_root, "t")                               # the teacher's: counts against no quota
    usage = classroom.disk_usage(empty_root)
    assert set(usage) == {"a1", "b2"} and usage["a1"] > 1000
    settings = Settings(learner_quota_mb=1, total_quota_mb=2)
    assert classroom.quota_problem(settings, usage, "a1", 1000) is None
    mine = classroom.quota_problem(settings, usage, "a1", classroom.MB)
    assert "your 1 MB" in mine and "Delete one of your runs" in mine
    total = classroom.quota_problem(settings, {"a1": 0, "x": int(1.9 * classroom.MB)}, "a1", 200_000)
    assert "class's disk quota" in total and "ask the teacher" in total
    # a bigger run is estimated bigger; snapshots at every evaluation count
    assert classroom.estimate_run_bytes(10_000, 1000, 100) > classroom.estimate_run_bytes(10_000, 1000, 500)


# ---- the queue ----
def fake_start(fake_trainers):
    started = []

    def start(entry, empty_root):
        owner = Actor(entry["learner"], entry["name"]) if entry.get("learner") else None
        fake_trainers(empty_root / entry["run"], owner=owner)
        started.append(entry["run"])
    return start, started


OPTS = {"corpus": "tiny-shakespeare", "max_iters": 100, "eval_interval": 50}


def test_expected_starts():
    # two slots, one free: the first request starts now, the second when the running job ends (30 s)
    assert class_queue.expected_starts([30.0], [60.0, 10.0, 5.0], 2) == [0.0, 30.0, 40.0]
    # one slot: each waits for the one before it
    assert class_queue.expected_starts([30.0], [60.0, 10.0], 1) == [30.0, 90.0]
    # an unknown duration makes every later start unknown in that slot
    assert class_queue.expected_starts([None], [10.0], 1) == [None]
    assert class_queue.expected_starts([20.0], [None, 5.0], 1) == [20.0, None]
    # more jobs running than the (lowered) limit: a slot opens when enough of them have ended
    assert class_queue.expected_starts([10.0, 20.0, 30.0], [5.0], 2) == [20.0]


def test_queue_order_limit_and_places(empty_root, fake_trainers, monkeypatch):
    start, started = fake_start(fake_trainers)
    monkeypatch.setattr(class_queue, "_start", start)
    ada, bob, cy = Actor("a1", "Ada"), Actor("b2", "Bob"), Actor("c3", "Cy")
    settings = Settings()
    class_queue.enqueue(ada, settings, "ada-1", OPTS, params=1000, expected_s=60, spawn_runner=False)
    assert started == ["ada-1"]                       # a free slot: it starts at once, with its owner
    assert classroom.owner_of(empty_root / "ada-1") == "a1"
    class_queue.enqueue(bob, settings, "bob-1", OPTS, params=1000, expected_s=40, spawn_runner=False)
    class_queue.enqueue(cy, settings, "cy-1", OPTS, params=1000, expected_s=40, spawn_runner=False)
    assert started == ["ada-1"]                       # the limit is 1: the others wait, in order
    places = class_queue.standing(empty_root)
    assert [(e["run"], place) for e, place, _ in places] == [("bob-1", 1), ("cy-1", 2)]
    assert [start_s for *_, start_s in places] == [30.0, 70.0]   # ada's ETA is 30 s, bob's run 40 s
    assert "2nd in the queue" in class_queue.describe(2, 70.0)
    jobs.stop_job(empty_root / "ada-1")                     # the fake trainer is not a real one: kill it
    runs.write_status(empty_root / "ada-1", state="finished", pid=None)
    assert class_queue.advance(empty_root, start=start) == ["bob-1"]
    assert [e["run"] for e in class_queue.waiting(empty_root)] == ["cy-1"]


def test_queue_refusals_change_nothing(empty_root, fake_trainers, monkeypatch):
    start, started = fake_start(fake_trainers)
    monkeypatch.setattr(class_queue, "_start", start)
    ada, bob = Actor("a1", "Ada"), Actor("b2", "Bob")
    fake_trainers(empty_root / "teachers")                  # the only slot is taken
    settings = Settings(max_steps=100, max_params=5000, learner_quota_mb=1)
    with pytest.raises(Refused, match="name in the sidebar"):
        class_queue.enqueue(classroom.NOBODY, settings, "x", OPTS, params=1000, spawn_runner=False)
    with pytest.raises(Refused, match="at most 100 training steps"):
        class_queue.enqueue(ada, settings, "x", {**OPTS, "max_iters": 101}, params=1000, spawn_runner=False)
    with pytest.raises(Refused, match="teacher allows 5,000"):
        class_queue.enqueue(ada, settings, "x", OPTS, params=6000, spawn_runner=False)
    with pytest.raises(Refused, match="teacher allows 1 MB"):
        class_queue.enqueue(ada, Settings(max_upload_mb=1), "x", OPTS, params=1000,
                            corpus_bytes=b"a" * (classroom.MB + 1), spawn_runner=False)
    with pytest.raises(Refused, match="Disk quota"):
        class_queue.enqueue(ada, settings, "x", OPTS, params=5000, corpus_bytes=b"a" * 900_000, spawn_runner=False)
    with pytest.raises(Refused, match="already exists"):
        class_queue.enqueue(ada, settings, "teachers", OPTS, params=1000, spawn_runner=False)
    assert class_queue.read_queue(empty_root) == []
    class_queue.enqueue(ada, settings, "ada-1", OPTS, params=1000, corpus_bytes=b"hello " * 100,
                        spawn_runner=False)
    with pytest.raises(Refused, match="One job per learner"):
        class_queue.enqueue(ada, settings, "ada-2", OPTS, params=1000, spawn_runner=False)
    with pytest.raises(Refused, match="already exists or is queued"):
        class_queue.enqueue(bob, settings, "ada-1", OPTS, params=1000, spawn_runner=False)
    entry = class_queue.waiting(empty_root)[0]
    with pytest.raises(Refused, match="Ada's request"):
        class_queue.cancel(bob, entry["id"], empty_root)
    assert [e["run"] for e in class_queue.waiting(empty_root)] == ["ada-1"] and started == []
    corpus_file = entry["corpus_file"]
    class_queue.cancel(ada, entry["id"], empty_root)
    assert class_queue.read_queue(empty_root) == [] and not (empty_root / ".classroom" / "queue" / corpus_file).exists()


def test_queued_requests_survive_a_restart_and_start_with_their_corpus(empty_root, fake_trainers, monkeypatch):
    fake_trainers(empty_root / "teachers")
    ada = Actor("a1", "Ada")
    class_queue.enqueue(ada, Settings(), "ada-1", OPTS, params=1000, corpus_bytes=b"to be or not " * 50,
                        spawn_runner=False)
    # a new server process reads the same file: the request is still there, in its place
    on_disk = json.loads((empty_root / ".classroom" / "queue.json").read_text())
    assert [e["run"] for e in on_disk] == ["ada-1"] and on_disk[0]["learner"] == "a1"
    jobs.stop_job(empty_root / "teachers")
    runs.write_status(empty_root / "teachers", state="finished", pid=None)
    seen = {}

    def start(entry, empty_root):
        seen["corpus"] = open(entry["corpus_file"], "rb").read()
        fake_trainers(empty_root / entry["run"], owner=ada)
    assert class_queue.advance(empty_root, start=start) == ["ada-1"]
    assert seen["corpus"] == b"to be or not " * 50 and not list((empty_root / ".classroom" / "queue").iterdir())


def test_a_request_that_cannot_start_stays_with_its_error(empty_root, monkeypatch):
    ada = Actor("a1", "Ada")

    def failing(entry, empty_root):
        raise jobs.JobError("choose a corpus")
    monkeypatch.setattr(class_queue, "_start", failing)
    class_queue.enqueue(ada, Settings(), "ada-1", OPTS, params=1000, spawn_runner=False)
    [entry] = class_queue.read_queue(empty_root)
    assert entry["error"] == "choose a corpus" and class_queue.waiting(empty_root) == []
    # a failed request no longer holds the learner's one job: she can fix it and ask again
    class_queue.enqueue(ada, Settings(), "ada-2", OPTS, params=1000, spawn_runner=False)


# ---- the launcher ----
def test_classroom_flags_and_binding():
    settings, allow, max_jobs, rest = launch.parse_classroom(
        ["--classroom", "--max-steps", "300", "--share-runs", "--max-jobs=2", "--server.port", "8600"])
    assert settings == {"max_steps": 300, "share_runs": True} and not allow and max_jobs == 2
    assert rest == ["--server.port", "8600"]
    with pytest.raises(launch.LaunchError, match="--max-steps"):
        launch.parse_classroom(["--classroom", "--max-steps", "lots"])
    flags = launch.classroom_server_flags(rest, False, 5)
    assert flags[flags.index("--server.enableXsrfProtection") + 1] == "true"
    assert flags[flags.index("--server.maxUploadSize") + 1] == "5"
    with pytest.raises(launch.LaunchError, match="--allow-network"):
        launch.classroom_server_flags(["--server.address=0.0.0.0"], False, 5)
    assert "--server.address=0.0.0.0" in launch.classroom_server_flags(["--server.address=0.0.0.0"], True, 5)
    with pytest.raises(launch.LaunchError, match="XsrfProtection"):
        launch.classroom_server_flags(["--server.enableXsrfProtection", "false"], True, 5)


def test_launch_prints_the_token_and_stores_only_its_digest(empty_root, monkeypatch, capsys):
    monkeypatch.setenv(classroom.ENV, "0")   # recorded as unset, so the teardown unsets what the launch sets
    monkeypatch.setenv("GPT_EXPLORER_MAX_JOBS", "1")
    flags = launch.start_classroom(["--classroom", "--max-params", "50000", "--max-jobs", "3"])
    out = capsys.readouterr().out
    token = next(line.split(": ", 1)[1] for line in out.splitlines() if "Teacher token" in line)
    settings = classroom.load_settings(empty_root)
    assert settings.max_params == 50000 and classroom.is_teacher_token(settings, token)
    assert classroom.enabled() and "--server.maxUploadSize" in flags and "WARNING" not in out
    assert jobs.max_concurrent_jobs() == 3


def test_the_environment_is_back_to_normal_after_the_launch_test():
    assert not classroom.enabled()   # the launch test must not leave classroom mode on for later modules


TINY = dict(arch="gpt", n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, eval_iters=2,
            sample_tokens=10, dtype="float32", log_interval=5, threads=1, max_iters=30, eval_interval=15)


@pytest.mark.slow
def test_the_runner_starts_waiting_requests_as_slots_free_up(empty_root, corpus_file):
    """Real trainers and the real runner process: with one slot, Bob's request waits for Ada's run, then
    starts by itself, owned by Bob; the runner exits once the queue is empty."""
    ada, bob = Actor("a1", "Ada"), Actor("b2", "Bob")
    options = {**TINY, "corpus": str(corpus_file)}
    class_queue.enqueue(ada, Settings(), "ada-1", options, params=5000)
    assert classroom.owner_of(empty_root / "ada-1") == "a1"            # a free slot: started at once
    class_queue.enqueue(bob, Settings(), "bob-1", options, params=5000, corpus_bytes=b"to be or not to be " * 300)
    assert [e["run"] for e in class_queue.waiting(empty_root)] == ["bob-1"] and not (empty_root / "bob-1").exists()
    deadline = time.monotonic() + 180
    while not (empty_root / "bob-1" / runs.STATUS).exists():
        assert time.monotonic() < deadline, jobs.log_tail(empty_root / "ada-1")
        time.sleep(0.5)
    assert jobs.job_state(empty_root / "ada-1").state == "finished"    # never two at once: it waited for Ada's
    assert classroom.owner_of(empty_root / "bob-1") == "b2" and class_queue.read_queue(empty_root) == []
    assert jobs.wait_until_done(empty_root / "bob-1", timeout=180).state == "finished", jobs.log_tail(empty_root / "bob-1")
    deadline = time.monotonic() + 30
    while class_queue.runner_alive(empty_root):
        assert time.monotonic() < deadline, "the runner did not exit once the queue was empty"
        time.sleep(0.5)


@pytest.mark.slow
def test_after_a_restart_the_queue_resumes_where_it_was(empty_root, corpus_file, fake_trainers):
    """The server died with a request waiting and no runner: the file still holds it, and the runner the new
    server starts (class_session does this once per process) starts it when the slot frees up."""
    teachers = fake_trainers(empty_root / "teachers")
    class_queue.enqueue(Actor("a1", "Ada"), Settings(), "ada-1", {**TINY, "corpus": str(corpus_file)}, params=5000,
                        spawn_runner=False)
    assert not class_queue.runner_alive(empty_root) and [e["run"] for e in class_queue.waiting(empty_root)] == ["ada-1"]
    class_queue.ensure_runner(empty_root)                              # the restarted server
    time.sleep(2)
    assert not (empty_root / "ada-1").exists()                         # the teacher's job still holds the only slot
    jobs.stop_job(teachers)
    deadline = time.monotonic() + 60
    while not (empty_root / "ada-1").exists():
        assert time.monotonic() < deadline, (empty_root / ".classroom" / "runner.log").read_text()
        time.sleep(0.3)
    assert classroom.owner_of(empty_root / "ada-1") == "a1"
    assert jobs.wait_until_done(empty_root / "ada-1", timeout=180).state == "finished"


def test_launch_on_the_network_prints_the_address_and_a_warning(empty_root, monkeypatch, capsys):
    monkeypatch.setenv(classroom.ENV, "0")
    with pytest.raises(launch.LaunchError, match="--allow-network"):
        launch.start_classroom(["--classroom", "--server.address", "0.0.0.0"])
    assert "Teacher token" not in capsys.readouterr().out      # refused before anything is printed or written
    flags = launch.start_classroom(["--classroom", "--allow-network", "--server.address", "0.0.0.0",
                                    "--server.port", "8601"])
    out = capsys.readouterr().out
    host = flags[flags.index("--browser.serverAddress") + 1]
    assert f"Learners open: http://{host}:8601" in out and "WARNING: listening on 0.0.0.0" in out
