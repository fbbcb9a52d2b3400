"""Shared helpers for the benchmarks: the corpus, timing and table printing.

Every benchmark times our code and its peer in the same process, interleaving their repetitions so that
noise from other processes on the machine hits both sides alike, and prints the ratio.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shakespeare() -> str:
    """Tiny Shakespeare, from the copy shipped inside the package."""
    from gpt.data import tiny_shakespeare
    return tiny_shakespeare()


def train_run(args: list[str], failure: str) -> tuple[dict, float]:
    """`python -m gpt.train *args` from the repository root: (the JSON line it ends with, wall seconds); SystemExit
    with `failure` and the end of its stderr when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gpt.train", *args], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{failure}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def quiet_transformers() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def interleaved(fns: dict, rounds: int, per_round: int = 1, cpu_time: bool = False) -> dict[str, list[float]]:
    """Seconds per call of each fn, `rounds` times, alternating fns within each round. cpu_time=True measures
    this process's CPU seconds instead of wall time: on a machine crowded by other jobs, wall time mostly
    measures the crowd (with 1 thread, CPU time is the work done)."""
    clock = time.process_time if cpu_time else time.perf_counter
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = clock()
            for _ in range(per_round):
                fn()
            times[name].append((clock() - t0) / per_round)
    return times


def median(xs) -> float:
    return statistics.median(xs)


def table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[c if isinstance(c, str) else f"{c:,.2f}" if isinstance(c, float) else str(c)
                         for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine(cpu_time: bool = False) -> str:
    import torch
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f}" + ("; timed in process CPU seconds" if cpu_time else ""))


def hf_twin(model):
    """HF transformers GPT2LMHeadModel of our model's shape, holding the same weights (checked on logits)."""
    quiet_transformers()
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    c = model.config
    hf_cfg = GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
                        n_head=c.n_head, resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
                        layer_norm_epsilon=c.layer_norm_eps, bos_token_id=0, eos_token_id=0,
                        activation_function="gelu" if c.activation == "gelu" else "gelu_new")
    hf = GPT2LMHeadModel(hf_cfg)
    sd = {"transformer.wte.weight": model.wte.weight, "transformer.wpe.weight": model.wpe.weight,
          "transformer.ln_f.weight": model.ln_f.weight, "transformer.ln_f.bias": model.ln_f.bias}
    for i, block in enumerate(model.blocks):
        p = f"transformer.h.{i}."
        for ours, theirs in ((block.ln_1, "ln_1"), (block.ln_2, "ln_2")):
            sd[p + theirs + ".weight"], sd[p + theirs + ".bias"] = ours.weight, ours.bias
        for ours, theirs in ((block.attn.c_attn, "attn.c_attn"), (block.attn.c_proj, "attn.c_proj"),
                             (block.mlp.c_fc, "mlp.c_fc"), (block.mlp.c_proj, "mlp.c_proj")):
            sd[p + theirs + ".weight"] = ours.weight.t()  # HF's Conv1D stores (in, out)
            sd[p + theirs + ".bias"] = ours.bias
    with torch.no_grad():
        own = hf.state_dict()
        for k, v in sd.items():
            own[k].copy_(v)
        x = torch.randint(0, c.vocab_size, (2, min(16, c.block_size)))
        was = model.training
        model.eval()
        hf.eval()
        diff = (model(x)[0] - hf(input_ids=x).logits).abs().max().item()
        model.train(was)
    if diff > 1e-4:
        raise AssertionError(f"HF twin disagrees with our model (max logit diff {diff:.2e})")
    return hf


def hf_trainer(hf_model, train_ids, cfg, block_size: int, seed: int = 1337):
    """A train-step closure for an HF model with our recipe: AdamW (decay on matrices only, fused), warmup +
    cosine lr, clip 1.0, the same random-window batches. Returns step() -> (loss, grad_norm)."""
    import torch
    from torch.nn import functional as F

    from gpt.data import get_batch
    from gpt.training.trainer import lr_at
    params = [p for p in hf_model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    gen = torch.Generator().manual_seed(seed)
    state = {"step": 0}
    hf_model.train()

    def step():
        for group in opt.param_groups:
            group["lr"] = lr_at(state["step"], cfg)
        x, y = get_batch(train_ids, block_size, cfg.batch_size, gen)
        logits = hf_model(input_ids=x).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(hf_model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["step"] += 1
        return loss.item(), norm.item()

    return step
