"""Faults: kill -9 at random moments (some inside checkpoint writes), crashes in the loop, disk full, read-only
folders. After every fault the run folder loads, --resume continues from the last complete checkpoint,
metrics.jsonl reads cleanly and no temporary file survives the next save."""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY_TRAIN, run_cli
from safetensors import safe_open

from gpt import runs
from gpt.config import GPTConfig, TrainConfig
from gpt.runs import RunError, atomic, load_run
from gpt.train import main
from gpt.training.trainer import Trainer

TRIAL_ARGS = (*TINY_TRAIN, "--max-iters", "120", "--eval-interval", "10", "--threads", "1", "--seed", "3")
# kill moments: inside the very first save (no complete checkpoint yet), inside each kind of weights write
# (held open by the GPT_EXPLORER_TEST_SAVE_PAUSE hook), and at random times while training
PLAN = ["first-save", "random", "resume-write", "random", "model-write", "random", "snapshot-write", "random",
        "resume-write", "random"]
TMP_PATTERN = {"first-save": "snapshots/.tmp-step_*", "resume-write": ".tmp-resume.safetensors.*",
               "model-write": ".tmp-model.safetensors.*", "snapshot-write": "snapshots/.tmp-step_*"}


def file_step(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return int(f.metadata()["step"])


def temp_files(out: Path) -> list[Path]:
    return list(out.glob(".tmp-*")) + list(out.glob("snapshots/.tmp-*"))


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the trainer")
        time.sleep(0.02)


def start_trainer(args: list[str], pause: float | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GPT_EXPLORER_TEST_SAVE_PAUSE", None)
    if pause:
        env["GPT_EXPLORER_TEST_SAVE_PAUSE"] = str(pause)
    return subprocess.Popen([sys.executable, "-m", "gpt.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def check_killed_run(out: Path) -> None:
    """What a user (or the UI) sees right after a kill -9."""
    lines = (out / runs.METRICS).read_text().splitlines() if (out / runs.METRICS).exists() else []
    for line in lines[:-1]:
        json.loads(line)  # only the last line may be torn
    assert all(isinstance(r, dict) for r in runs.read_jsonl(out / runs.METRICS))
    assert runs.effective_state(runs.read_status(out)) == "orphaned"
    assert runs.run_summary(out) is not None  # listed, with its config
    if (out / runs.WEIGHTS).exists():
        run = load_run(out)
        assert run.step == file_step(out / runs.WEIGHTS)
        # model.safetensors is written just before resume.safetensors: at most one checkpoint ahead
        assert file_step(out / runs.RESUME) in (run.step, run.step - 10)
    else:
        with pytest.raises(RunError, match="missing"):
            load_run(out)


@pytest.mark.slow
def test_kill_9_at_random_moments_never_loses_the_run(tmp_path, corpus_file):
    rng = random.Random(6)
    out = tmp_path / "killed"
    first = ["--corpus", str(corpus_file), "--out", str(out), *TRIAL_ARGS]
    resume = ["--out", str(out), "--resume", "--quiet", "--threads", "1"]
    checkpoint_steps = []
    for trial, kind in enumerate(PLAN):
        resumed_from = file_step(out / runs.RESUME) if (out / runs.RESUME).exists() else 0
        proc = start_trainer(first if trial == 0 else resume, pause=None if kind == "random" else 1.5)
        if kind == "random":
            # a random moment measured in training progress, not seconds: on a fast machine a delay in
            # seconds can outlast the whole run; stopping by step 100 leaves it at least 20 steps to go
            target = min(100, resumed_from + rng.randint(1, 40))

            def reached_target():
                status = runs.read_status(out)
                return status.get("pid") == proc.pid and (status.get("step") or 0) >= target
            wait_for(reached_target, proc)
            time.sleep(rng.uniform(0.0, 0.05))
        else:
            wait_for(lambda: list(out.glob(TMP_PATTERN[kind])), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if kind != "random":
            assert temp_files(out), "the kill should have landed inside a weights write"
        check_killed_run(out)
        step = file_step(out / runs.RESUME) if (out / runs.RESUME).exists() else 0
        assert step >= resumed_from  # never goes back past the checkpoint it resumed from
        checkpoint_steps.append(step)
    proc = start_trainer(resume, pause=None)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    assert runs.read_status(out)["state"] == "finished"
    assert not temp_files(out)
    assert load_run(out).step == 120
    assert runs.list_snapshots(out) == list(range(0, 121, 10))

    # ten kills later, the run is the run an uninterrupted trainer produces (exact resume every time)
    straight = tmp_path / "straight"
    run_cli("-m", "gpt.train", "--corpus", str(corpus_file), "--out", str(straight), *TRIAL_ARGS, timeout=600)
    killed_rows, straight_rows = runs.read_jsonl(out / runs.METRICS), runs.read_jsonl(straight / runs.METRICS)
    assert [r["step"] for r in killed_rows] == [r["step"] for r in straight_rows]
    for key in ("train_loss", "val_loss"):
        a = [r[key] for r in killed_rows if key in r]
        b = [r[key] for r in straight_rows if key in r]
        assert a == pytest.approx(b, abs=1e-4)
    print("checkpoint step after each kill:", checkpoint_steps)


@pytest.fixture
def keep_signal_handlers():
    """gpt.train.main installs SIGTERM/SIGINT handlers; put pytest's back afterwards."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def tiny_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--corpus", str(corpus), "--out", str(out), *TINY_TRAIN, "--max-iters", "40", "--eval-interval", "10",
            *extra]


def test_crash_in_the_loop_is_reported_and_the_run_stays_inspectable(tmp_path, corpus_file, monkeypatch, capsys,
                                                                     keep_signal_handlers):
    out = tmp_path / "crash"
    real_step = Trainer.train_step

    def out_of_memory_at_25(self):
        if self.step == 25:
            raise MemoryError("simulated: cannot allocate 3 GB")
        return real_step(self)
    monkeypatch.setattr(Trainer, "train_step", out_of_memory_at_25)
    assert main(tiny_args(corpus_file, out)) == 1
    assert "MemoryError: simulated: cannot allocate 3 GB" in capsys.readouterr().err
    status = runs.read_status(out)
    assert status["state"] == "failed" and status["error"] == "MemoryError: simulated: cannot allocate 3 GB"
    assert "out_of_memory_at_25" in status["traceback"]
    assert runs.effective_state(status) == "failed"
    assert load_run(out).step == 20  # the last checkpoint before the crash
    assert [r.state for r in runs.list_runs(tmp_path)] == ["failed"]
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert main(["--out", str(out), "--resume", "--quiet"]) == 0  # fixed: it continues from step 20
    assert load_run(out).step == 40 and runs.read_status(out)["state"] == "finished"


def test_a_corpus_that_went_bad_stops_resume_and_changes_nothing(tmp_path, corpus_file, capsys,
                                                                 keep_signal_handlers):
    corpus = tmp_path / "corpus.txt"
    shutil.copy(corpus_file, corpus)
    out = tmp_path / "run"
    assert main(tiny_args(corpus, out, "--stop-after", "10")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    corpus.write_text(corpus.read_text()[:-100] + "changed", encoding="utf-8")
    assert main(["--out", str(out), "--resume"]) == 2
    assert "changed since this run started" in capsys.readouterr().err
    corpus.write_bytes(b"\xff\xfe not text any more")
    assert main(["--out", str(out), "--resume"]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    corpus.unlink()
    assert main(["--out", str(out), "--resume"]) == 2
    assert "neither a built-in" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path, corpus_file, capsys,
                                                                        keep_signal_handlers):
    out = tmp_path / "early"
    assert main(tiny_args(corpus_file, out, "--stop-after", "10")) == 0
    for name in (runs.RESUME, runs.WEIGHTS):
        (out / name).unlink()  # as if killed inside the step-0 save
    shutil.rmtree(out / runs.SNAPSHOTS)
    runs.append_jsonl(out / runs.METRICS, {"step": 5, "train_loss": 9.9})
    with open(out / runs.METRICS, "a") as f:
        f.write('{"step": 6, "train_lo')  # a torn last line
    assert main(["--out", str(out), "--resume", "--quiet"]) == 0
    assert "starting it from step 0" in capsys.readouterr().err
    assert load_run(out).step == 40
    steps = [r["step"] for r in runs.read_jsonl(out / runs.METRICS)]
    assert steps == sorted(steps) and 9.9 not in [r.get("train_loss") for r in runs.read_jsonl(out / runs.METRICS)]


def test_torn_metrics_lines_are_skipped_and_dropped_on_resume(tmp_path):
    path = tmp_path / runs.METRICS
    runs.append_jsonl(path, {"step": 1, "train_loss": 2.0})
    runs.append_jsonl(path, {"step": 2, "train_loss": 1.5})
    with open(path, "a") as f:
        f.write('{"step": 3, "train_loss": 1.')  # killed mid-line
    assert runs.read_jsonl(path) == [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.5}]
    with open(path, "a") as f:
        f.write("\x00\x00\xff garbage\n[1, 2]\n")
    assert [r["step"] for r in runs.read_jsonl(path)] == [1, 2]
    runs.append_jsonl(path, {"step": "three", "val_loss": "low"})  # well-formed JSON, nonsense values
    (tmp_path / runs.STATUS).write_text('{"state": "running", "pid": "x", "step": null}')
    from explorer.jobs import training as jobs  # the app's readers
    assert [r["step"] for r in jobs.read_metrics(tmp_path)][:2] == [1, 2]
    runs.write_config(tmp_path, GPTConfig(), TrainConfig())
    summary = runs.run_summary(tmp_path)
    assert summary.step == 2 and summary.best_val is None and summary.state == "orphaned"
    assert jobs.job_state(tmp_path).state == "orphaned"
    runs.truncate_metrics(tmp_path, 1)
    assert path.read_text() == json.dumps({"step": 1, "train_loss": 2.0}) + "\n"


def test_stale_temp_files_go_but_a_live_writers_stay(tmp_path):
    (tmp_path / runs.SNAPSHOTS).mkdir()
    dead = [tmp_path / ".tmp-model.safetensors.999999999", tmp_path / "snapshots/.tmp-step_0000010.safetensors.999999998",
            tmp_path / f".tmp-resume.safetensors.{os.getpid()}"]  # our own: nothing of ours is mid-write now
    live = tmp_path / f".tmp-status.json.{os.getppid()}"  # another live process (pytest's parent)
    for p in [*dead, live]:
        p.write_bytes(b"partial")
    assert runs.remove_stale_temp_files(tmp_path) == len(dead)
    assert live.exists() and not any(p.exists() for p in dead)


def _raise_enospc_on(call_number: int, real):
    """A safetensors writer that fails like a full disk on its nth call, after writing part of the file."""
    calls = {"n": 0}

    def writer(obj, filename, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call_number:
            Path(filename).write_bytes(b"\x00" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real(obj, filename, *args, **kwargs)
    return writer


def test_disk_full_mid_training_keeps_the_last_checkpoint(tmp_path, corpus_file, monkeypatch, capsys,
                                                          keep_signal_handlers):
    out = tmp_path / "full"
    # save_model writes the snapshot, then model.safetensors at each evaluation: call 4 is model.safetensors at
    # step 10 (resume.safetensors goes through save_file, after it)
    monkeypatch.setattr(atomic, "save_model", _raise_enospc_on(4, atomic.save_model))
    monkeypatch.setattr(atomic, "save_file", _raise_enospc_on(99, atomic.save_file))
    assert main(tiny_args(corpus_file, out)) == 1
    assert "No space left on device" in capsys.readouterr().err
    status = runs.read_status(out)
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert load_run(out).step == 0 and file_step(out / runs.RESUME) == 0
    assert not temp_files(out)


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_real_disk_full_on_a_tiny_tmpfs(tmp_path, corpus_file, capsys, keep_signal_handlers):
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "size=700k"):
        pytest.skip("needs root and mount to make a tiny tmpfs (the ENOSPC path is covered by a simulation)")
    try:
        out = mnt / "run"
        rc = main(tiny_args(corpus_file, out, "--max-iters", "200"))
        err = capsys.readouterr().err
        assert rc in (1, 2) and "No space left on device" in err and "Traceback" not in err
        assert not temp_files(out)
        if rc == 1:  # it got past the folder setup: whatever checkpoint it finished still loads
            status = runs.read_status(out)
            assert status.get("state") in ("failed", "running")  # 'running' only if even status.json failed
            if (out / runs.WEIGHTS).exists():
                assert load_run(out).step % 10 == 0
        else:
            assert not (out / runs.CONFIG).exists()
    finally:
        _umount(mnt)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder where writes fail: chmod for normal users; root ignores modes, so a read-only tmpfs."""
    ro = tmp_path / "ro"
    if os.geteuid() != 0:
        ro.mkdir()
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    if not _mount_tmpfs(ro, "size=4m"):
        pytest.skip("running as root without mount: cannot make a read-only folder")
    try:
        yield ro
    finally:
        _umount(ro)


def _make_read_only(ro: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    else:
        for p in [ro, *ro.rglob("*")]:
            if p.is_dir():
                p.chmod(0o555)


def test_read_only_checkpoints_folder_gets_a_clear_message(read_only_dir, corpus_file, capsys,
                                                           keep_signal_handlers):
    _make_read_only(read_only_dir)
    out = read_only_dir / "run"
    assert main(tiny_args(corpus_file, out)) == 2
    err = capsys.readouterr().err
    assert "cannot write the run folder" in err and ("Read-only" in err or "Permission denied" in err)
    assert not out.exists()


def test_resuming_in_a_folder_that_became_read_only(read_only_dir, corpus_file, capsys, keep_signal_handlers):
    out = read_only_dir / "run"
    assert main(tiny_args(corpus_file, out, "--stop-after", "10")) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _make_read_only(read_only_dir)
    assert main(["--out", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Read-only" in err or "Permission denied" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert load_run(out).step == 10
