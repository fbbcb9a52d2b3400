"""Bad input, each answered with a clear message that changes nothing: corpora, hyperparameters, prompts,
checkpoints and run names. (tests/test_train.py covers the first corpus cases through the CLI; these extend it,
mostly in-process through the same `main` functions so they stay fast.)"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
from pathlib import Path

import pytest
import torch

from gpt import runs, sample
from gpt import train as train_cli
from gpt.config import GPTConfig
from gpt.data import MAX_CORPUS_BYTES, CorpusError, decode_bytes, load_corpus
from gpt.generate import GenerationError, generate_text, stream_text
from gpt.model import GPT
from gpt.runs import RunError, load_run
from gpt.sizing import memory_estimate
from gpt.tokenizers import BPETokenizer, CharTokenizer, UnknownCharactersError
from gpt.training import trainer


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def refused(capsys, argv: list[str], message: str, module=train_cli) -> str:
    """Run a CLI main in-process; it must exit 2 with `message`, no traceback."""
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err
    return err


# ---- corpora ----
def test_corpus_over_the_size_limit_is_refused_before_reading(tmp_path, capsys):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:  # sparse: no real disk or memory used
        f.truncate(MAX_CORPUS_BYTES + 1)
    with pytest.raises(CorpusError, match="larger than 200 MB"):
        load_corpus(str(big))
    refused(capsys, ["--corpus", str(big), "--out", str(tmp_path / "run")], "larger than 200 MB")
    assert not (tmp_path / "run").exists()


def test_corpus_byte_checks(monkeypatch):
    monkeypatch.setattr("gpt.data.MAX_CORPUS_BYTES", 100)
    with pytest.raises(CorpusError, match="limit is"):
        decode_bytes(b"x" * 101, "upload.txt")
    with pytest.raises(CorpusError, match="binary"):
        decode_bytes(b"abc\x00def", "upload.txt")
    with pytest.raises(CorpusError, match="bad byte at offset 3"):
        decode_bytes(b"abc\xc3\x28", "upload.txt")
    with pytest.raises(CorpusError, match="whitespace"):
        decode_bytes("\n \t\u00a0\u2003\n".encode(), "upload.txt")
    assert decode_bytes("caf\u00e9 \u540d\u524d".encode(), "ok.txt") == "caf\u00e9 \u540d\u524d"


def test_corpus_that_is_a_folder_or_unreadable(tmp_path):
    with pytest.raises(CorpusError, match="neither a built-in"):
        load_corpus(str(tmp_path))
    with pytest.raises(CorpusError, match="neither a built-in"):
        load_corpus("no-such-builtin")
    secret = tmp_path / "secret.txt"
    secret.write_text("hello " * 100)
    secret.chmod(0)
    try:
        if os.geteuid() != 0:  # root reads it regardless of the mode
            with pytest.raises(CorpusError, match="cannot read corpus"):
                load_corpus(str(secret))
    finally:
        secret.chmod(0o644)


# ---- hyperparameters ----
@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("small") / "c.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    return path


@pytest.mark.parametrize("args, message", [
    (("--batch-size", "0"), "batch_size must be a positive whole number"),
    (("--max-iters", "-5"), "max_iters"),
    (("--n-head", "0"), "n_head"),
    (("--n-embd", "-8"), "n_embd"),
    (("--block-size", "0"), "block_size"),
    (("--dropout", "1.5"), "dropout"),
    (("--dropout", "nan"), "dropout"),
    (("--eval-interval", "0"), "eval_interval"),
    (("--grad-accum", "0"), "grad_accum"),
    (("--warmup-iters", "-1"), "warmup_iters"),
    (("--lr", "0"), "lr must be in (0, 1]"),
    (("--lr", "inf"), "lr must be in (0, 1]"),
    (("--min-lr", "0.5"), "min_lr"),
    (("--beta2", "1.0"), "beta2"),
    (("--weight-decay", "-1"), "weight_decay"),
    (("--n-embd", "100", "--n-head", "3"), "divisible by n_head"),
    (("--snapshot-interval", "7", "--eval-interval", "5"), "multiple of eval_interval"),
    (("--tokenizer", "bpe", "--vocab-size", "10"), "at least 256"),
    (("--block-size", "4096"), "block_size 4096 needs at least"),
    (("--preset", "huge"), "unknown preset"),
    (("--device", "cuda:7"), "CUDA is not available"),
    (("--dtype", "float16"), "float16 training needs CUDA"),
])
def test_bad_hyperparameters_are_refused_and_change_nothing(tmp_path, capsys, small_corpus, args, message):
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    refused(capsys, ["--corpus", str(small_corpus), "--out", str(out), "--block-size", "32", *args], message)
    assert not out.exists()


def test_absurd_sizes_are_refused_with_the_memory_estimate(tmp_path, capsys, small_corpus):
    out = tmp_path / "run"
    args = ["--n-layer", "64", "--n-head", "64", "--n-embd", "8192", "--block-size", "512", "--batch-size", "64"]
    err = refused(capsys, ["--corpus", str(small_corpus), "--out", str(out), *args], "GB of memory is available")
    cfg = GPTConfig(vocab_size=CharTokenizer.train(small_corpus.read_text()).vocab_size, n_layer=64, n_head=64,
                    n_embd=8192, block_size=512)
    dtype = trainer.resolve_dtype("auto", torch.device("cpu"))
    est = memory_estimate(cfg, 64, 2 if dtype == torch.bfloat16 else 4)["total_bytes"]
    assert f"needs about {est / 2**30:.1f} GB" in err
    assert not out.exists()


def test_memory_check_compares_with_what_the_machine_has(monkeypatch):
    available = train_cli.available_memory_bytes()
    assert available is None or available > 0
    cfg, tcfg = GPTConfig(vocab_size=65), trainer.TrainConfig()
    monkeypatch.setattr(train_cli, "available_memory_bytes", lambda: 10 * 2**20)  # a 10 MB machine
    with pytest.raises(trainer.TrainError, match="only 0.0 GB"):
        train_cli.check_memory(GPTConfig(vocab_size=65, n_embd=512, n_head=8), tcfg, torch.device("cpu"), torch.float32)
    monkeypatch.setattr(train_cli, "available_memory_bytes", lambda: 64 * 2**30)
    train_cli.check_memory(cfg, tcfg, torch.device("cpu"), torch.float32)  # fits: no error


def test_out_that_is_a_file(tmp_path, capsys, small_corpus):
    out = tmp_path / "file"
    out.write_text("not a folder")
    refused(capsys, ["--corpus", str(small_corpus), "--out", str(out)], "is a file, not a folder")
    assert out.read_text() == "not a folder"


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    refused(capsys, ["--out", str(tmp_path), "--resume"], "no config.json")


# ---- prompts ----
@pytest.fixture(scope="module")
def char_model():
    torch.manual_seed(0)
    tok = CharTokenizer.train("abcdefgh \n")
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8)).eval(), tok


def test_prompt_longer_than_block_size_uses_its_last_block(char_model):
    model, tok = char_model
    long_prompt = "abcdefgh " * 5  # 45 characters, block_size 8
    full = generate_text(model, tok, long_prompt, max_new_tokens=10, greedy=True)
    tail = generate_text(model, tok, long_prompt[-8:], max_new_tokens=10, greedy=True)
    assert full == tail and len(full) == 10


@pytest.mark.parametrize("prompt, error, message", [
    ("", GenerationError, "empty"),
    ("abc\u00e9", UnknownCharactersError, "'\u00e9'"),
    ("ab\x1b[2J\x07", UnknownCharactersError, r"'\x1b'"),
    ("\x00", UnknownCharactersError, r"'\x00'"),
])
def test_bad_prompts(char_model, prompt, error, message):
    model, tok = char_model
    with pytest.raises(error) as info:
        list(stream_text(model, tok, prompt, 5))
    assert message in str(info.value)
    assert "\x1b" not in str(info.value) and "\x00" not in str(info.value)  # shown escaped, never raw


def test_control_characters_are_ordinary_bytes_to_bpe():
    tok = BPETokenizer.train("plain text with tabs\tand bells " * 20, 260)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8)).eval()
    prompt = "bell\x07 escape\x1b[31m nul\x00 \U0001F600"
    assert tok.decode(tok.encode(prompt)) == prompt
    assert len(list(stream_text(model, tok, prompt, 5, seed=1))) == 5


@pytest.mark.parametrize("args, message", [
    (["--prompt", ""], "empty"),
    (["--prompt", "caf\u00e9 \u540d"], "'\u540d'"),
    (["--prompt", "x\x1b]0;pwned\x07"], r"'\x1b'"),
    (["--max-new-tokens", "-1"], "max_new_tokens"),
    (["--temperature", "0"], "temperature"),
    (["--temperature", "nan"], "temperature"),
    (["--top-k", "0"], "top_k"),
    (["--top-p", "1.5"], "top_p"),
    (["--top-p", "nan"], "top_p"),
    (["--step", "12345"], "missing"),
])
def test_sample_cli_refuses_bad_prompts_and_settings(tiny_run, capsys, args, message):
    err = refused(capsys, [str(tiny_run), *args], message, module=sample)
    assert "\x1b" not in err


def test_sample_cli_with_a_prompt_longer_than_block_size(tiny_run, capsys):
    prompt = "First Citizen:\n" * 20  # 300 characters, block_size 32
    assert sample.main([str(tiny_run), "--prompt", prompt, "--max-new-tokens", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith(prompt)


# ---- checkpoints ----
@pytest.fixture
def run_copy(tmp_path, tiny_run) -> Path:
    path = tmp_path / "copy"
    shutil.copytree(tiny_run, path)
    return path


class WritesMarker:
    """A pickle payload: unpickling it creates the marker file (what an attacker's code would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_a_pickle_renamed_to_safetensors_is_never_executed(tmp_path, run_copy, capsys):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({"wte.weight": WritesMarker(marker)})
    pickle.loads(payload)  # the payload is live: unpickling it does write the marker ...
    assert marker.exists()
    marker.unlink()
    torch_zip = tmp_path / "torch.pt"
    torch.save({"state": WritesMarker(marker)}, torch_zip)  # and a torch.save zip (also pickle inside)
    for evil in (payload, torch_zip.read_bytes()):
        for target, step in ((run_copy / runs.WEIGHTS, None), (runs.snapshot_path(run_copy, 20), 20)):
            original = target.read_bytes()
            target.write_bytes(evil)
            with pytest.raises(RunError, match="corrupt"):
                load_run(run_copy, step=step)
            target.write_bytes(original)
        (run_copy / runs.RESUME).write_bytes(evil)
        refused(capsys, ["--out", str(run_copy), "--resume", "--quiet"], "resume.safetensors is unreadable")
    assert not marker.exists()  # ... but nothing here ever unpickled it


def test_every_loader_works_with_unpickling_made_impossible(run_copy, monkeypatch):
    """pickle and torch.load raise here: the run's weights, a snapshot, the trainer's resume state and the shipped
    model's feature dictionaries and transcoders still load, since the library reads only safetensors and JSON (a
    payload in any of them can never run; see the test above)."""
    from gpt.interp.circuits import load_transcoders
    from gpt.interp.features.dictionary import list_dictionaries

    def unpickle(*args, **kwargs):
        raise AssertionError("the library tried to unpickle")
    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, unpickle)
    assert load_run(run_copy).step == 60 and load_run(run_copy, step=20).step == 20
    assert train_cli.main(["--out", str(run_copy), "--resume", "--max-iters", "62", "--eval-interval", "1000",
                           "--quiet"]) == 0
    assert load_run(run_copy).step == 62   # resumed from resume.safetensors, trained on, saved
    shipped = Path(__file__).resolve().parent.parent / "checkpoints" / "shakespeare-char"
    run = load_run(shipped)
    loaded, broken = list_dictionaries(shipped, run.config)
    assert len(loaded) == 5 and not broken, broken
    assert len(load_transcoders(shipped, run.model)) == run.config.n_layer


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b[:-7], "corrupt"),
    (lambda b: b[:8], "corrupt"),
    (lambda b: b"", "corrupt"),
    (lambda b: os.urandom(4096), "corrupt"),
    (lambda b: b[:8] + b"}" + b[9:], "corrupt"),  # a damaged JSON header
])
def test_truncated_and_corrupt_weights(run_copy, mangle, message):
    weights = run_copy / runs.WEIGHTS
    weights.write_bytes(mangle(weights.read_bytes()))
    with pytest.raises(RunError, match=message):
        load_run(run_copy)


