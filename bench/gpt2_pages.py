"""Every page of the app on a GPT-2-small-shaped model (issue 21): what a user with GPT-2 on disk gets.

Builds what such a user has — a Hugging Face folder (config.json, model.safetensors, vocab.json, merges.txt) with
GPT-2 small's shape (12 layers x 12 heads x 768, block 1024, 124M parameters; random weights, since nothing can be
downloaded here) and a byte-level BPE trained with HF `tokenizers` on the local corpora (on tiny Shakespeare, the Python
docs and the standard library's sources, to GPT-2's 50,257 tokens) — imports it with gpt.hf.import_gpt2, then opens every page in AppTest and
times each page's default view server-side (first view: caches cold; second: warm), with the process's resident
memory after each. The peer is the shipped Shakespeare model, timed the same way in the same run.

usage: python bench/gpt2_pages.py [--layers 12] [--width 768] [--out /tmp/gpt2-bench]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VIEWS = sorted(p.stem for p in (ROOT / "explorer" / "views").glob("*.py"))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_folder(out: Path, layers: int, width: int, heads: int) -> tuple[Path, int]:
    import torch
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    from gpt.data import python_docs, tiny_shakespeare
    folder = out / "hf-gpt2"
    if (folder / "model.safetensors").exists():
        return folder, json.loads((folder / "config.json").read_text())["vocab_size"]
    folder.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    # Shakespeare and the Python docs give ~17k merges; the standard library's own sources (local, ~20 MB) give
    # enough text for GPT-2's full 50,257
    texts, size = [tiny_shakespeare(), python_docs()], 0
    for path in sorted(Path(os.__file__).parent.rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        texts.append(text)
        size += len(text)
        if size > 20_000_000:
            break
    corpus.write_text("\n".join(texts), encoding="utf-8")
    bpe = ByteLevelBPETokenizer()
    bpe.train([str(corpus)], vocab_size=50_257, min_frequency=2, special_tokens=["<|endoftext|>"])
    bpe.save_model(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    cfg = transformers.GPT2Config(vocab_size=len(vocab), n_positions=1024, n_embd=width, n_layer=layers,
                                  n_head=heads, bos_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|endoftext|>"])
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    return folder, len(vocab)


def time_pages(run_name: str, checkpoints: Path) -> list[dict]:
    from streamlit.testing.v1 import AppTest
    os.environ["GPT_EXPLORER_CHECKPOINTS"] = str(checkpoints)
    rows = []
    at = AppTest.from_file(str(ROOT / "explorer" / "app.py"), default_timeout=900)
    at.session_state["selected_run"] = run_name
    t0 = time.perf_counter()
    at.run()
    rows.append({"page": "(landing + model load)", "cold": time.perf_counter() - t0, "warm": None, "rss": rss_mb(),
                 "errors": [e.value for e in at.error] + [e.message for e in at.exception]})
    for view in VIEWS:
        t0 = time.perf_counter()
        at.switch_page(f"views/{view}.py").run()
        cold = time.perf_counter() - t0
        errors = [e.value for e in at.error] + [e.message for e in at.exception]
        t0 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t0
        rows.append({"page": view, "cold": cold, "warm": warm, "rss": rss_mb(), "errors": errors})
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "gpt2-bench"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import shutil

    import torch
    torch.set_num_threads(args.threads)
    from gpt import hf
    out = Path(args.out)
    t0 = time.perf_counter()
    folder, vocab = build_folder(out, args.layers, args.width, args.heads)
    built = time.perf_counter() - t0
    checkpoints = out / "checkpoints"
    if checkpoints.exists():
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True)
    t0 = time.perf_counter()
    hf.import_gpt2(folder, checkpoints / "gpt2-small")
    imported = time.perf_counter() - t0
    shutil.copytree(ROOT / "checkpoints" / "shakespeare-char", checkpoints / "shakespeare-char")
    from gpt.runs import load_run
    t0 = time.perf_counter()
    run = load_run(checkpoints / "gpt2-small")
    loaded = time.perf_counter() - t0
    params = sum(p.numel() for p in run.model.parameters())
    del run
    print(f"GPT-2-small-shaped folder: {params / 1e6:.1f}M parameters, vocab {vocab:,} (built in {built:.0f} s); "
          f"import {imported:.1f} s; load_run {loaded:.2f} s; torch threads {args.threads}")
    results = {name: time_pages(name, checkpoints) for name in ("gpt2-small", "shakespeare-char")}
    print(f"{'page':24s} {'gpt2 cold s':>11s} {'gpt2 warm s':>11s} {'RSS MB':>8s} {'shipped cold s':>14s} "
          f"{'shipped warm s':>14s}  errors")
    for big, small in zip(results["gpt2-small"], results["shakespeare-char"]):
        warm = f"{big['warm']:.2f}" if big["warm"] is not None else "-"
        swarm = f"{small['warm']:.2f}" if small["warm"] is not None else "-"
        errors = "; ".join(str(e)[:80] for e in big["errors"]) or "-"
        print(f"{big['page']:24s} {big['cold']:11.2f} {warm:>11s} {big['rss']:8.0f} {small['cold']:14.2f} "
              f"{swarm:>14s}  {errors}")


if __name__ == "__main__":
    main()
