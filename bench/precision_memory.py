"""Precision and memory on CPU: peak memory and step time with and without gradient checkpointing, and fp32 vs
bf16 step time and loss after the same steps, for nanoGPT's 6-layer 384-wide model at block 256.

Every configuration runs in its own subprocess, so its peak resident memory (getrusage ru_maxrss) is its own:
we print the peak and the growth from "model + data ready" to the peak (weights' grads, AdamW moments and
activations), next to gpt.model.memory_estimate for the same configuration. All configurations train the same
model from the same seed on the same batches through gpt.train.Trainer, so their losses are comparable.

    .venv/bin/python bench/precision_memory.py [--steps 8] [--batch-size 8] [--threads 2] [--gpt2]

--gpt2 adds two optimizer steps of the 124M `gpt2` preset (batch 1, block 1024) to check its estimate.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = {  # name -> (dtype, grad_checkpoint)
    "fp32": ("float32", False),
    "fp32+ckpt": ("float32", True),
    "bf16": ("bfloat16", False),
    "bf16+ckpt": ("bfloat16", True),
}


def rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def corpus_ids(vocab_size: int | None = None):
    """Char ids of tiny Shakespeare (shipped with the package); random ids for vocab_size."""
    import torch

    from gpt.data import tiny_shakespeare
    from gpt.tokenizers import CharTokenizer
    if vocab_size is not None:  # the gpt2 shape: any ids will do for memory and time
        return torch.randint(vocab_size, (200_000,), generator=torch.Generator().manual_seed(0)), vocab_size
    text = tiny_shakespeare()
    tok = CharTokenizer.train(text)
    return torch.tensor(tok.encode(text), dtype=torch.long), tok


def worker(spec: dict) -> dict:
    """One configuration: build, train `steps` steps, report times, losses and memory."""
    import torch
    torch.set_num_threads(spec["threads"])
    from gpt.config import GPTConfig, TrainConfig, preset
    from gpt.data import split_ids
    from gpt.model import GPT
    from gpt.sizing import memory_estimate
    from gpt.training.trainer import Trainer
    if spec["model"] == "gpt2":
        model_cfg, _ = preset("gpt2")
        ids, tok = corpus_ids(model_cfg.vocab_size)
    else:
        ids, tok = corpus_ids()
        model_cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0)
    train_cfg = TrainConfig(batch_size=spec["batch_size"], max_iters=spec["steps"], lr=1e-3, warmup_iters=0,
                            eval_iters=spec["eval_iters"], grad_checkpoint=spec["ckpt"], dtype=spec["dtype"], seed=1)
    splits = split_ids(ids, model_cfg.block_size)
    torch.manual_seed(0)
    model = GPT(model_cfg)
    dtype = getattr(torch, spec["dtype"])
    trainer = Trainer(model, tok, splits.train, splits.val, train_cfg, None, torch.device("cpu"), dtype)
    ready = rss_peak_bytes()
    times, losses = [], []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        loss, _ = trainer.train_step()
        times.append(time.perf_counter() - t0)
        losses.append(loss)
    peak = rss_peak_bytes()
    val = trainer.evaluate()["val"] if spec["eval_iters"] else float("nan")  # evaluation runs in spec dtype
    elem = 2 if spec["dtype"] == "bfloat16" else 4
    est = memory_estimate(model_cfg, spec["batch_size"], elem, spec["ckpt"])
    return {"step_s": statistics.median(times[1:] if len(times) > 1 else times), "first_step_s": times[0],
            "last_loss": losses[-1], "val_loss": val, "peak_bytes": peak, "ready_bytes": ready,
            "estimate_total": est["total_bytes"], "estimate_states": est["states_bytes"],
            "params": sum(p.numel() for p in model.parameters())}


def run_config(spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mb(n: float) -> str:
    return f"{n / 2**20:8.0f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--eval-iters", type=int, default=4)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    p.add_argument("--gpt2", action="store_true", help="also two steps of the 124M gpt2 preset at batch 1")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    print(f"6 layers x 384 wide, block 256, batch {args.batch_size}, {args.steps} steps, {args.threads} threads; "
          "each configuration in its own process")
    results = {}
    for name in names:
        dtype, ckpt = CONFIGS[name]
        results[name] = run_config(dict(model="nano", dtype=dtype, ckpt=ckpt, steps=args.steps, threads=args.threads,
                                        batch_size=args.batch_size, eval_iters=args.eval_iters))
    print(f"{'config':10} {'step s':>8} {'peak MB':>8} {'growth MB':>9} {'est MB':>8} {'last loss':>9} {'val loss':>8}")
    for name, r in results.items():
        print(f"{name:10} {r['step_s']:8.3f} {mb(r['peak_bytes'])} {mb(r['peak_bytes'] - r['ready_bytes']):>9} "
              f"{mb(r['estimate_total'])} {r['last_loss']:9.4f} {r['val_loss']:8.4f}")
    for base in ("fp32", "bf16"):
        a, b = results.get(base), results.get(base + "+ckpt")
        if a and b:
            print(f"{base}: checkpointing takes {b['step_s'] / a['step_s']:.2f}x the step time and "
                  f"{(b['peak_bytes'] - b['ready_bytes']) / max(1, a['peak_bytes'] - a['ready_bytes']):.2f}x the "
                  "memory growth")
    if "fp32" in results and "bf16" in results:
        a, b = results["fp32"], results["bf16"]
        print(f"bf16 vs fp32: {a['step_s'] / b['step_s']:.2f}x faster per step; loss after {args.steps} steps "
              f"{b['last_loss']:.4f} vs {a['last_loss']:.4f} (val {b['val_loss']:.4f} vs {a['val_loss']:.4f})")
    if args.gpt2:
        r = run_config(dict(model="gpt2", dtype="float32", ckpt=False, steps=2, threads=args.threads, batch_size=1,
                            eval_iters=0))
        print(f"gpt2 preset: {r['params']:,} parameters; the second fp32 step at batch 1 x 1024 (AdamW moments "
              f"alive) took {r['step_s']:.1f} s; "
              f"peak RSS {mb(r['peak_bytes']).strip()} MB (growth {mb(r['peak_bytes'] - r['ready_bytes']).strip()} MB"
              f" on top of {mb(r['ready_bytes']).strip()} MB with weights loaded) vs memory_estimate "
              f"{mb(r['estimate_total']).strip()} MB (of which weights+grads+AdamW {mb(r['estimate_states']).strip()})")


if __name__ == "__main__":
    main()
