"""Run folders and processes that several test modules build (a support module, not a test module)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

RUNG_TEXT = "To be, or not to be: that is the question.\n"


def make_rung_run(root: Path, arch: str) -> Path:
    """root/<arch>: an untrained 2-layer char model of one ladder rung (written, not trained: instant)."""
    from gpt import runs
    from gpt.config import GPTConfig, TrainConfig
    from gpt.model import GPT
    from gpt.tokenizers import CharTokenizer, save_tokenizer
    tok = CharTokenizer.train(RUNG_TEXT)
    folder = root / arch
    folder.mkdir()
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16, arch=arch)
    runs.write_config(folder, cfg, TrainConfig(max_iters=1), corpus="python-docs", tokenizer="char")
    save_tokenizer(tok, folder / runs.TOKENIZER)
    runs.atomic_save_model(GPT(cfg), folder / runs.WEIGHTS, {"step": "1"})
    return folder


def tiny_and_html_runs(root: Path, tiny_run: Path) -> Path:
    """root holding the tiny run as "tiny" and its markup-character twin (make_html_run) as "tiny-html"."""
    shutil.copytree(tiny_run, root / "tiny")
    make_html_run(tiny_run, root / "tiny-html")
    return root


def make_html_run(source: Path, dest: Path) -> Path:
    """The run at source with 'e' renamed '<' and 'a' renamed '>' (tokenizer and corpus alike): its text is full of
    markup characters that must be shown, never interpreted."""
    shutil.copytree(source, dest)
    tok = json.loads((dest / "tokenizer.json").read_text())
    tok["chars"] = [{"e": "<", "a": ">"}.get(c, c) for c in tok["chars"]]
    (dest / "tokenizer.json").write_text(json.dumps(tok))
    config = json.loads((dest / "config.json").read_text())
    text = open(config["corpus"], encoding="utf-8").read()
    (dest / "corpus-html.txt").write_text(text.replace("e", "<").replace("a", ">"), encoding="utf-8")
    config["corpus"] = str(dest / "corpus-html.txt")
    config.pop("corpus_sha256", None)
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def fake_trainer_process() -> subprocess.Popen:
    """A process whose command line says gpt.train (so runs.pid_is_trainer counts it), once it shows."""
    from gpt import runs
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "gpt.train"])
    deadline = time.monotonic() + 10
    while not runs.pid_is_trainer(proc.pid):   # until exec, /proc shows the parent's command line
        assert time.monotonic() < deadline, "the fake trainer did not start"
        time.sleep(0.01)
    return proc
