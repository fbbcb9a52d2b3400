"""The training lab (gpt/lab/): ICL score and Fourier norms on constructed inputs with known answers, Welch's
t-test against published values, the grokking model's fast forward, the sweep queue's job limit, and both lab
CLIs on tiny settings (seconds)."""
from __future__ import annotations

import json
import math
import time

import pytest
import torch
from conftest import checkpoints_env, open_page, run_cli

from gpt import runs
from gpt.config import ConfigError
from gpt.lab.fourier import fourier_basis, frequency_norms, frequency_report
from gpt.lab.grokking import GrokConfig, answer_logits, make_dataset, paper_init
from gpt.lab.induction_lab import repeated_corpus, repeated_passages
from gpt.lab.probes import eval_probes, icl_from_losses, icl_positions, repeated_text_probe
from gpt.lab.stats import mean_std, regularized_incomplete_beta, t_two_sided_p, welch_t_test
from gpt.lab.sweeps import SweepError, parse_values, plan, sweep_results
from gpt.model import GPT


# ---- ICL score ----
def test_icl_positions_scale_the_papers_50_and_500_of_512():
    early, late = icl_positions(512)
    assert 50 in early and 500 in late and len(early) == len(late) == 17  # +-512//64 = 8 positions around each
    early, late = icl_positions(128)
    assert (min(early), max(early)) == (10, 14) and (min(late), max(late)) == (123, 127)
    with pytest.raises(ValueError, match="at least 8"):
        icl_positions(4)


def test_icl_score_is_late_minus_early_loss():
    T = 128
    losses = torch.full((3, T), 9.0)  # positions outside both windows must not count
    early, late = icl_positions(T)
    losses[:, list(early)] = 3.0
    losses[:, list(late)] = 2.25
    assert icl_from_losses(losses) == pytest.approx(-0.75)
    assert icl_from_losses(torch.full((2, T), 1.7)) == pytest.approx(0.0)


def test_eval_probes_logs_scores_for_attention_models_only(corpus_text):
    from gpt.config import GPTConfig
    ids = torch.randint(65, (5000,))
    model = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=16, arch="multi_head"))
    row = eval_probes(model, ids)
    assert set(row) == {"icl_score", "induction_score", "induction_head", "prev_token_score", "prev_token_head"}
    assert 0 <= row["induction_score"] <= 1 and row["induction_head"].startswith("L")
    assert model.training  # restored
    assert eval_probes(GPT(GPTConfig(vocab_size=65, block_size=32, arch="bigram")), ids) == {}


def test_probes_score_heads_on_repeated_held_out_text():
    """eval_probes scores heads on 16 validation passages, each followed by itself; a head built to attend to
    the token after the previous occurrence of the current one scores 1 on it."""
    from gpt.config import GPTConfig
    from gpt.interp.capture import attention_patterns
    from gpt.interp.detectors import detector_scores
    model = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=16, arch="multi_head"))
    val = torch.randint(65, (5000,), generator=torch.Generator().manual_seed(3))
    probe = repeated_text_probe(model, val)
    assert probe.shape == (16, 32)
    for row in probe:  # each row: a stretch of the validation ids, then the same stretch again
        assert torch.equal(row[:16], row[16:])
        start = next(i for i in range(len(val) - 16) if torch.equal(val[i:i + 16], row[:16]))
        assert start >= 0
    assert len({tuple(r.tolist()) for r in probe}) == 16  # different passages
    # a perfect induction head scores 1: in the second copy each token attends to the token after its earlier
    # occurrence (query q -> key q - 16 + 1); the first copy attends uniformly
    perfect = torch.tril(torch.ones(32, 32)) / torch.arange(1, 33)[:, None]
    perfect[16:] = 0
    perfect[torch.arange(16, 32), torch.arange(1, 17)] = 1
    patterns = attention_patterns(model, probe).clone()
    patterns[:, 1, 0] = perfect
    assert float(detector_scores(patterns, probe)[3, 1, 0]) == pytest.approx(1.0)
    # less text than one context: the random-token probe instead
    assert repeated_text_probe(model, val[:20]).shape == (4, 32)