def _edit_config(run: Path, edit) -> None:
    cfg = json.loads((run / runs.CONFIG).read_text())
    edit(cfg)
    (run / runs.CONFIG).write_text(json.dumps(cfg))


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("model"), "'model' section"),
    (lambda c: c["model"].update(n_layer=True), "n_layer must be int"),
    (lambda c: c["model"].update(n_layer=-2), "n_layer must be a positive"),
    (lambda c: c["model"].update(dropout="0.1"), "dropout must be float"),
    (lambda c: c["model"].update(arch="transformer-xl"), "arch must be one of"),
    (lambda c: c["model"].update(secret_key=1), "unknown keys"),
    (lambda c: c["model"].pop("n_embd"), "does not match config.json"),  # a default that is wrong for the file
    (lambda c: c["train"].update(batch_size="12"), "batch_size must be int"),
    (lambda c: c.update(train=[1, 2]), "must be a JSON object"),
    # absurd sizes: refused from the file header before anything is allocated
    (lambda c: c["model"].update(n_layer=10**6, n_embd=2**20, n_head=64, block_size=10**7), "does not match config.json"),
])
def test_bad_config_json(run_copy, edit, message):
    _edit_config(run_copy, edit)
    with pytest.raises(RunError, match=message):
        load_run(run_copy)


