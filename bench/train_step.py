"""Training ms/step on nanoGPT's CPU recipe: our Trainer vs HF transformers GPT2LMHeadModel, in the same run.

    .venv/bin/python bench/train_step.py [--rounds 7] [--steps 10] [--quality-steps 300] [--threads N]

Shape: 4 layers, 4 heads, 128 wide, block 64, batch 12, char vocab of tiny Shakespeare (65), dropout 0.
Every variant starts from the same weights (HF's are copied from ours and checked on logits), sees the same
batches, and uses AdamW (fused, decay on matrices only, betas 0.9/0.99) with grad clipping at 1.0.
Ours is timed through `Trainer.train_step`, the code `python -m gpt.train` runs:
* fp32;
* bf16 as `--dtype auto` picks it on CPUs with native bf16: a bf16 working copy with fp32 master weights
  (gpt/training/precision.py);
* bf16 via plain autocast, the previous path, for reference.
Repetitions are interleaved so that load from other processes hits every variant alike.
Then a quality check: fp32 and bf16 each train --quality-steps steps from the same start on the same batches,
and their val losses (20 fixed batches, fp32 evaluation) are compared. Target: ours / HF <= 0.5.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from common import hf_trainer, hf_twin, interleaved, machine, median, shakespeare, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    p.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    p.add_argument("--quality-steps", type=int, default=300, help="0 skips the bf16-vs-fp32 loss check")
    p.add_argument("--cpu-time", action="store_true", help="time in process CPU seconds (use with --threads 1 "
                   "on a busy machine)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="also time the trainer with --compile (torch.compile)")
    p.add_argument("--profile", action="store_true", help="also profile 20 steps of ours and of HF: where the time goes")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from gpt.config import preset
    from gpt.data import get_batch, split_ids
    from gpt.model import GPT
    from gpt.tokenizers import CharTokenizer
    from gpt.training.trainer import Trainer, resolve_dtype
    text = shakespeare()
    tokenizer = CharTokenizer.train(text)
    splits = split_ids(tokenizer.encode(text), 64)
    model_cfg, train_cfg = preset("nanogpt-cpu")
    model_cfg.vocab_size = tokenizer.vocab_size
    cpu = torch.device("cpu")
    auto = resolve_dtype("auto", cpu)
    torch.manual_seed(0)
    reference = GPT(model_cfg)

    def our_trainer(dtype, autocast=False, compile=False):
        model = GPT(model_cfg)
        model.load_state_dict(reference.state_dict())
        cfg = dataclasses.replace(train_cfg, compile=compile)
        trainer = Trainer(model, tokenizer, splits.train, splits.val, cfg, None, cpu, dtype)
        if autocast:
            trainer.low_precision = None  # fall back to torch.autocast
        return trainer

    trainers = {"ours fp32": our_trainer(torch.float32)}
    if auto == torch.bfloat16:
        trainers["ours bf16 (--dtype auto)"] = our_trainer(torch.bfloat16)
        trainers["ours bf16 via autocast"] = our_trainer(torch.bfloat16, autocast=True)
    if args.compile:
        compiled = our_trainer(auto, compile=True)
        t0 = time.perf_counter()
        compiled.train_step()  # the one-off compile
        print(f"--compile: first step (compiling) took {time.perf_counter() - t0:.1f} s")
        trainers["ours --dtype auto --compile"] = compiled
    fns = {name: t.train_step for name, t in trainers.items()}
    hf = hf_twin(reference)
    fns["HF GPT2LMHeadModel fp32"] = hf_trainer(hf, splits.train, train_cfg, model_cfg.block_size)
    interleaved(fns, 1, 3)  # warm-up
    times = interleaved(fns, args.rounds, args.steps, args.cpu_time)
    hf_ms = 1000 * median(times["HF GPT2LMHeadModel fp32"])
    tokens = train_cfg.batch_size * model_cfg.block_size
    rows = [[name, 1000 * median(t), 1000 * min(t), tokens / median(t), f"{1000 * median(t) / hf_ms:.2f}"]
            for name, t in times.items()]
    print(f"training step, nanoGPT CPU recipe ({reference.num_params():,} params, batch 12 x block 64); "
          f"{machine(args.cpu_time)}; --dtype auto -> {str(auto).replace('torch.', '')}")
    print(table(["variant", "ms/step (median)", "ms/step (best)", "tokens/s", "vs HF"], rows))
    best = "ours bf16 (--dtype auto)" if auto == torch.bfloat16 else "ours fp32"
    ratio = 1000 * median(times[best]) / hf_ms
    print(f"target: {best} / HF <= 0.5 -> {'met' if ratio <= 0.5 else 'NOT met'} ({ratio:.2f})")

    if args.profile:
        profile_steps({"ours fp32": fns["ours fp32"], "HF fp32": fns["HF GPT2LMHeadModel fp32"]},
                      6 * reference.num_params() * tokens)

    if args.quality_steps and auto == torch.bfloat16:
        gen = torch.Generator().manual_seed(4242)
        val = [get_batch(splits.val, 64, 12, gen) for _ in range(20)]
        rows = []
        for name, dtype in (("fp32", torch.float32), ("bf16 (--dtype auto)", torch.bfloat16)):
            trainer = our_trainer(dtype)
            for _ in range(args.quality_steps):
                trainer.train_step()
            trainer.model.eval()
            with torch.no_grad():
                loss = sum(trainer.model(x, y)[1].item() for x, y in val) / len(val)
            rows.append([name, loss])
        gap = rows[1][1] - rows[0][1]
        print(f"\nquality: val loss after {args.quality_steps} steps from the same start, same batches")
        print(table(["precision", "val loss"], rows))
        print(f"bf16 - fp32 = {gap:+.4f} ({'close' if abs(gap) < 0.03 else 'NOT close'}: threshold 0.03)")


# op name -> group, for the profile's summary (first match wins)
OP_GROUPS = [("matmuls", ("addmm", "mm", "bmm", "matmul", "linear")),
             ("attention kernel", ("scaled_dot_product", "_flash_attention", "attention")),
             ("optimizer", ("adam", "_foreach", "clip_grad", "norm")),
             ("embedding / loss", ("embedding", "cross_entropy", "nll_loss", "log_softmax")),
             ("elementwise", ("gelu", "add", "mul", "div", "layer_norm", "native_layer_norm", "dropout", "copy_",
                              "fill_", "zero_", "sum", "mean", "sub", "pow", "sqrt", "rsqrt"))]


def profile_steps(fns: dict, flops_per_step: float, steps: int = 20) -> None:
    """Self CPU time per op group over `steps` steps of each function (torch.profiler), and the step time the
    matmuls alone would need: the floor no graph-level change reaches at this shape."""
    from torch.profiler import ProfilerActivity, profile
    print(f"\nprofile: {steps} steps each, self CPU time by op group (ms per step); "
          f"{flops_per_step / 1e9:.2f} GFLOP per step (6 x params x tokens)")
    rows = []
    for name, fn in fns.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            wall = (time.perf_counter() - t0) / steps
        totals = {group: 0.0 for group, _ in OP_GROUPS} | {"other ops": 0.0}
        count = 0
        for event in prof.key_averages():
            if not event.key.startswith("aten::"):
                continue
            count += event.count
            op = event.key[len("aten::"):]
            group = next((g for g, keys in OP_GROUPS if any(k in op for k in keys)), "other ops")
            totals[group] += event.self_cpu_time_total / 1000 / steps
        rows.append([name, 1000 * wall, *totals.values(), count // steps])
        print(f"  {name}: top ops by self CPU time")
        for event in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]:
            print(f"    {event.key:40s} {event.self_cpu_time_total / 1000 / steps:7.2f} ms/step  x{event.count // steps}")
    print(table(["variant", "wall ms/step (profiled)", *[g for g, _ in OP_GROUPS], "other ops", "aten ops/step"], rows))


if __name__ == "__main__":
    main()