def test_lab_corpus_says_every_line_twice():
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak."
    doubled = repeated_corpus(text)
    lines = doubled.splitlines()
    assert lines[0::2] == lines[1::2] == ["First Citizen:", "Before we proceed any further, hear me speak.", "",
                                          "All:", "Speak, speak."]


def test_lab_corpus_says_every_passage_of_whole_lines_twice():
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
            "First Citizen:\nYou are all resolved rather to die than to famish?")
    passages = ["First Citizen:\nBefore we proceed any further, hear me speak.\n",  # 15 + 46 characters: >= 30
                "\nAll:\nSpeak, speak.\n\nFirst Citizen:\n",  # whole lines until the passage has 30 characters
                "You are all resolved rather to die than to famish?\n"]  # the last one gets its newline too
    assert repeated_passages(text) == "".join(p + p for p in passages)
    assert repeated_passages(text, min_chars=1) == repeated_corpus(text)  # a passage of one line: every line twice
    assert repeated_passages(text, min_chars=10_000) == "".join(passages) * 2


# ---- Fourier ----
def test_fourier_basis_is_orthonormal():
    basis, names = fourier_basis(13)
    assert torch.allclose(basis @ basis.T, torch.eye(13, dtype=basis.dtype), atol=1e-10)
    assert names[:3] == ["const", "cos 1", "sin 1"] and len(names) == 13


def test_frequency_norms_find_a_planted_frequency():
    p, k = 113, 14
    a = torch.arange(p, dtype=torch.float64)
    emb = torch.zeros(p + 1, 8, dtype=torch.float64)  # the extra row ("=") is ignored
    emb[:p, 0] = 3 * torch.cos(2 * math.pi * k * a / p)
    emb[:p, 1] = 3 * torch.sin(2 * math.pi * k * a / p) + 0.5  # a constant offset carries no frequency
    emb[p] = 100.0
    norms = frequency_norms(emb, p)
    assert norms.shape == (56,) and int(norms.argmax()) == k - 1
    # Parseval: a unit-amplitude cosine over p points has norm sqrt(p/2); two of them (cos and sin) times 3
    assert float(norms[k - 1]) == pytest.approx(3 * math.sqrt(p), rel=1e-5)
    assert float(norms.sum() - norms[k - 1]) < 1e-6
    report = frequency_report(norms)
    assert report.key_frequencies == [k] and report.key_share == pytest.approx(1.0) and report.top6_share == pytest.approx(1.0)


def test_random_embedding_spreads_its_fourier_norm():
    norms = frequency_norms(torch.randn(113, 128, generator=torch.Generator().manual_seed(0)), 113)
    report = frequency_report(norms)
    assert report.top6_share < 0.2 and len(report.key_frequencies) == 6  # 6 of 56 frequencies: ~11% expected


def test_frequency_norms_reject_a_short_embedding():
    with pytest.raises(ValueError, match="at least p=113 rows"):
        frequency_norms(torch.zeros(50, 4), 113)


# ---- Welch's t-test ----
def test_t_distribution_tails_match_tables():
    assert t_two_sided_p(2.228, 10) == pytest.approx(0.05, abs=2e-4)       # t table, df 10
    assert t_two_sided_p(12.706, 1) == pytest.approx(0.05, abs=1e-4)       # df 1
    assert t_two_sided_p(3.0, 1) == pytest.approx(1 - 2 / math.pi * math.atan(3.0), rel=1e-9)  # Cauchy, exact
    assert t_two_sided_p(1.959964, 1e7) == pytest.approx(0.05, rel=1e-4)   # the normal limit
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    assert regularized_incomplete_beta(0.5, 2, 3) == pytest.approx(0.6875, rel=1e-12)  # exact: 11/16


def test_welch_t_test_matches_the_published_example():
    # Wikipedia, "Welch's t-test", example 1: t = -2.46, df = 25.0, p = 0.021
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    r = welch_t_test(a, b)
    assert r.t == pytest.approx(-2.46, abs=0.005) and r.df == pytest.approx(25.0, abs=0.05)
    assert r.p_value == pytest.approx(0.021, abs=0.001)
    assert mean_std([1.0, 3.0]) == (2.0, math.sqrt(2.0))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        welch_t_test([1.0], [2.0, 3.0])


