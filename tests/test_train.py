import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, TINY_TRAIN, run_cli

from gpt import runs
from gpt.config import TrainConfig
from gpt.runs import RunError, load_run
from gpt.training.trainer import lr_at


@pytest.mark.slow
def test_cli_train_then_sample(tiny_run):
    files = {p.name for p in tiny_run.iterdir()}
    assert {"config.json", "tokenizer.json", "model.safetensors", "resume.safetensors", "metrics.jsonl",
            "status.json", "samples.jsonl", "snapshots"} <= files
    assert runs.list_snapshots(tiny_run) == [0, 20, 40, 60]
    metrics = runs.read_jsonl(tiny_run / "metrics.jsonl")
    logged = [m for m in metrics if "train_loss" in m]
    assert logged and all({"step", "lr", "grad_norm", "tokens_per_s", "elapsed_s"} <= set(m) for m in logged)
    vals = [m["val_loss"] for m in metrics if "val_loss" in m]
    assert len(vals) == 4 and vals[-1] < vals[0]
    assert runs.read_status(tiny_run)["state"] == "finished"
    out = run_cli("-m", "gpt.sample", str(tiny_run), "--prompt", "The ", "--max-new-tokens", "40", "--seed", "1")
    assert out.stdout.startswith("The ") and len(out.stdout) >= 40
    again = run_cli("-m", "gpt.sample", str(tiny_run), "--prompt", "The ", "--max-new-tokens", "40", "--seed", "1")
    assert again.stdout == out.stdout


def test_checkpoint_roundtrip(tiny_run):
    run = load_run(tiny_run)
    assert run.step == 60
    x = torch.randint(0, run.config.vocab_size, (1, 16))
    again = load_run(tiny_run)
    assert torch.equal(run.model(x)[0], again.model(x)[0])
    early = load_run(tiny_run, step=0)
    assert not torch.equal(early.model(x)[0], run.model(x)[0])


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, corpus_file):
    common = ("--corpus", str(corpus_file), "--max-iters", "40", "--eval-interval", "15", "--dropout", "0.1",
              *TINY_TRAIN)
    straight = tmp_path / "straight"
    run_cli("-m", "gpt.train", "--out", str(straight), *common)
    split = tmp_path / "split"
    run_cli("-m", "gpt.train", "--out", str(split), "--stop-after", "20", *common)
    assert runs.read_status(split)["state"] == "stopped"
    run_cli("-m", "gpt.train", "--out", str(split), "--resume", "--quiet")
    a = runs.read_jsonl(straight / "metrics.jsonl")
    b = runs.read_jsonl(split / "metrics.jsonl")
    assert [m["step"] for m in a] == [m["step"] for m in b]
    final_a = [m["val_loss"] for m in a if "val_loss" in m]
    final_b = [m["val_loss"] for m in b if "val_loss" in m]
    assert final_a == pytest.approx(final_b, abs=1e-4)
    losses_a = [m["train_loss"] for m in a if "train_loss" in m]
    losses_b = [m["train_loss"] for m in b if "train_loss" in m]
    assert losses_a == pytest.approx(losses_b, abs=1e-4)


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_cleanly(tmp_path, corpus_file):
    out = tmp_path / "term"
    proc = subprocess.Popen([sys.executable, "-m", "gpt.train", "--corpus", str(corpus_file), "--out", str(out),
                             "--max-iters", "100000", "--eval-interval", "100000", *TINY_TRAIN], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and runs.read_status(out).get("step", 0) < 20:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    status = runs.read_status(out)
    assert status["state"] == "stopped" and status["step"] >= 20
    assert load_run(out).step == status["step"]
    assert not list(out.glob(".tmp-*"))


@pytest.mark.slow
def test_init_from_fine_tunes_and_names_unknown_chars(tmp_path, tiny_run):
    text = load_run(tiny_run).tokenizer.decode(list(range(load_run(tiny_run).tokenizer.vocab_size)))
    other = tmp_path / "other.txt"
    other.write_text((text * 200)[:20_000])
    run_cli("-m", "gpt.train", "--corpus", str(other), "--out", str(tmp_path / "ft"), "--init-from",
            str(tiny_run), "--max-iters", "5", "--eval-interval", "5", "--eval-iters", "1", "--quiet",
            "--batch-size", "4")
    assert load_run(tmp_path / "ft").step == 5
    bad = tmp_path / "bad.txt"
    bad.write_text("Ω≈ç√ " * 1000)
    proc = run_cli("-m", "gpt.train", "--corpus", str(bad), "--out", str(tmp_path / "ft2"), "--init-from",
                   str(tiny_run), "--max-iters", "5", check=False)
    assert proc.returncode == 2 and "'Ω'" in proc.stderr and "'√'" in proc.stderr
    assert not (tmp_path / "ft2").exists()


@pytest.mark.slow
@pytest.mark.parametrize("content, args, message", [
    (b"", (), "empty"),
    (b"   \n\t  ", (), "whitespace"),
    (b"\x00\x01\x02binary\xff", (), "binary"),
    (b"\xff\xfe caf\xe9", (), "UTF-8"),
    (b"short text", (), "block_size"),
    (b"hello world " * 500, ("--n-embd", "30", "--n-head", "4"), "divisible"),
    (b"hello world " * 500, ("--n-layer", "0"), "n_layer"),
    (b"hello world " * 500, ("--lr", "-1"), "lr"),
])
def test_bad_inputs_get_clear_errors_and_change_nothing(tmp_path, content, args, message):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(content)
    out = tmp_path / "run"
    proc = run_cli("-m", "gpt.train", "--corpus", str(corpus), "--out", str(out), "--max-iters", "5",
                   "--block-size", "32", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_refuses_to_overwrite_a_run(tiny_run):
    proc = run_cli("-m", "gpt.train", "--corpus", "python-docs", "--out", str(tiny_run), "--max-iters", "5",
                   check=False)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr


def test_lr_schedule():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=10, max_iters=100)
    assert lr_at(0, cfg) < lr_at(9, cfg) < 1e-3
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(100, cfg) == pytest.approx(1e-4)
    assert lr_at(55, cfg) == pytest.approx(5.5e-4, rel=1e-3)


def test_corrupt_checkpoints_are_refused(tmp_path, tiny_run):
    import pickle
    import shutil
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match="corrupt"):
        load_run(run)

    class Boom:
        def __reduce__(self):
            return (print, ("PICKLE EXECUTED",))
    weights.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(RunError):
        load_run(run)
    shutil.copy(tiny_run / "model.safetensors", weights)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["n_embd"] = "wide"
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="n_embd"):
        load_run(run)
    cfg["model"]["n_embd"] = 64
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="does not match"):
        load_run(run)
    shutil.copy(tiny_run / "config.json", run / "config.json")
    (run / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": list("abc")}))
    with pytest.raises(RunError, match="do not belong together"):
        load_run(run)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "", "..", "a/../../b", "x" * 500, "ünïcødé 名前", "..."])
