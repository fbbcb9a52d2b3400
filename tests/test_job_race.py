"""Two sessions clicking Start at the same moment: the busy check and the launch are one step (an flock in the
checkpoints empty_root), so with a limit of one job exactly one trainer starts, every other caller gets the "busy"
message, and no half-made run folder is left for them. Threads stand for the sessions of one server,
processes for two servers sharing a checkpoints folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, trainers_under

from explorer.jobs import training as jobs
from gpt import runs

TINY = {"arch": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4,
        "max_iters": 1_000_000, "eval_interval": 50, "eval_iters": 2, "sample_tokens": 0, "dtype": "float32",
        "threads": 1}
N_THREADS = 6


def run_folders(empty_root) -> list[str]:
    return sorted(p.name for p in empty_root.iterdir() if p.is_dir())


def test_threads_racing_start_launch_exactly_one(empty_root, corpus_file):
    barrier = threading.Barrier(N_THREADS)
    results: dict[int, str] = {}

    def click_start(i: int) -> None:
        barrier.wait()  # every "session" clicks at the same moment
        try:
            jobs.start_job(f"race-{i}", {**TINY, "corpus": str(corpus_file)}, root=empty_root)
            results[i] = "started"
        except jobs.JobError as e:
            results[i] = str(e)

    threads = [threading.Thread(target=click_start, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    started = [i for i, r in results.items() if r == "started"]
    assert len(results) == N_THREADS and len(started) == 1, results
    winner = f"race-{started[0]}"
    for i, message in results.items():
        if i != started[0]:
            assert message.startswith("Busy: 1 training job(s) already running") and winner in message, message
    assert run_folders(empty_root) == [winner]  # the refused callers left nothing behind
    assert jobs.job_state(empty_root / winner).live


RACER = """
import json, sys, time
from pathlib import Path
from explorer.jobs import training as jobs
empty_root, corpus, name, ready_dir, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
(ready_dir / name).touch()
while len(list(ready_dir.iterdir())) < n:  # start together once every process has imported everything
    time.sleep(0.001)
options = json.loads(sys.argv[6])
try:
    jobs.start_job(name, {**options, "corpus": corpus}, root=empty_root)
    print(json.dumps("started"))
except jobs.JobError as e:
    print(json.dumps(str(e)))
"""


@pytest.mark.slow
def test_two_servers_racing_start_launch_exactly_one(empty_root, corpus_file, tmp_path):
    ready = tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(empty_root), str(corpus_file), f"server-{i}", str(ready),
                               "2", json.dumps(TINY)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sorted(r == "started" for r in results) == [False, True], results
    winner = f"server-{results.index('started')}"
    assert next(r for r in results if r != "started").startswith("Busy: 1 training job(s)")
    assert run_folders(empty_root) == [winner]
    assert jobs.job_state(empty_root / winner).live  # seen as live from this third process too


def test_a_failed_launch_leaves_no_folder_and_frees_the_lock(empty_root, corpus_file, monkeypatch):
    def no_fork(cmd, log_dir):
        raise OSError(11, "Resource temporarily unavailable")
    real_spawn = jobs._spawn
    monkeypatch.setattr(jobs, "_spawn", no_fork)
    for corpus_bytes in (None, b"To be, or not to be. " * 40):
        with pytest.raises(jobs.JobError, match="cannot write the run folder .*Resource temporarily"):
            jobs.start_job("doomed", {**TINY, "corpus": str(corpus_file)}, corpus_bytes=corpus_bytes, root=empty_root)
        assert run_folders(empty_root) == []
    with pytest.raises(jobs.JobError, match="cannot write"):
        jobs.start_chain([("lad-a", {**TINY, "corpus": str(corpus_file)}),
                          ("lad-b", {**TINY, "corpus": str(corpus_file)})], root=empty_root)
    assert run_folders(empty_root) == []
    monkeypatch.setattr(jobs, "_spawn", real_spawn)
    out = jobs.start_job("works", {**TINY, "corpus": str(corpus_file)}, root=empty_root)  # the lock was released
    assert jobs.job_state(out).live


def test_a_queued_ladder_counts_as_a_running_job(empty_root, corpus_file):
    outs = jobs.start_chain([(f"lad-{i}", {**TINY, "corpus": str(corpus_file)}) for i in range(2)], root=empty_root)
    assert all(runs.read_status(o)["chain_pid"] for o in outs)
    busy = jobs.busy_message(empty_root)
    assert busy and busy.startswith("Busy: 1 training job(s)"), busy  # one chain, one job, queued or not
    with pytest.raises(jobs.JobError, match="Busy"):
        jobs.start_job("meanwhile", {**TINY, "corpus": str(corpus_file)}, root=empty_root)
    assert not (empty_root / "meanwhile").exists()


def test_stopping_a_ladder_right_after_start_leaves_no_trainer(empty_root, corpus_file):
    """Stop arrives before the chain's first trainer has written its pid: signalling the chain's process group
    still reaches it (only killing the shell left that trainer training on, orphaned)."""
    outs = jobs.start_chain([(f"quick-{i}", {**TINY, "corpus": str(corpus_file)}) for i in range(2)], root=empty_root)
    assert jobs.stop_job(outs[0])
    deadline = time.monotonic() + 60
    while any(trainers_under(str(o)) for o in outs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(trainers_under(str(o)) for o in outs)
    assert not any(jobs.job_state(o).live for o in outs), [jobs.job_state(o).state for o in outs]