# ---- grokking ----
def test_answer_logits_equal_the_full_forward():
    cfg = GrokConfig(p=11, d_model=32)
    model = GPT(cfg.model_config()).eval()
    paper_init(model)
    data = make_dataset(11, 0.3, seed=0)
    full, _ = model(data.test_x)
    assert torch.allclose(answer_logits(model, data.test_x), full[:, -1], atol=1e-5)
    assert len(data.train_x) + len(data.test_x) == 121 and len(data.train_x) == round(0.3 * 121)
    assert torch.equal(data.train_y, (data.train_x[:, 0] + data.train_x[:, 1]) % 11)


@pytest.mark.parametrize("native_bf16", [False, True])
def test_grokking_trains_in_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, native_bf16):
    import contextlib

    from gpt.lab import grokking
    from gpt.training import trainer
    monkeypatch.setattr(trainer, "cpu_has_fast_bf16", lambda: native_bf16)
    assert GrokConfig().dtype == "auto"
    auto = grokking.training_autocast("auto")
    assert isinstance(auto, torch.autocast if native_bf16 else contextlib.nullcontext)
    assert isinstance(grokking.training_autocast("bfloat16"), torch.autocast)  # asked for: given
    assert isinstance(grokking.training_autocast("float32"), contextlib.nullcontext)
    with pytest.raises(ConfigError, match="auto, float32 or bfloat16"):
        GrokConfig(dtype="fp8").validate()


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory, corpus_file):
    """A checkpoints root holding one tiny grokking run and one tiny induction lab, made by the CLIs as the app
    would name them (seconds: far too short to pass their checks)."""
    root = tmp_path_factory.mktemp("lab-ckpt")
    run_cli("-m", "gpt.lab", "grokking", "--out", str(root / "lab-grokking-0101-000000"), "--p", "11",
            "--d-model", "32", "--max-steps", "20", "--eval-interval", "5", "--snapshot-interval", "10",
            "--threads", "1", timeout=120)
    run_cli("-m", "gpt.lab", "induction", "--out", str(root / "lab-induction-0101-000000"), "--corpus",
            str(corpus_file), "--max-iters", "10", "--block-size", "32", "--n-embd", "16", "--batch-size", "4",
            "--eval-interval", "5", "--tokenizer", "char", timeout=180)
    return root


@pytest.mark.slow
def test_grokking_cli_writes_a_loadable_run(lab_root):
    out = lab_root / "lab-grokking-0101-000000"
    rows = runs.read_jsonl(out / runs.METRICS)
    assert [r["step"] for r in rows] == [0, 5, 10, 15, 20]
    assert all({"train_acc", "test_acc", "weight_norm", "fourier_norms", "key_frequencies"} <= set(r) for r in rows)
    run = runs.load_run(out)
    assert run.config.norm == "none" and run.config.activation == "relu" and not run.config.tie_embeddings
    assert runs.list_snapshots(out) == [0, 10, 20]
    status = runs.read_status(out)
    assert status["state"] == "finished" and "test accuracy" in status["result"]["verdict"]
    bad = run_cli("-m", "gpt.lab", "grokking", "--out", str(out), check=False)
    assert bad.returncode == 2 and "already holds a run" in bad.stderr


@pytest.mark.slow
def test_induction_cli_trains_two_runs_and_checks(lab_root):
    out = lab_root / "lab-induction-0101-000000"
    assert runs.broken_runs(lab_root) == []  # the lab's folder holds runs; it is not a broken one
    result = json.loads((out / "lab.json").read_text())
    assert len(result["checks"]) == 3 and isinstance(result["passed"], bool)
    for name, layers in (("attn-2layer", 2), ("attn-1layer", 1)):
        run = runs.load_run(out / name)
        assert run.config.arch == "multi_head" and run.config.n_layer == layers
        rows = [r for r in runs.read_jsonl(out / name / runs.METRICS) if "induction_score" in r]
        assert [r["step"] for r in rows] == [0, 5, 10] and all("icl_score" in r for r in rows)


