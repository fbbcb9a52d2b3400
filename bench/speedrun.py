"""Time to a good model: nanoGPT's CPU recipe and our speedrun presets, whole commands, in the same run.

    .venv/bin/python bench/speedrun.py [--rounds 1] [--long] [--ablations] [--only speedrun]

Each entry is one `python -m gpt.train --corpus tiny-shakespeare --preset NAME --out TMP` command, timed from
launch to exit (imports, corpus, tokenizer, training, checkpoints: what a learner waits for). Afterwards its
validation loss is measured from the saved run folder over the WHOLE validation split (the last 10% of tiny
Shakespeare) in non-overlapping block-size windows, fp32 (gpt/evaluate.py), for the final weights and for every
snapshot, so "time to 1.88" is: the command's overhead outside the training loop + the loop's elapsed time at
the first snapshot that reaches 1.88 (the recipe snapshots every 250 steps: an upper bound at that grain; the
speedrun presets keep only their final weights, so theirs is their whole wall time, or "-" if not reached).

Table 1: the recipe (preset nanogpt-cpu) and the speedrun presets, with each one's ratio to the recipe.
Table 2 (--ablations): the speedrun with each of its techniques switched off in turn, and each option it leaves off
switched on in turn (modded-nanogpt's record logs do this one change at a time): what each one buys here.
Rounds run the entries interleaved, so a busy machine slows them alike; medians are printed, with the load.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import machine, table, train_run

from gpt import runs
from gpt.evaluate import run_validation_loss

TARGETS = (1.88, 1.50)

# the speedrun with one change: (name, extra CLI flags)
ABLATIONS = [
    ("AdamW instead of Muon", ["--optimizer", "adamw"]),
    ("cosine instead of WSD schedule", ["--schedule", "cosine"]),
    ("learned positions instead of rotary", ["--pos-embedding", "learned"]),
    ("random instead of zero-init projections", ["--no-zero-init-proj"]),
    # the shape and the optimizer settings this preset changed from the recipe's (one at a time)
    ("the recipe's shape, 4 x 128, 4 heads", ["--n-layer", "4", "--n-embd", "128", "--n-head", "4"]),
    ("4 heads of 24 instead of 3 of 32", ["--n-head", "4"]),
    ("AdamW lr 3e-3 instead of 0.015", ["--lr", "0.003"]),
    ("AdamW betas 0.9/0.99 instead of 0.8/0.95", ["--beta1", "0.9", "--beta2", "0.99"]),
    ("Muon momentum 0.95 instead of 0.9", ["--muon-momentum", "0.95"]),
    # the options the preset leaves off, switched on one at a time
    ("+ QK-norm", ["--qk-norm"]),
    ("+ ReLU^2 instead of GELU", ["--activation", "relu2"]),
    ("+ RMSNorm instead of LayerNorm", ["--norm", "rmsnorm"]),
    ("+ untied head", ["--no-tie-embeddings"]),
    ("+ logit soft-cap 15", ["--logit-softcap", "15"]),
]


def train(preset: str, flags: list[str], tmp: Path) -> dict:
    out = tmp / f"run-{len(list(tmp.iterdir()))}"
    args = ["--corpus", "tiny-shakespeare", "--preset", preset, "--out", str(out), "--quiet", *flags]
    result, wall = train_run(args, f"{sys.executable} -m gpt.train {' '.join(args)} failed")
    overhead = wall - result["elapsed_s"]  # imports, corpus, tokenizer, final checkpoint: outside the loop
    elapsed = {m["step"]: m["elapsed_s"] for m in runs.read_jsonl(out / runs.METRICS) if "val_loss" in m}
    curve = [(overhead + elapsed[s], run_validation_loss(out, step=s)) for s in runs.list_snapshots(out)
             if s in elapsed and s != result["step"]]
    final = run_validation_loss(out)
    curve.append((wall, final))
    reach = {t: next((round(sec, 1) for sec, loss in curve if loss <= t), None) for t in TARGETS}
    return {"wall_s": wall, "val": final, "reach": reach, "steps": result["step"]}


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def summarise(name: str, results: list[dict], recipe: dict | None) -> list:
    wall = statistics.median(r["wall_s"] for r in results)
    val = statistics.median(r["val"] for r in results)
    reach = {t: [r["reach"][t] for r in results] for t in TARGETS}
    reach = {t: (statistics.median(v) if all(x is not None for x in v) else None) for t, v in reach.items()}
    row = [name, results[0]["steps"], fmt(wall), fmt(val, ".3f"), fmt(reach[1.88]), fmt(reach[1.50])]
    if recipe is not None:  # the issue's goals: whole commands' wall time as a ratio to the recipe's
        row.append(fmt(wall / recipe["wall_s"], ".3f"))
        r88 = recipe["reach"][1.88]
        row.append(fmt(reach[1.88] / r88 if reach[1.88] and r88 else None, ".2f"))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--long", action="store_true", help="also the speedrun-long preset (about 5 min)")
    ap.add_argument("--ablations", action="store_true", help="table 2: each speedrun technique off in turn")
    ap.add_argument("--no-recipe", action="store_true", help="skip nanoGPT's recipe (for quick checks)")
    args = ap.parse_args()
    entries = {} if args.no_recipe else {"nanogpt-cpu (recipe)": ("nanogpt-cpu", [])}
    entries["speedrun"] = ("speedrun", [])
    if args.long:
        entries["speedrun-long"] = ("speedrun-long", [])
    if args.ablations:
        entries.update({f"speedrun, {name}": ("speedrun", flags) for name, flags in ABLATIONS})
    results: dict[str, list[dict]] = {name: [] for name in entries}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="gx-speedrun-") as tmp:
        for r in range(args.rounds):
            for name, (preset, flags) in entries.items():
                results[name].append(train(preset, flags, Path(tmp)))
                loads.append(os.getloadavg()[0])
                print(f"round {r + 1} {name}: {results[name][-1]}", file=sys.stderr, flush=True)
    recipe_name = "nanogpt-cpu (recipe)"
    recipe = None
    if recipe_name in results:
        recipe = {"wall_s": statistics.median(x["wall_s"] for x in results[recipe_name]),
                  "reach": {t: statistics.median(x["reach"][t] for x in results[recipe_name])
                            if all(x["reach"][t] is not None for x in results[recipe_name]) else None
                            for t in TARGETS}}
    print(machine())
    print(f"load average (1 min) during the bench: {min(loads):.1f} to {max(loads):.1f}; rounds: {args.rounds}")
    header = ["command (--preset)", "steps", "wall s", "val loss", "s to 1.88", "s to 1.50"]
    main_rows = [summarise(n, results[n], recipe) for n in results if not n.startswith("speedrun, ")]
    print(table(header + (["wall vs recipe", "to-1.88 vs recipe"] if recipe else []), main_rows))
    if args.ablations:
        base = statistics.median(r["val"] for r in results["speedrun"])
        rows = [["speedrun (all on)", fmt(statistics.median(r["wall_s"] for r in results["speedrun"])),
                 fmt(base, ".3f"), "0"]]
        for name, _ in ABLATIONS:
            rs = results[f"speedrun, {name}"]
            val = statistics.median(r["val"] for r in rs)
            rows.append([name, fmt(statistics.median(r["wall_s"] for r in rs)), fmt(val, ".3f"),
                         f"{val - base:+.3f}"])
        print()
        print(table(["speedrun with one change", "wall s", "val loss", "val vs all on"], rows))


if __name__ == "__main__":
    main()
