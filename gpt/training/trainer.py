"""Training loop: the Trainer, the lr schedule, checkpoints. The `python -m gpt.train` CLI is gpt/train.py.

AdamW (decay on matrices only), linear warmup + cosine decay, gradient clipping and accumulation, periodic
train/val evaluation, snapshots at eval steps, exact resume (weights, optimizer, RNG, step), SIGTERM/SIGINT
-> checkpoint then a clean exit. Everything it produces lands in the run folder (gpt/runs/__init__.py).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open

from gpt import runs
from gpt.config import TrainConfig
from gpt.generate import generate_text
from gpt.model import GPT
from gpt.tokenizers import Tokenizer
from gpt.training import distributed
from gpt.training.optim import make_optimizer
from gpt.training.precision import LowPrecisionCopy, cpu_has_fast_bf16


class TrainError(RuntimeError):
    pass


def copy_module(module: torch.nn.Module) -> torch.nn.Module:
    import copy
    return copy.deepcopy(module)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"device {name!r} asked for, but CUDA is not available here")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto': bf16 where the hardware runs it natively (measured ~20-40% faster, same loss), else fp32."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    if name == "float16" and device.type != "cuda":
        raise TrainError("float16 training needs CUDA (GradScaler); on this device use bfloat16 or float32")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to lr, then down to min_lr at lr_decay_iters: a cosine (nanoGPT's schedule), or with
    schedule "wsd" (warmup-stable-decay) flat at lr until the last cooldown_frac of the steps, then linear.
    Muon's groups get this times their lr_scale (muon_lr / lr)."""
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / (cfg.warmup_iters + 1)
    if step >= decay_iters:
        return cfg.min_lr
    if cfg.schedule == "wsd":
        cooldown_start = max(cfg.warmup_iters, decay_iters - round(cfg.cooldown_frac * decay_iters))
        if step < cooldown_start:
            return cfg.lr
        ratio = (step - cooldown_start) / max(1, decay_iters - cooldown_start)
        return cfg.lr + ratio * (cfg.min_lr - cfg.lr)
    ratio = (step - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


class Trainer:
    """Holds the model, optimizer, data and RNG of one run; `run()` trains to max_iters."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, train_ids: torch.Tensor, val_ids: torch.Tensor,
                 cfg: TrainConfig, out_dir: Path | None, device: torch.device, dtype: torch.dtype,
                 rank: int = 0, world_size: int = 1, ddp_model=None):
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.train_ids, self.val_ids = train_ids, val_ids
        self.repeated_ids: torch.Tensor | None = None  # train text with every line said twice (repeat_lines_frac)
        self.out_dir, self.device, self.dtype = out_dir, device, dtype
        self.rank, self.world_size = rank, world_size
        self.ddp_model = ddp_model  # DistributedDataParallel wrapper when world_size > 1
        self.block_size = model.config.block_size
        self.optimizer = make_optimizer(model, cfg, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=(dtype == torch.float16 and device.type == "cuda"))
        # the same seed on every rank: each draws the global batch and keeps its slice (gpt/training/distributed.py)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.dist = distributed.DistInfo(rank, rank, world_size)
        self.step = 0
        self.elapsed_s = 0.0
        self.stop_requested = False
        # fn(model, val_ids, autocast context) -> {metric: value} logged at each evaluation (None: nothing extra)
        self.eval_probes: Callable[..., dict] | None = None
        self.skip_eval_at: int | None = None  # resume: that step's eval is already in metrics.jsonl
        self.model.grad_checkpoint = cfg.grad_checkpoint
        # bf16 on CPU: forward/backward on a bf16 working copy instead of autocast (gpt/training/precision.py)
        self.low_precision = (LowPrecisionCopy(model, dtype) if dtype == torch.bfloat16 and device.type == "cpu"
                              and ddp_model is None else None)
        # --compile: only the training step runs compiled; evaluation, samples and checkpoints use the plain
        # model, which holds the same parameters
        self.train_net = ddp_model or model
        if cfg.compile:
            if self.low_precision is not None:
                self.low_precision.work_forward = torch.compile(self.low_precision.work)
            else:
                self.train_net = torch.compile(self.train_net)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def batch(self, data: torch.Tensor, generator: torch.Generator, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's `size` (default batch_size) windows of the global batch (all of it in a single process)."""
        return distributed.rank_batch(data, self.block_size, size or self.cfg.batch_size, generator, self.device,
                                      self.rank, self.world_size)

    def train_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch: its last round(repeat_lines_frac * batch_size) windows come from repeated_ids (the
        training text with every line said twice) when that is set."""
        n_repeated = round(self.cfg.repeat_lines_frac * self.cfg.batch_size) if self.repeated_ids is not None else 0
        if n_repeated == 0:
            return self.batch(self.train_ids, self.data_gen)
        plain = self.batch(self.train_ids, self.data_gen, self.cfg.batch_size - n_repeated)
        doubled = self.batch(self.repeated_ids, self.data_gen, n_repeated)
        return torch.cat([plain[0], doubled[0]]), torch.cat([plain[1], doubled[1]])

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss over eval_iters batches per split; batches come from a generator seeded by the step, so an
        evaluation does not depend on what happened before it (resume gives the same numbers). Under DDP each
        rank scores its slice of every global batch and the means are averaged over ranks."""
        self.model.eval()
        means = torch.zeros(2)
        for i, data in enumerate((self.train_ids, self.val_ids)):
            gen = torch.Generator().manual_seed(self.cfg.seed * 7919 + self.step * 2 + i)
            losses = torch.zeros(self.cfg.eval_iters)
            for k in range(self.cfg.eval_iters):
                x, y = self.batch(data, gen)
                with self.autocast():
                    _, loss = self.model(x, y)
                losses[k] = loss.item()
            means[i] = losses.mean()
        means = distributed.all_reduce_mean(means, self.dist)
        self.model.train()
        return {"train": means[0].item(), "val": means[1].item()}

    def train_step(self) -> tuple[float, float]:
        """One optimizer step over grad_accum micro-batches; returns (mean loss, grad norm before clipping)."""
        lr = lr_at(self.step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        if self.low_precision is not None:
            return self._train_step_low_precision()
        net = self.train_net
        total = 0.0
        for micro in range(self.cfg.grad_accum):
            x, y = self.train_batch()
            sync = (micro == self.cfg.grad_accum - 1) or self.ddp_model is None
            ctx = contextlib.nullcontext() if sync else self.ddp_model.no_sync()
            with ctx:
                with self.autocast():
                    _, loss = net(x, y)
                    loss = loss / self.cfg.grad_accum
                self.scaler.scale(loss).backward()
            total += loss.item()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip).item()
        else:
            grad_norm = math.sqrt(sum(float(p.grad.float().pow(2).sum()) for p in self.model.parameters()
                                      if p.grad is not None))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total, grad_norm

    def _train_step_low_precision(self) -> tuple[float, float]:
        """train_step through the bf16 working copy: same batches, same clipping, fp32 master weights."""
        lowp = self.low_precision
        lowp.begin_step()
        total = 0.0
        for _ in range(self.cfg.grad_accum):
            x, y = self.train_batch()
            total += lowp.forward_backward(x, y, 1.0 / self.cfg.grad_accum)
        grad_norm = lowp.clip_grad_norm_(self.cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        return total, grad_norm

    # ---- checkpoints ----
    def save_checkpoint(self) -> None:
        """Weights for inspection, then one resume file (weights + optimizer + RNG): all-or-nothing."""
        if not self.is_main or self.out_dir is None:
            return
        meta = {"step": str(self.step), **runs.config_metadata(self.model.config)}
        runs.atomic_save_model(self.model, self.out_dir / runs.WEIGHTS, meta)
        tensors = {f"model.{k}": v.detach().contiguous() for k, v in self.model.state_dict().items()
                   if k != "lm_head.weight" or not self.model.config.ties_embeddings}
        opt_state = self.optimizer.state_dict()
        for pid, state in opt_state["state"].items():
            for key, value in state.items():
                tensors[f"opt.{pid}.{key}"] = value.detach().contiguous() if torch.is_tensor(value) \
                    else torch.tensor(value)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.data"] = self.data_gen.get_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        meta.update(elapsed_s=repr(self.elapsed_s), scaler=json.dumps(self.scaler.state_dict()))
        # a kill between the two files leaves model.safetensors one checkpoint ahead of resume.safetensors:
        # harmless, since each file is complete on its own and --resume reads only resume.safetensors
        runs.atomic_save_file({k: v.cpu() for k, v in tensors.items()}, self.out_dir / runs.RESUME, meta)
        runs.remove_stale_temp_files(self.out_dir)

    def load_checkpoint(self, path: Path) -> None:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise TrainError(f"cannot resume: {path.name} is unreadable ({e})") from e
        runs.check_config_metadata(self.model.config, meta, path)  # config.json edited since: refuse
        model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        if self.model.config.ties_embeddings:
            model_sd["lm_head.weight"] = model_sd["wte.weight"]
        self.model.load_state_dict(model_sd, strict=True)
        opt_sd = self.optimizer.state_dict()
        for pid in list(opt_sd["state"].keys()) or range(sum(len(g["params"]) for g in opt_sd["param_groups"])):
            state = {key.split(".", 2)[2]: v for key, v in tensors.items() if key.startswith(f"opt.{pid}.")}
            if state:  # load_state_dict moves each value to its parameter's device
                opt_sd["state"][pid] = state
        self.optimizer.load_state_dict(opt_sd)
        torch.set_rng_state(tensors["rng.torch"])
        self.data_gen.set_state(tensors["rng.data"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        self.step = int(meta.get("step", 0))
        self.elapsed_s = float(meta.get("elapsed_s", 0.0))
        if "scaler" in meta:
            self.scaler.load_state_dict(json.loads(meta["scaler"]))

    def save_snapshot(self) -> None:
        if not (self.is_main and self.out_dir is not None):
            return
        path = runs.snapshot_path(self.out_dir, self.step)
        path.parent.mkdir(exist_ok=True)
        if self.cfg.snapshot_dtype == "float32":
            runs.atomic_save_model(self.model, path, {"step": str(self.step)})
        else:
            copy = copy_module(self.model).to(getattr(torch, self.cfg.snapshot_dtype))
            runs.atomic_save_model(copy, path, {"step": str(self.step)})

    def snapshot_due(self) -> bool:
        every = self.cfg.snapshot_interval or self.cfg.eval_interval
        return self.step % every == 0 or self.step == self.cfg.max_iters

    def write_sample(self) -> None:
        if not (self.is_main and self.out_dir is not None and self.cfg.sample_tokens > 0):
            return
        prompt = self.tokenizer.decode(self.val_ids[:1].tolist())
        text = generate_text(self.model, self.tokenizer, prompt, max_new_tokens=self.cfg.sample_tokens,
                             temperature=0.8, top_k=None, seed=self.cfg.seed)
        runs.append_jsonl(self.out_dir / runs.SAMPLES, {"step": self.step, "text": text})
        self.model.train()

    # ---- the loop ----
    def run(self, stop_after: int | None = None, progress: bool = False) -> dict:
        cfg = self.cfg
        tokens_per_step = cfg.batch_size * self.block_size * cfg.grad_accum * self.world_size
        last_eval: dict[str, float] = {}
        bar = None
        if progress and self.is_main:
            from tqdm import tqdm
            bar = tqdm(total=cfg.max_iters, initial=self.step, unit="step", dynamic_ncols=True)
        self.model.train()
        t_log, steps_since_log = time.perf_counter(), 0
        end = cfg.max_iters if stop_after is None else min(cfg.max_iters, stop_after)
        resumed_at = self.step
        clock = time.perf_counter()
        while True:
            at_eval = self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters
            if at_eval and not (self.step == resumed_at and self.skip_eval_at == resumed_at):
                last_eval = self.evaluate()
                # extra per-evaluation metrics: the CLI plugs in gpt/lab/probes.py's ICL and induction/
                # previous-token head scores (~0.25 s per evaluation measured on 2 busy cores, 0.2-0.3% of
                # training time at eval_interval 250); the trainer itself does not depend on the lab
                probes = (self.eval_probes(self.model, self.val_ids, self.autocast())
                          if self.eval_probes is not None and self.is_main and self.out_dir is not None else {})
                self.elapsed_s += time.perf_counter() - clock
                clock = time.perf_counter()
                if self.is_main and self.out_dir is not None:
                    runs.append_jsonl(self.out_dir / runs.METRICS, {
                        "step": self.step, "val_loss": last_eval["val"], "eval_train_loss": last_eval["train"],
                        "lr": lr_at(self.step, cfg), "elapsed_s": round(self.elapsed_s, 3), **probes})
                    if self.snapshot_due():
                        self.save_snapshot()
                    self.write_sample()
                    self.save_checkpoint()
                distributed.barrier(self.dist)  # the others wait while rank 0 writes
                t_log = time.perf_counter()
            if self.step >= end or distributed.any_rank(self.stop_requested, self.dist):
                break
            loss, grad_norm = self.train_step()
            if self.dist.enabled:  # log the whole global batch's loss, not only rank 0's slice
                loss = distributed.all_reduce_mean(torch.tensor([loss]), self.dist).item()
            self.elapsed_s += time.perf_counter() - clock
            clock = time.perf_counter()
            steps_since_log += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", val=f"{last_eval.get('val', float('nan')):.4f}")
            if self.step % cfg.log_interval == 0 and self.is_main and self.out_dir is not None:
                now = time.perf_counter()
                tps = tokens_per_step * steps_since_log / max(now - t_log, 1e-9)
                runs.append_jsonl(self.out_dir / runs.METRICS, {
                    "step": self.step, "train_loss": round(loss, 5), "lr": lr_at(self.step - 1, cfg),
                    "grad_norm": round(grad_norm, 5), "tokens_per_s": round(tps, 1),
                    "elapsed_s": round(self.elapsed_s, 3)})
                eta = (cfg.max_iters - self.step) * (now - t_log) / steps_since_log
                runs.write_status(self.out_dir, step=self.step, loss=loss, eta_s=eta)
                t_log, steps_since_log = now, 0
        if not (self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters):
            self.save_checkpoint()  # stopped between evals: the eval branch did not save this step
        if bar is not None:
            bar.close()
        return {"step": self.step, "val_loss": last_eval.get("val"), "train_loss": last_eval.get("train"),
                "elapsed_s": self.elapsed_s}