@pytest.mark.slow
def test_lab_page_shows_both_experiments_and_their_verdicts(lab_root, fresh_caches):
    with checkpoints_env(lab_root):
        at = open_page("lab")
        assert at.title[0].value == "Training lab"
        verdicts = " ".join(str(e.value) for e in [*at.error, *at.success])
        assert "test accuracy" in verdicts and "Auto-check" in verdicts  # grokking's and induction's verdicts
        specs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
        titles = " ".join(str(f["layout"].get("title", {}).get("text", "")) for f in specs)
        assert "Induction heads form" in titles and "Grokking" in titles and "Fourier" in titles
        assert [b.label for b in at.button if b.label.startswith("Run the")] == [
            "Run the induction experiment", "Run the grokking experiment"]


# ---- sweeps ----
def test_sweep_plan_and_values():
    assert parse_values("lr", "1e-3, 3e-3") == [1e-3, 3e-3]
    assert parse_values("n_layer", "1 2") == [1, 2]
    with pytest.raises(SweepError, match="not a valid whole number"):
        parse_values("n_layer", "1.5")
    with pytest.raises(SweepError, match="cannot be swept"):
        parse_values("vocab_size", "3")
    planned = plan("sw", {"lr": [1e-3, 3e-3], "n_layer": [1, 2]}, [1, 2, 3])
    assert len(planned) == 12 and planned[0].run == "sw-lr0.001-n_layer1-s1"
    with pytest.raises(SweepError, match="limit is 48"):
        plan("sw", {"lr": list(range(1, 10)), "n_layer": list(range(1, 7))}, [1])


def tiny_sweep_base(corpus_file, **overrides) -> dict:
    """The Train form's options of a one-layer, 16-wide run on the test corpus: the fixed part of a test sweep."""
    return {"corpus": str(corpus_file), "arch": "gpt", "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16,
            "batch_size": 4, "eval_iters": 1, "sample_tokens": 0, "dtype": "float32", "threads": 1, **overrides}


@pytest.mark.slow
def test_sweep_queue_never_exceeds_the_job_limit(tmp_path, monkeypatch, corpus_file):
    from explorer.jobs import sweeps as sweep_queue
    from explorer.jobs import training as jobs
    monkeypatch.setenv("GPT_EXPLORER_MAX_JOBS", "1")
    root = tmp_path / "ckpt"
    root.mkdir()
    base = tiny_sweep_base(corpus_file, max_iters=6, eval_interval=3)
    with checkpoints_env(root):
        path = sweep_queue.start_sweep("sw", {"lr": [1e-3, 3e-3]}, [1, 2], base, root=root)
        most_live, deadline = 0, time.monotonic() + 240
        while time.monotonic() < deadline:
            live = [name for name, st in jobs.live_jobs(root)]
            most_live = max(most_live, len(live))
            counts = sweep_queue.sweep_state(path, root)
            if counts["pending"] == 0 and counts["live"] == 0:
                break
            time.sleep(0.2)
        assert counts == {"pending": 0, "live": 0, "finished": 4, "other": 0}, counts
        assert most_live == 1
        results = sweep_results(sweep_queue.read_manifest(path), root)
        assert [r.values for r in results] == [{"lr": 1e-3}, {"lr": 3e-3}]
        assert all(len(r.losses) == 2 and r.mean is not None for r in results)


