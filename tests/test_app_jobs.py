"""explorer/jobs/training.py and explorer/jobs/train_form.py: background trainer processes (start, busy limit, stop,
resume, ladder chain, delete) and the Train form's checks, without streamlit."""
from __future__ import annotations

import time

import pytest

from explorer.jobs import training as jobs
from explorer.jobs.train_form import FormValues, estimate, ladder_options, problems, train_options
from gpt.config import GPTConfig
from gpt.sizing import count_params

TINY = dict(arch="gpt", n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, eval_iters=2,
            sample_tokens=10, dtype="float32", log_interval=5, threads=1)


def wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_stop_then_resume_continues_the_same_run(empty_root, corpus_file):
    out = jobs.start_job("long", {"corpus": str(corpus_file), "max_iters": 100_000, "eval_interval": 50, **TINY})
    assert jobs.job_state(out).live
    wait_for(lambda: jobs.job_state(out).step >= 10)
    busy = jobs.busy_message()
    assert busy and "long" in busy
    with pytest.raises(jobs.JobError, match="Busy"):
        jobs.start_job("second", {"corpus": str(corpus_file), **TINY})
    with pytest.raises(jobs.JobError, match="stop it"):
        jobs.delete_run("long")
    assert jobs.stop_job(out)
    state = jobs.wait_until_done(out, timeout=60)
    assert state.state == "stopped" and state.step >= 10
    stopped_at = state.step
    jobs.resume_job(out, max_iters=stopped_at + 20)
    state = jobs.wait_until_done(out, timeout=120)
    assert state.state == "finished" and state.step == stopped_at + 20, jobs.log_tail(out)
    steps = [r["step"] for r in jobs.read_metrics(out) if "train_loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] > stopped_at  # continued, nothing logged twice
    jobs.delete_run("long")
    assert not out.exists()


@pytest.mark.slow
def test_failed_start_reports_the_trainers_message(empty_root):
    out = jobs.start_job("bad", {"corpus": "python-docs", **{**TINY, "n_embd": 15}})  # 15 % 2 != 0
    state = jobs.wait_until_done(out, timeout=60)
    assert state.state == "failed" and "divisible" in state.error


def test_uploaded_text_is_checked_before_anything_starts(empty_root):
    from gpt.data import CorpusError
    with pytest.raises(CorpusError, match="UTF-8"):
        jobs.start_job("upload", {**TINY}, corpus_bytes=b"\xff\xfe bad bytes")
    with pytest.raises(jobs.JobError, match="already exists"):
        (empty_root / "taken").mkdir()
        (empty_root / "taken" / "x").write_text("x")
        jobs.start_job("taken", {"corpus": "python-docs"})
    with pytest.raises(ValueError, match="usable"):
        jobs.start_job("../", {"corpus": "python-docs"})


@pytest.mark.slow
def test_ladder_trains_each_rung_in_turn(empty_root, corpus_file):
    opts = {"corpus": str(corpus_file), "max_iters": 10, "eval_interval": 5, **TINY}
    outs = jobs.start_chain([(f"lad-{arch}", {**opts, "arch": arch}) for arch in ("bigram", "single_head")])
    assert jobs.job_state(outs[1]).state == "queued"
    for out in outs:
        wait_for(lambda out=out: jobs.job_state(out).state == "finished")
    assert jobs.latest_sample(outs[1])["step"] == 10


def test_form_problems_estimates_and_options():
    ok = FormValues(corpus="python-docs", n_layer=2, block_size=32, n_embd=32, n_head=2)
    assert problems(ok) == []
    est = estimate(ok)
    assert est["params"] == count_params(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32))
    assert est["flops_total"] == est["flops_per_step"] * ok.max_iters
    assert any("divisible" in p for p in problems(FormValues(n_embd=30, n_head=4)))
    assert any("at least 256" in p for p in problems(FormValues(tokenizer="bpe", vocab_size=100)))
    assert any("choose a corpus" in p for p in problems(FormValues(corpus=None)))
    assert any("characters" in p for p in problems(FormValues(corpus=None, corpus_text="too short")))
    opts = train_options(FormValues(tokenizer="bpe", vocab_size=300))
    assert opts["tokenizer"] == "bpe" and opts["vocab_size"] == 300 and opts["dtype"] == "float32"
    tuned = train_options(FormValues(parent_config=GPTConfig(), init_from="/x"))
    assert tuned["init_from"] == "/x" and "n_layer" not in tuned   # fine-tuning keeps the parent's shape
    rungs = ladder_options(ok)
    assert [o["arch"] for _, o in rungs] == ["bigram", "single_head", "multi_head", "gpt"]
    # the same data, context, batch and width; each rung its own budget (tests/test_train_defaults.py)
    assert len({(o["corpus"], o["block_size"], o["batch_size"], o["n_embd"]) for _, o in rungs}) == 1


def test_format_eta():
    assert [jobs.format_eta(v) for v in (None, -1, 5, 125, 7300)] == ["—", "—", "5s", "2m 05s", "2h 01m"]