@pytest.mark.parametrize("text, message", [
    ("{not json", "cannot read tokenizer"),
    (json.dumps([1, 2]), "JSON object"),
    (json.dumps({"kind": "sentencepiece"}), "unknown kind"),
    (json.dumps({"kind": "bpe", "vocab": ["00"], "merges": [[0, 0, 9]]}), "outside the vocabulary"),
    (json.dumps({"kind": "char"}), "malformed"),
])
def test_bad_tokenizer_json(run_copy, text, message):
    (run_copy / runs.TOKENIZER).write_text(text)
    with pytest.raises(RunError, match=message):
        load_run(run_copy)


def test_config_json_that_is_not_json(run_copy):
    (run_copy / runs.CONFIG).write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(RunError, match="not valid JSON"):
        load_run(run_copy)
    (run_copy / runs.CONFIG).unlink()
    with pytest.raises(RunError, match="is it a run folder"):
        load_run(run_copy)
    assert runs.run_summary(run_copy) is None  # and the run list simply leaves it out


# ---- run names ----
NAMES = ["../x", "/etc/passwd", "", "..", ".", "a/../../b", "x" * 10_000, "\u00fcn\u00efc\u00f8d\u00e9 \u540d\u524d",
         "...", "~", "~root", "..\\..\\windows", "a\x00b", "a\nb", " ", "/", "%2e%2e%2f", "\u202eexe.txt",
         "\U0001F600", "CON", "-rf", "$(reboot)", "C:\\x"]


@pytest.mark.parametrize("name", NAMES)
def test_run_names_stay_inside_checkpoints(tmp_path, name):
    try:
        path = runs.run_path(name, tmp_path)
    except RunError as e:
        assert "no usable characters" in str(e)
        return
    assert path.parent == tmp_path.resolve()
    assert 0 < len(path.name) <= 64
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in path.name)
    assert not path.name.startswith((".", "-"))


def test_run_name_through_a_symlink_is_refused(tmp_path):
    root = tmp_path / "checkpoints"
    root.mkdir()
    (root / "evil").symlink_to(tmp_path)
    with pytest.raises(RunError, match="would leave"):
        runs.run_path("evil", root)



def test_compile_without_a_cpp_compiler_is_refused(tmp_path, capsys, small_corpus, monkeypatch):
    monkeypatch.setattr(train_cli.shutil, "which", lambda name: None)
    out = tmp_path / "run"
    refused(capsys, ["--corpus", str(small_corpus), "--out", str(out), "--compile", "--device", "cpu",
                     "--max-iters", "2"], "needs a C++ compiler")
    assert not out.exists()
