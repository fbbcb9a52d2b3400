"""How fast this machine trains a given shape: a few real training steps, timed.

The Train form shows an expected wall time before Start. A formula from FLOPs alone is off by 10x either way on
a CPU (small matrices use a fraction of the peak; a busy machine gives less), so the form times the trainer's
own step (gpt.train.Trainer: same optimizer, precision path and batch shape) on random tokens, in a separate
process (`python -m gpt.training.calibrate`) with the trainer's thread count, so the UI neither blocks its own threads
nor pays for the imports twice. The numbers describe this machine at the moment of measuring.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from gpt.config import ConfigError, GPTConfig, TrainConfig
from gpt.model import GPT
from gpt.training.trainer import Trainer, resolve_device, resolve_dtype


def time_training(model_cfg: GPTConfig, train_cfg: TrainConfig, steps: int = 5, warmup: int = 2,
                  min_timed_s: float = 1.0, max_steps: int = 20) -> dict:
    """Seconds per optimizer step and per evaluation forward pass at this shape, measured here.

    The first `warmup` steps are not counted: the optimizer creates its state on the first step, and kernels are
    picked and memory allocated on first use. Then at least `steps` steps are timed one by one, more (up to
    max_steps) until min_timed_s has passed, and step_s is their median. The mean of 3 steps after 1 warm-up
    said 74 s for a bf16 run that took 54.5 s (issue 22): early bf16 steps are slower than later ones (on an
    AVX2 host 4.6-6.7 s, then a steady 3.6 s), and one step slowed by a neighbour moves a mean of 3 but not a
    median of 5 or more."""
    model_cfg.validate()
    train_cfg.validate()
    device = resolve_device(train_cfg.device)
    dtype = resolve_dtype(train_cfg.dtype, device)
    torch.manual_seed(0)
    model = GPT(model_cfg).to(device)
    # random ids: the time of a step does not depend on which tokens it sees
    ids = torch.randint(model_cfg.vocab_size, (model_cfg.block_size * max(4, train_cfg.batch_size) + 1,))
    # no run folder: the trainer writes nothing (no samples, so no tokenizer is needed)
    trainer = Trainer(model, None, ids, ids, train_cfg, None, device, dtype)
    for _ in range(warmup):
        trainer.train_step()
    step_times: list[float] = []
    while len(step_times) < steps or (sum(step_times) < min_timed_s and len(step_times) < max_steps):
        t0 = time.perf_counter()
        trainer.train_step()
        step_times.append(time.perf_counter() - t0)
    step_s = statistics.median(step_times)
    model.eval()
    x = ids[:model_cfg.block_size * train_cfg.batch_size].view(train_cfg.batch_size, model_cfg.block_size)
    with torch.no_grad(), trainer.autocast():
        model(x, x)
        t0 = time.perf_counter()
        model(x, x)
        eval_batch_s = time.perf_counter() - t0
    # steps_run: every step taken, warm-up included (what the caller subtracts from this process's wall time)
    return {"step_s": step_s, "eval_batch_s": eval_batch_s, "steps_run": warmup + len(step_times),
            "threads": torch.get_num_threads(), "dtype": str(dtype).replace("torch.", "")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpt.training.calibrate",
                                description="Time a few training steps of a shape; prints one JSON line.")
    p.add_argument("--model", required=True, help="GPTConfig as JSON")
    p.add_argument("--train", required=True, help="TrainConfig as JSON")
    p.add_argument("--steps", type=int, default=5, help="at least this many timed steps (after 2 warm-up steps)")
    p.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model_cfg = GPTConfig.from_dict(json.loads(args.model))
        train_cfg = TrainConfig.from_dict(json.loads(args.train))
        result = time_training(model_cfg, train_cfg, steps=max(1, args.steps))
    except (ConfigError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0

if __name__ == "__main__":
    sys.exit(main())
