"""The app under faults: a crashed trainer's error shows in the UI and the app keeps working; after a server
restart the app re-attaches to a running trainer (or shows it orphaned) and never starts a second trainer on
the same folder; concurrent jobs are capped with a clear "busy" message."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import TINY_TRAIN, open_page, run_cli

from explorer.jobs import training as jobs
from gpt import runs
from gpt.runs import load_run

pytestmark = pytest.mark.usefixtures("fresh_caches")  # Streamlit caches cleared per test

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
ENDLESS = {"arch": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 8,
           "max_iters": 1_000_000, "eval_interval": 50, "eval_iters": 2, "sample_tokens": 0, "dtype": "float32",
           "threads": 1}


@pytest.fixture
def limits_root(empty_root, monkeypatch):
    """empty_root with the job limit the app ships with (GPT_EXPLORER_MAX_JOBS unset) on a 2-core machine."""
    monkeypatch.delenv("GPT_EXPLORER_MAX_JOBS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # the machine class we ship for: one job at a time
    return empty_root


def wait_state(run_dir: Path, wanted: str, timeout: float = 240) -> jobs.JobState:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = jobs.job_state(run_dir)
        if state.state == wanted and (wanted != "running" or (run_dir / runs.RESUME).exists()):
            return state
        if state.state in ("failed",) and wanted != "failed":
            raise AssertionError(f"job failed: {state.error}\n{jobs.log_tail(run_dir)}")
        time.sleep(0.1)
    raise AssertionError(f"{run_dir.name} never reached {wanted}: {jobs.job_state(run_dir)}")


@pytest.mark.slow
def test_restart_reattaches_and_never_duplicates(limits_root, corpus_file, monkeypatch):
    assert jobs.max_concurrent_jobs() == 1
    out = jobs.start_job("busy-run", {**ENDLESS, "corpus": str(corpus_file)}, root=limits_root)
    first = wait_state(out, "running")
    pid = runs.read_status(out)["pid"]
    try:
        jobs._children.clear()  # a restarted server: no process handles, only the run folders
        assert jobs.job_state(out).state == "running" and jobs.live_jobs(limits_root)[0][0] == "busy-run"
        monkeypatch.setenv("GPT_EXPLORER_MAX_JOBS", "4")  # even with room for more jobs ...
        with pytest.raises(jobs.JobError, match="already exists"):  # ... never a second one on this folder
            jobs.start_job("busy-run", {**ENDLESS, "corpus": str(corpus_file)}, root=limits_root)
        monkeypatch.delenv("GPT_EXPLORER_MAX_JOBS")
        with pytest.raises(jobs.JobError, match="already running"):
            jobs.resume_job(out)
        with pytest.raises(jobs.JobError, match="Busy: 1 training job"):
            jobs.start_job("second", {**ENDLESS, "corpus": str(corpus_file)}, root=limits_root)
        assert not (limits_root / "second").exists()
        # a trainer started by hand on the same folder is refused by the folder's lock
        proc = run_cli("-m", "gpt.train", "--out", str(out), "--resume", "--quiet", check=False)
        assert proc.returncode == 2 and "being trained by another process" in proc.stderr
        assert runs.read_status(out)["pid"] == pid and jobs.job_state(out).state == "running"

        os.kill(pid, signal.SIGKILL)  # the trainer dies without a word
        deadline = time.time() + 30
        while runs.pid_is_trainer(pid) and time.time() < deadline:
            time.sleep(0.1)
        orphan = jobs.job_state(out)
        assert orphan.state == "orphaned" and "Resume" in orphan.error
        assert load_run(out).step >= 0  # its last checkpoint is still there to inspect
        assert jobs.busy_message(limits_root) is None
        jobs.resume_job(out)
        resumed = wait_state(out, "running")
        assert runs.read_status(out)["pid"] != pid and resumed.step >= first.step
    finally:
        jobs.stop_job(out)
        jobs.wait_until_done(out, timeout=120)
    assert jobs.job_state(out).state == "stopped"


def test_max_jobs_setting(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("GPT_EXPLORER_MAX_JOBS", raising=False)
    assert jobs.max_concurrent_jobs() == 4
    monkeypatch.setenv("GPT_EXPLORER_MAX_JOBS", "2")
    assert jobs.max_concurrent_jobs() == 2
    for junk in ("0", "-1", "many"):
        monkeypatch.setenv("GPT_EXPLORER_MAX_JOBS", junk)
        assert jobs.max_concurrent_jobs() == 4


def test_a_bad_upload_starts_nothing(limits_root):
    for data, message in ((b"", "empty"), (b"\x00\x01binary", "binary"), (b"\xff\xfe text", "UTF-8")):
        with pytest.raises(Exception, match=message):
            jobs.start_job("upload", dict(ENDLESS), corpus_bytes=data, root=limits_root)
        assert not (limits_root / "upload").exists()


# ---- the UI ----
@pytest.fixture
def crashed_root(limits_root, corpus_file):
    """A run whose trainer failed after its first checkpoint (as a MemoryError would leave it)."""
    out = limits_root / "crashed"
    run_cli("-m", "gpt.train", "--corpus", str(corpus_file), "--out", str(out), *TINY_TRAIN, "--max-iters", "10",
            "--eval-interval", "10")
    runs.write_status(out, state="failed", error="MemoryError: simulated: cannot allocate 3 GB <b>x</b>",
                      pid=None)
    (out / jobs.LOG).write_text("Traceback (most recent call last):\nMemoryError: simulated\n")
    return limits_root


def all_text(at) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [w.value for w in at.warning]
    parts += [c.value for c in at.caption] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


@pytest.mark.slow
def test_crash_text_shows_in_the_ui_and_the_app_keeps_working(crashed_root):
    at = open_page("train", "crashed", state={"train_watch": "crashed"})
    errors = [e.value for e in at.error]
    assert any("Training failed: MemoryError: simulated: cannot allocate 3 GB" in e for e in errors), errors
    for page in ("generate", "tokenizer", "runs"):  # the failed run is still inspectable everywhere
        at.switch_page(f"views/{page}.py")
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert "Cannot load" not in all_text(at)


def test_read_only_checkpoints_folder_gets_a_message_not_a_traceback(limits_root, corpus_file):
    if os.geteuid() == 0:
        import subprocess
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(limits_root)],
                          capture_output=True).returncode:
            pytest.skip("running as root without mount: cannot make a read-only folder")
    else:
        limits_root.chmod(0o555)
    try:
        with pytest.raises(jobs.JobError, match="cannot write"):
            jobs.start_job("ro-run", {**ENDLESS, "corpus": str(corpus_file)}, root=limits_root)
        with pytest.raises(jobs.JobError, match="cannot write"):
            jobs.start_job("ro-upload", dict(ENDLESS), corpus_bytes=b"some text " * 100, root=limits_root)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(limits_root)], capture_output=True)
        else:
            limits_root.chmod(0o755)
