"""MLP neurons' top contexts over the WHOLE validation split of the shipped model (issue 12: "at most a few
seconds"): `gpt.interp.neurons.top_contexts` in fp32 and in bf16 (what the app uses on a CPU with native bf16)
against the scan it replaced (the same windows through the
inspection path with attention's explicit softmax, top-k over the transposed activations), in the same run,
interleaved, with 1 and 2 torch threads. Also checks both find the same top position for every neuron.

usage: python bench/neurons.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from common import machine, table

from gpt.data import load_corpus, validation_text
from gpt.interp.capture import run_with_cache
from gpt.interp.neurons import top_contexts
from gpt.runs import load_run

RUN = Path(__file__).resolve().parent.parent / "checkpoints" / "shakespeare-char"


@torch.no_grad()
def explicit_scan(model, seq, k=8, per_batch=32):
    """The previous scan: every attention weight materialised (the trace forced the explicit path)."""
    cfg = model.config
    T, L, N = cfg.block_size, cfg.n_layer, 4 * cfg.n_embd
    n = len(seq) // T
    best_v = torch.full((L, N, k), float("-inf"))
    best_p = torch.zeros((L, N, k), dtype=torch.long)
    names = {f"blocks.{i}.mlp.post" for i in range(L)} | {f"blocks.{i}.attn.pattern" for i in range(L)}
    for start in range(0, n, per_batch):
        stop = min(n, start + per_batch)
        cache = run_with_cache(model, seq[start * T:stop * T].view(stop - start, T), names)
        positions = torch.arange(start * T, stop * T)
        for i in range(L):
            acts = cache[f"blocks.{i}.mlp.post"].float().reshape(-1, N).T
            top = torch.topk(acts, k, dim=1)
            mv, mp = torch.cat([best_v[i], top.values], 1), torch.cat([best_p[i], positions[top.indices]], 1)
            keep = torch.topk(mv, k, dim=1)
            best_v[i], best_p[i] = keep.values, mp.gather(1, keep.indices)
    return best_v, best_p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run = load_run(RUN)
    text, _ = load_corpus("tiny-shakespeare")
    seq = torch.tensor(run.tokenizer.encode(validation_text(text)), dtype=torch.long)
    rows, loads = [], [os.getloadavg()[0]]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times = {"ours": [], "ours bf16": [], "explicit": []}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            ours = top_contexts(run.model, seq)
            times["ours"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ours_bf16 = top_contexts(run.model, seq, dtype=torch.bfloat16)
            times["ours bf16"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _, old_p = explicit_scan(run.model, seq)
            times["explicit"].append(time.perf_counter() - t0)
            loads.append(os.getloadavg()[0])
        same = (ours.positions[..., 0] == old_p[..., 0]).float().mean().item()
        same_bf16 = (ours_bf16.positions[..., 0] == old_p[..., 0]).float().mean().item()
        o, b, e = (statistics.median(times[k]) for k in ("ours", "ours bf16", "explicit"))
        rows.append([f"{threads} thread(s)", f"{ours.n_tokens:,}", f"{o:.2f}", f"{b:.2f}", f"{e:.2f}", f"{o / e:.2f}",
                     f"{b / e:.2f}", f"{same:.1%}", f"{same_bf16:.1%}"])
    print(machine())
    print(f"load average (1 min) during the bench: {min(loads):.1f} to {max(loads):.1f}; rounds: {args.rounds}; "
          f"shipped model {run.config.n_layer} x {run.config.n_head} x {run.config.n_embd}, block {run.config.block_size}")
    print(table(["torch threads", "tokens scanned", "ours fp32 s", "ours bf16 s", "explicit-attention scan s",
                 "fp32 ratio", "bf16 ratio", "same top (fp32)", "same top (bf16)"], rows))


if __name__ == "__main__":
    main()
