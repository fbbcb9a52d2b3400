"""Activation patching speed: the full residual grid (layer boundaries x positions) for the shipped model
(checkpoints/shakespeare-char: 4 layers x 6 heads, 192 wide) on a 64-token prompt; target <= 2 s.

    .venv/bin/python bench/patching.py [--rounds 3] [--threads N] [--cpu-time]

Ours (gpt.interp.patch_residual: every cell a batch row, each row starting at the first block it patches) is
timed against the plain way, one forward pass per cell through the same Trace interventions, interleaved.
Also times the heads grid and the MLP row (what the Patching page computes on top).
"""
from __future__ import annotations

import argparse

import torch
from common import ROOT, interleaved, machine, median

PROMPT = "JULIET:\nAy me!\n\nROMEO:\nShe speaks.\n\nJULIET:\nO Romeo!\n\nROMEO:\nI am here.\n\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--cpu-time", action="store_true", help="time in process CPU seconds (busy machine)")
    p.add_argument("--no-peer", action="store_true", help="skip the slow one-forward-per-cell peer")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from gpt.interp.capture import run_with_cache
    from gpt.interp.patching import patch_heads, patch_mlps, patch_residual, residual_points
    from gpt.model import Trace
    from gpt.runs import load_run
    run = load_run(ROOT / "checkpoints" / "shakespeare-char")
    model, tok = run.model, run.tokenizer
    clean = tok.encode(PROMPT)[-64:]
    corrupted = tok.encode(PROMPT.replace("JULIET", "BRUTUS"))[-64:]
    answer, wrong = tok.encode("J")[0], tok.encode("B")[0]
    points = residual_points(model)

    @torch.no_grad()
    def one_forward_per_cell():
        clean_cache = run_with_cache(model, clean, set(points))
        for name in points:
            for t in range(len(clean)):
                def paste(x, name=name, t=t):
                    x = x.clone()
                    x[:, t] = clean_cache[name][:, t]
                    return x
                model(torch.tensor([corrupted]), trace=Trace(set(), {name: paste}))

    fns = {"patch_residual (batched)": lambda: patch_residual(model, clean, corrupted, answer, wrong),
           "one forward per cell": one_forward_per_cell,
           "patch_heads": lambda: patch_heads(model, clean, corrupted, answer, wrong),
           "patch_mlps": lambda: patch_mlps(model, clean, corrupted, answer, wrong)}
    if args.no_peer:
        del fns["one forward per cell"]
    times = interleaved(fns, args.rounds, cpu_time=args.cpu_time)
    print(f"# {machine(args.cpu_time)}")
    print(f"# shipped model, {len(clean)}-token prompt, grid {len(points)} x {len(clean)} = "
          f"{len(points) * len(clean)} patches")
    for name, ts in times.items():
        print(f"{name:28s} median {median(ts):6.2f} s   (min {min(ts):.2f}, max {max(ts):.2f})")
    if "one forward per cell" in times:
        ratio = median(times["one forward per cell"]) / median(times["patch_residual (batched)"])
        print(f"batched grid is {ratio:.1f}x faster than one forward per cell")
    print(f"target <= 2 s: {'met' if median(times['patch_residual (batched)']) <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