def test_run_names_never_escape(tmp_path, name):
    try:
        path = runs.run_path(name, tmp_path)
    except RunError:
        return
    assert path.parent == tmp_path.resolve()
    assert len(path.name) <= 64


def test_compile_flag_reaches_the_saved_config():
    from gpt.config import GPTConfig
    from gpt.train import build_parser, configs_from_args
    args = build_parser().parse_args(["--out", "x", "--compile"])
    _, train_cfg = configs_from_args(args, GPTConfig(), TrainConfig())
    assert train_cfg.compile and TrainConfig.from_dict(train_cfg.to_dict()).compile  # resume keeps it
    assert not TrainConfig.from_dict({}).compile  # older run folders: off


@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_compile_trains_like_eager(dtype):
    """--compile runs the training step compiled (the bf16 working copy on CPU; a one-off ~30 s compile on 2
    cores) and gives eager's losses; the plain model, used for evaluation and checkpoints, is what it trains."""
    from gpt.config import GPTConfig
    from gpt.model import GPT
    from gpt.tokenizers import CharTokenizer
    from gpt.training.trainer import Trainer
    text = "a tiny corpus for the compile test, repeated. " * 100
    tok = CharTokenizer.train(text)
    ids = torch.tensor(tok.encode(text))
    n = int(len(ids) * 0.9)
    losses = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
        trainer = Trainer(model, tok, ids[:n], ids[n:], TrainConfig(batch_size=4, max_iters=10, eval_iters=2,
                                                                    compile=compiled),
                          None, torch.device("cpu"), dtype)
        assert (trainer.low_precision.work_forward is not trainer.low_precision.work) == compiled
        losses[compiled] = [trainer.train_step()[0] for _ in range(6)]
        losses[compiled].append(trainer.evaluate()["val"])  # the plain model has the compiled steps' updates
    assert max(abs(a - b) for a, b in zip(losses[False], losses[True])) < 1e-3, losses


@pytest.mark.slow
def test_repeat_lines_frac_mixes_doubled_lines_into_training_batches_only(tmp_path, corpus_file):
    """--repeat-lines-frac: that share of each training batch comes from the training text with every line said
    twice (saved in config.json, so resume keeps it); evaluation batches and the validation text stay plain."""
    from gpt.config import ConfigError, GPTConfig
    from gpt.model import GPT
    from gpt.tokenizers import CharTokenizer
    from gpt.training.trainer import Trainer
    with pytest.raises(ConfigError, match="repeat_lines_frac"):
        TrainConfig(repeat_lines_frac=1.0).validate()
    text = "".join(f"line number {i} of the corpus\n" for i in range(300))
    tok = CharTokenizer.train(text)
    ids = torch.tensor(tok.encode(text))
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    trainer = Trainer(model, tok, ids[:8000], ids[8000:], TrainConfig(batch_size=8, repeat_lines_frac=0.25),
                      None, torch.device("cpu"), torch.float32)
    space = tok.encode(" ")[0]
    trainer.repeated_ids = torch.full((500,), space)  # recognisable: the plain text has no 16 spaces in a row
    x, y = trainer.train_batch()
    assert [bool((w == space).all()) for w in x] == [False] * 6 + [True] * 2  # round(0.25 * 8) = 2 windows
    x, _ = trainer.batch(trainer.train_ids, torch.Generator().manual_seed(0))  # evaluation: plain text only
    assert not any(bool((w == space).all()) for w in x)
    # the real doubled text, built by train.py from the training split
    from gpt.lab.induction_lab import repeated_corpus
    assert repeated_corpus("a\nb\n") == "a\na\nb\nb\n"
    run_cli("-m", "gpt.train", "--out", str(tmp_path / "run"), "--corpus", str(corpus_file), "--max-iters", "4",
            "--repeat-lines-frac", "0.5", *TINY_TRAIN)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["repeat_lines_frac"] == 0.5