@pytest.mark.slow
def test_a_sweep_stops_as_one(tmp_path, monkeypatch, corpus_file):
    from explorer.jobs import sweeps as sweep_queue
    from explorer.jobs import training as jobs
    monkeypatch.setenv("GPT_EXPLORER_MAX_JOBS", "1")
    root = tmp_path / "ckpt"
    root.mkdir()
    base = tiny_sweep_base(corpus_file, max_iters=100_000, eval_interval=50)
    with checkpoints_env(root):
        path = sweep_queue.start_sweep("long", {"lr": [1e-3, 2e-3]}, [1, 2], base, root=root)
        deadline = time.monotonic() + 120
        while sweep_queue.sweep_state(path, root)["live"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sweep_queue.sweep_state(path, root)["live"] == 1
        assert sweep_queue.stop_sweep(path, root) == 1
        deadline = time.monotonic() + 60
        while jobs.live_jobs(root) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2 * sweep_queue.POLL_S)  # a runner that ignored the stop would start the next run now
        assert jobs.live_jobs(root) == []
        started = [e for e in sweep_queue.read_manifest(path)["runs"] if e["state"] == "started"]
        assert len(started) == 1
        deadline = time.monotonic() + 30  # the runner ends its loop at once; exiting Python takes a moment
        while sweep_queue.runner_alive(path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not sweep_queue.runner_alive(path)
        assert sweep_queue.sweep_state(path, root) == {"pending": 0, "live": 0, "finished": 0, "other": 4}


# ---- figure builders (pure) ----
def test_lab_figures_from_plain_rows():
    from explorer.figures.lab import fourier_figure, grokking_curves, induction_lab_figure, probe_curves, sweep_figure
    from gpt.lab.stats import describe_difference
    from gpt.lab.sweeps import SettingResult
    rows = [{"step": s, "val_loss": 3 - s / 100, "induction_score": 0.6 * (s >= 200), "icl_score": -0.3 * (s >= 200),
             "prev_token_score": 0.5} for s in range(0, 400, 100)]
    fig = induction_lab_figure({"attn-2layer": rows, "attn-1layer": rows}, {"attn-2layer": 200, "attn-1layer": None})
    assert len(fig.data) == 6 and "phase change (attn-2layer) @ 200" in [a.text for a in fig.layout.annotations]
    assert len(probe_curves(rows).data) == 3
    grok = [{"step": s, "train_loss": 1.0, "test_loss": 2.0, "train_acc": 1.0, "test_acc": s / 100, "weight_norm": 40.0,
             "fourier_norms": [1.0, 5.0, 1.0], "key_frequencies": [2], "key_share": 0.9} for s in (0, 50, 100)]
    assert "test 99% @ 100" in [a.text for a in grokking_curves(grok, 0, 100).layout.annotations]
    bars = fourier_figure(grok).data[1]
    assert list(bars.marker.color).count(bars.marker.color[1]) == 1  # only frequency 2 is highlighted
    results = [SettingResult({"lr": 1e-3}, [2.0, 2.2], [1, 2], 2.1, 0.14), SettingResult({"lr": 3e-3}, [1.9, 1.8], [1, 2], 1.85, 0.07)]
    sweep = sweep_figure(results, "lr")
    assert list(sweep.data[0].y) == [2.1, 1.85] and list(sweep.data[0].error_y.array) == [0.14, 0.07]
    assert "larger than the seed-to-seed noise" in describe_difference(welch_t_test([2.0, 2.01, 1.99], [1.0, 1.01, 0.99]), "a", "b")
    assert "not larger" in describe_difference(welch_t_test([2.0, 2.2], [1.9, 2.3]), "a", "b")


def test_runs_page_compares_a_sweeps_settings(root):
    from gpt.lab.sweeps import manifest_path
    losses = {1e-3: [2.00, 2.02, 1.98], 3e-3: [1.50, 1.52, 1.49]}
    entries = []
    for lr, vals in losses.items():
        for seed, loss in enumerate(vals, start=1):
            run = root / f"sw-lr{lr:g}-s{seed}"
            run.mkdir()
            runs.write_status(run, state="finished")
            runs.append_jsonl(run / runs.METRICS, {"step": 10, "val_loss": loss})
            entries.append({"run": run.name, "values": {"lr": lr}, "seed": seed, "state": "started", "error": None})
    path = manifest_path("sw", root)
    path.parent.mkdir()
    path.write_text(json.dumps({"name": "sw", "params": {"lr": [1e-3, 3e-3]}, "seeds": [1, 2, 3], "base": {},
                                "runner_pid": None, "runs": entries}))
    at = open_page("runs")
    assert "6 finished" in " ".join(c.value for c in at.caption)
    verdict = " ".join(i.value for i in at.info)
    assert "lr=0.003 is lower by 0.4967" in verdict and "larger than the seed-to-seed noise" in verdict
