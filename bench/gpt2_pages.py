"""Every page of the app on a GPT-2-small-shaped model (issue 21): 12 layers x 12 heads x 768, block 1024, a byte-level
BPE of 50,257 tokens trained here on local text (HF `tokenizers` when installed, else our own BPE), random weights
(nothing can be downloaded), saved as a Hugging Face folder and imported with gpt.hf.gpt2, as a user would.

Each page's default view is timed server-side with AppTest (the app's own script, one torch thread as the app
runs): "first" is the first visit (it fills the caches: vocabulary projection, evaluation text, head scores, ...),
"again" a rerun of the same page (what every later interaction costs), each in wall seconds and in this process's
CPU seconds (on a shared machine wall time mostly measures the crowd; with one thread, CPU time is the work).
A page whose full computation is big asks first (a button naming its cost): the table says so, and the bench
presses it and times the scan ("asked scan", progress bar included). Also: the import,
the model's load from safetensors, and the process's resident memory.

usage: python bench/gpt2_pages.py [--work DIR] [--pages inside,embeddings,...] [--layers 12 --embd 768 ...]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, machine, table


def local_text() -> str:
    """Text on this machine to train the BPE on: both built-in corpora and the Python standard library's sources
    (a 50,257-token vocabulary needs a few MB of varied text to reach its size)."""
    import sysconfig

    from gpt.data import python_docs, tiny_shakespeare
    parts = [tiny_shakespeare(), python_docs()]
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))[:3000]:
        try:
            parts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return "\n".join(parts)


def train_bpe(vocab_size: int, scratch: Path):
    """(a byte-level BPE of vocab_size tokens ending in <|endoftext|>, how it was trained) on local_text()."""
    from gpt.hf import gpt2 as hf
    text = local_text()
    try:
        from tokenizers import ByteLevelBPETokenizer
    except ImportError:   # our own BPE: slower to train, same format
        return hf.train_gpt2_tokenizer(text[:3_000_000], vocab_size), "our BPE"
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([text], vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    scratch.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(scratch))          # vocab.json + merges.txt, GPT-2's format
    return hf.read_gpt2_tokenizer(scratch), "HF tokenizers"


def build(run: Path, args) -> None:
    """Train the BPE, write the HF folder beside the run and import it into `run` (once per work dir and shape)."""
    from gpt.config import GPTConfig
    from gpt.hf import gpt2 as hf
    from gpt.model import GPT
    work = run.parent.parent
    t0 = time.perf_counter()
    tokenizer, how = train_bpe(args.vocab, work / f"bpe-{args.vocab}")
    print(f"BPE of {tokenizer.vocab_size:,} tokens trained with {how} in {time.perf_counter() - t0:.1f} s")
    cfg = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=args.block, n_layer=args.layers, n_head=args.heads,
                    n_embd=args.embd, dropout=0.0, bias=True, arch="gpt", activation="gelu_tanh").validate()
    torch.manual_seed(0)
    folder = hf.save_gpt2_folder(GPT(cfg).eval(), tokenizer, work / f"hf-{run.name}")
    t0 = time.perf_counter()
    hf.import_gpt2(folder, run)
    print(f"gpt-hf import: {time.perf_counter() - t0:.1f} s", flush=True)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gpt-explorer-bench-gpt2")
    ap.add_argument("--pages", default="", help="comma-separated page stems (default: every page)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--embd", type=int, default=768)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=50257)
    args = ap.parse_args()
    torch.set_num_threads(1)
    shape = f"{args.layers}x{args.heads}x{args.embd}-b{args.block}-v{args.vocab}"
    run = args.work / "checkpoints" / f"gpt2-random-{shape}"
    if not (run / "model.safetensors").is_file():
        build(run, args)
        # start again in a fresh process: the memory figures must not include the BPE training's
        os.execv(sys.executable, [sys.executable, *sys.argv])
    # cold caches: what an earlier bench run left on disk (neuron scans in the run folder, the app's cache dir)
    import shutil
    for leftover in (run / "interp", args.work / "cache"):
        shutil.rmtree(leftover, ignore_errors=True)
    os.environ["GPT_EXPLORER_CHECKPOINTS"] = str(run.parent)
    os.environ["GPT_EXPLORER_CACHE"] = str(args.work / "cache")

    from streamlit.testing.v1 import AppTest

    # the load alone, in its own process (so its memory is not counted below): wall and CPU seconds
    probe = ("import time, torch; torch.set_num_threads(1); from gpt.runs import load_run; "
             "t, c = time.perf_counter(), time.process_time(); load_run(%r); "
             "print(f'{time.perf_counter() - t:.2f} s wall, {time.process_time() - c:.2f} s CPU')" % str(run))
    load_s = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    views = [v for v in args.pages.split(",") if v] or sorted(p.stem for p in (ROOT / "explorer" / "views").glob("*.py"))
    rss_before = rss_mb()
    at = AppTest.from_file(str(ROOT / "explorer" / "app.py"), default_timeout=1800)
    t0, c0 = time.perf_counter(), time.process_time()
    at.run()   # the landing page (Inside a prediction) with the model's first load
    first_run = f"{time.perf_counter() - t0:.2f} s wall, {time.process_time() - c0:.2f} s CPU"
    rss_loaded = rss_mb()
    rows = []
    for view in views:
        timings = []
        for _ in range(2):
            t0, c0 = time.perf_counter(), time.process_time()
            at.switch_page(f"views/{view}.py").run()
            timings += [time.perf_counter() - t0, time.process_time() - c0]
        problems = [e.message for e in at.exception] + [e.value[:80] for e in at.error]
        asks = [b for b in at.button if "about" in b.label and " s" in b.label]
        note = "; ".join(problems) or ("asks first: " + asks[0].label if asks else "ok")
        asked = ["", ""]
        if asks and not problems:   # press it: the scan itself (progress bar and all), then the view it opens
            t0, c0 = time.perf_counter(), time.process_time()
            asks[0].click().run()
            asked = [f"{time.perf_counter() - t0:.2f}", f"{time.process_time() - c0:.2f}"]
            if at.exception or at.error:
                note += "; after the click: " + "; ".join([e.message for e in at.exception] + [e.value[:80] for e in at.error])
        rows.append([view, *timings, *asked, note])
        print(f"{view:14s} first {timings[0]:7.2f} s (CPU {timings[1]:6.2f})  again {timings[2]:6.2f} s "
              f"(CPU {timings[3]:6.2f})  asked {asked[0] or '-'} s  {note}", flush=True)
    rss_after = rss_mb()
    # a second session (another browser tab) on the same pages: the model and its caches are shared
    second = AppTest.from_file(str(ROOT / "explorer" / "app.py"), default_timeout=1800)
    second.run()
    for view in views:
        second.switch_page(f"views/{view}.py").run()
    second_mb = rss_mb() - rss_after
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"{args.layers}x{args.heads}x{args.embd}, block {args.block}, vocab {args.vocab:,}; {machine()}")
    print(f"model load from safetensors (own process): {load_s}; app's first run (landing page with the model's "
          f"load): {first_run}")
    print(f"resident memory: {rss_before:,.0f} MB before the app's first run (Python, torch, streamlit), "
          f"{rss_loaded:,.0f} MB after it, {rss_after:,.0f} MB after every page; a second session on the same "
          f"pages adds {second_mb:+,.0f} MB; peak {peak:,.0f} MB")
    print(table(["page", "first visit s", "CPU s", "again s", "CPU s", "asked scan s", "CPU s", "errors / notes"], rows))


if __name__ == "__main__":
    main()
