"""Grokking on modular addition (Nanda et al. 2023, "Progress measures for grokking via mechanistic
interpretability"): a 1-layer transformer memorises 30% of the table of a + b mod 113 quickly, and only much
later, pushed by weight decay, finds the general algorithm (Fourier features) and gets the other 70% right.

The setup follows the paper: inputs "a b =" (three tokens: the numbers 0..p-1 and "="), the answer read off
the last position, 30% of the p^2 pairs for training, full-batch AdamW (lr 1e-3, weight decay 1.0, betas
(0.9, 0.98)), a 1-layer transformer with d_model 128, 4 heads of 32, d_mlp 512, ReLU, no LayerNorm and an
untied unembedding, the paper's initialisation (N(0, 1/fan_in)). What differs (GrokConfig's defaults, chosen
so that it groks in minutes on a laptop CPU; measured numbers in the README):
* lr 1e-2 instead of 1e-3, with the same weight decay 1.0: AdamW shrinks the weights by lr x wd per step, so
  the clean-up that produces grokking comes ~10x sooner in steps (test accuracy crosses 99% after ~500 steps
  instead of the paper's ~10k epochs); the memorise-first gap stays (train 100% at ~100 steps, test ~15%);
* weight decay on matrices and embeddings only, not on biases (as gpt.train);
* the training step runs under bf16 autocast (fp32 weights and optimizer): ~2x faster on this CPU;
* training stops `patience` steps after test accuracy first reaches 99% instead of running 40,000 epochs.

The run is a normal run folder (gpt/runs/__init__.py): config.json (with a "task" section), tokenizer.json (a
character tokenizer in which number i is the character chr(0x100 + i) and "=" is itself), model.safetensors,
snapshots, metrics.jsonl and status.json, so the explorer's views open it like any other run.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from gpt import runs
from gpt.config import ConfigError, GPTConfig, TrainConfig
from gpt.lab.fourier import frequency_norms, frequency_report
from gpt.model import GPT
from gpt.tokenizers import CharTokenizer, save_tokenizer
from gpt.training.trainer import resolve_dtype

FIRST_NUMBER_CHAR = 0x100  # number i <-> chr(0x100 + i): Latin Extended-A, printable single characters


@dataclass
class GrokConfig:
    p: int = 113
    train_fraction: float = 0.3
    d_model: int = 128        # d_mlp is 4 x d_model = 512, as the paper
    n_head: int = 4
    lr: float = 1e-2          # the paper: 1e-3 (see the module docstring)
    weight_decay: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int = 10    # the paper's linear warm-up
    max_steps: int = 6000
    patience: int = 100       # steps to keep training after test accuracy first reaches `target_acc`
    target_acc: float = 0.99
    eval_interval: int = 25
    snapshot_interval: int = 250
    seed: int = 0
    threads: int = 0          # torch CPU threads; 0 = leave torch's default
    # autocast for the training step ("float32" = off; "auto" = bf16 where the CPU runs it natively, since
    # emulated bf16 matmuls are many times slower than fp32); weights stay fp32
    dtype: str = "auto"
    init: str = "paper"       # "paper": Nanda et al.'s N(0, 1/fan_in) weights; "gpt2": std 0.02 (gpt.model's)

    def validate(self) -> "GrokConfig":
        problems = []
        if not isinstance(self.p, int) or self.p < 3:
            problems.append(f"p must be a whole number >= 3 (got {self.p!r})")
        if not 0 < self.train_fraction < 1:
            problems.append(f"train_fraction must be between 0 and 1 (got {self.train_fraction!r})")
        for name in ("max_steps", "eval_interval", "snapshot_interval", "d_model", "n_head"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a positive whole number (got {getattr(self, name)!r})")
        if isinstance(self.snapshot_interval, int) and isinstance(self.eval_interval, int) \
                and self.eval_interval > 0 and self.snapshot_interval % self.eval_interval:
            problems.append("snapshot_interval must be a multiple of eval_interval (snapshots are taken at evaluations)")
        if self.init not in ("paper", "gpt2"):
            problems.append(f"init must be 'paper' or 'gpt2' (got {self.init!r})")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            problems.append(f"dtype must be auto, float32 or bfloat16 (got {self.dtype!r})")
        if not 0 < self.lr <= 1:
            problems.append(f"lr must be in (0, 1] (got {self.lr!r})")
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def model_config(self) -> GPTConfig:
        return GPTConfig(vocab_size=self.p + 1, block_size=3, n_layer=1, n_head=self.n_head, n_embd=self.d_model,
                         arch="gpt", activation="relu", norm="none", tie_embeddings=False).validate()

    def train_config(self) -> TrainConfig:
        """The nearest TrainConfig, so config.json reads like any run's (batch_size = the whole training set)."""
        n_train = round(self.train_fraction * self.p * self.p)
        return TrainConfig(batch_size=n_train, max_iters=self.max_steps, lr=self.lr, min_lr=self.lr,
                           warmup_iters=self.warmup_steps, weight_decay=self.weight_decay, beta1=self.beta1,
                           beta2=self.beta2, grad_clip=0.0, eval_interval=self.eval_interval, eval_iters=1,
                           log_interval=self.eval_interval, seed=self.seed, dtype="float32", sample_tokens=0,
                           snapshot_interval=self.snapshot_interval).validate()


def training_autocast(dtype: str):
    """The training step's autocast: "auto" is bf16 only on a CPU with native bf16 (AVX-512 BF16/AMX); on an
    AVX2-only CPU an emulated bf16 step of the default experiment took 3.7 s against 0.24 s in fp32."""
    resolved = resolve_dtype(dtype, torch.device("cpu"))  # the trainer's rule for "auto"
    return contextlib.nullcontext() if resolved == torch.float32 else torch.autocast("cpu", dtype=resolved)


def tokenizer_for(p: int) -> CharTokenizer:
    return CharTokenizer([chr(FIRST_NUMBER_CHAR + i) for i in range(p)] + ["="])


@dataclass
class Dataset:
    train_x: torch.Tensor  # (N_train, 3): a, b, "="
    train_y: torch.Tensor  # (N_train,): (a + b) % p
    test_x: torch.Tensor
    test_y: torch.Tensor


def make_dataset(p: int, train_fraction: float, seed: int) -> Dataset:
    """All p^2 pairs, shuffled by seed, the first train_fraction for training and the rest for testing."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    x = torch.stack([a, b, torch.full_like(a, p)], dim=1)  # token p is "="
    y = (a + b) % p
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n_train = round(train_fraction * p * p)
    tr, te = order[:n_train], order[n_train:]
    return Dataset(x[tr], y[tr], x[te], y[te])


def answer_logits(model: GPT, x: torch.Tensor) -> torch.Tensor:
    """x (N, 3) -> (N, p+1) logits at the "=" position, where the answer is read off.

    The same numbers as `model(x)[0][:, -1]` (tests/test_lab.py checks it), computed for that position only:
    the first two positions matter only as the keys and values "=" attends to, so their queries, their MLP and
    their unembedding are skipped (half the arithmetic of the full forward, in every training step).
    Written for the grokking model: one block with an MLP, no normalisation, no dropout, learned positions."""
    cfg = model.config
    if cfg.norm != "none" or cfg.n_layer != 1 or not cfg.has_mlp or not cfg.has_position_table:
        logits, _ = model(x)
        return logits[:, -1].float()
    block = model.blocks[0]
    attn = block.attn
    N, T = x.shape
    C, nh = cfg.n_embd, attn.n_head
    hs = C // nh
    h = model.wte(x) + model.wpe.weight[:T]  # (N, T, C)
    kv = F.linear(h, attn.c_attn.weight[C:], None if attn.c_attn.bias is None else attn.c_attn.bias[C:])  # (N, T, 2C)
    k, v = kv.view(N, T, 2, nh, hs).permute(2, 0, 3, 1, 4)  # each (N, nh, T, hs)
    q = F.linear(h[:, -1], attn.c_attn.weight[:C], None if attn.c_attn.bias is None else attn.c_attn.bias[:C])
    q = q.view(N, nh, 1, hs)
    att = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(hs), dim=-1)  # (N, nh, 1, T): "=" sees all three
    z = (att @ v).view(N, C)
    resid = h[:, -1] + attn.c_proj(z)  # (N, C)
    resid = resid + block.mlp.c_proj(block.mlp.act(block.mlp.c_fc(resid)))
    logits, _ = model.forward_from(cfg.n_layer, resid[:, None])  # the model's own final norm and head
    return logits[:, 0].float()  # (N, p+1)


@torch.no_grad()
def evaluate(model: GPT, data: Dataset) -> dict[str, float]:
    model.eval()
    out = {}
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        logits = answer_logits(model, x)
        out[f"{split}_loss"] = F.cross_entropy(logits, y).item()
        out[f"{split}_acc"] = (logits.argmax(-1) == y).float().mean().item()
    model.train()
    return out


def weight_norm(model: GPT) -> float:
    """L2 norm of all parameters together: weight decay pulls it down once memorisation is no longer needed."""
    return math.sqrt(sum(float(p.detach().float().pow(2).sum()) for p in model.parameters()))


def fourier_row(model: GPT, p: int) -> dict:
    """The embedding's norm per frequency and its key frequencies, for one metrics row."""
    norms = frequency_norms(model.wte.weight.detach(), p)
    report = frequency_report(norms)
    return {"fourier_norms": [round(v, 5) for v in report.norms], "key_frequencies": report.key_frequencies,
            "key_share": round(report.key_share, 4), "top6_share": round(report.top6_share, 4)}


@torch.no_grad()
def paper_init(model: GPT) -> None:
    """Nanda et al.'s initialisation: every matrix N(0, 1/fan_in) (embeddings: 1/d_model), biases zero.
    Larger than GPT-2's std 0.02: the model memorises first and generalises much later (the grokking gap);
    with GPT-2's small init it generalises almost as soon as it fits, and there is little to see."""
    d_model = model.config.n_embd
    for name, param in model.named_parameters():
        if param.dim() < 2:
            param.zero_()
        elif name in ("wte.weight", "wpe.weight"):
            param.normal_(0.0, d_model ** -0.5)
        else:
            param.normal_(0.0, param.size(1) ** -0.5)  # nn.Linear weights are (out, in)


def make_optimizer(model: GPT, cfg: GrokConfig) -> torch.optim.AdamW:
    params = list(model.parameters())
    groups = [{"params": [q for q in params if q.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [q for q in params if q.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


@dataclass
class GrokResult:
    steps: int
    train_acc: float
    test_acc: float
    step_train_99: int | None   # first evaluation with train accuracy >= 99%
    step_test_99: int | None    # first evaluation with test accuracy >= 99%
    key_frequencies: list[int]
    key_share: float
    top6_share: float
    elapsed_s: float
    passed: bool
    verdict: str


def check(test_acc: float, top6_share: float, key_frequencies: list[int], target_acc: float = 0.99) -> tuple[bool, str]:
    """The auto-check: test accuracy >= 99% and at most 6 frequencies hold >= 70% of the embedding's Fourier norm."""
    acc_ok, sparse_ok = test_acc >= target_acc, top6_share >= 0.7
    parts = [f"test accuracy {test_acc:.1%} ({'>=' if acc_ok else 'below'} {target_acc:.0%})",
             f"the top 6 frequencies hold {top6_share:.0%} of the embedding's Fourier norm "
             f"({'>=' if sparse_ok else 'below'} 70%; key frequencies {key_frequencies})"]
    return acc_ok and sparse_ok, ("PASS: " if acc_ok and sparse_ok else "FAIL: ") + "; ".join(parts)


def train(out: str | Path, cfg: GrokConfig | None = None, progress=None, should_stop=None) -> GrokResult:
    """Train the grokking model into the run folder `out` (created; must not hold a run yet). progress(row) is
    called at each evaluation; should_stop() -> True ends training early (SIGTERM from the app's Stop)."""
    cfg = (cfg or GrokConfig()).validate()
    out = Path(out)
    if (out / runs.CONFIG).exists():
        raise runs.RunError(f"{out} already holds a run; pick a new --out")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    runs.lock_run(out)
    model_cfg, train_cfg = cfg.model_config(), cfg.train_config()
    save_tokenizer(tokenizer_for(cfg.p), out / runs.TOKENIZER)
    runs.write_config(out, model_cfg, train_cfg, corpus=None, corpus_sha256=None, tokenizer="char", init_from=None,
                      task={"name": "modular_addition", **asdict(cfg)})
    runs.write_status(out, state="running", pid=os.getpid(), step=0, max_iters=cfg.max_steps, error=None,
                      started_at=time.time(), kind="grokking")
    torch.manual_seed(cfg.seed)
    data = make_dataset(cfg.p, cfg.train_fraction, cfg.seed)
    model = GPT(model_cfg)
    if cfg.init == "paper":
        paper_init(model)
    optimizer = make_optimizer(model, cfg)
    autocast = training_autocast(cfg.dtype)
    step, elapsed, clock = 0, 0.0, time.perf_counter()
    step_train_99 = step_test_99 = None
    last, stopped = {}, False
    model.train()
    while True:
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            last = evaluate(model, data)
            if step_train_99 is None and last["train_acc"] >= cfg.target_acc:
                step_train_99 = step
            if step_test_99 is None and last["test_acc"] >= cfg.target_acc:
                step_test_99 = step
            elapsed += time.perf_counter() - clock
            clock = time.perf_counter()
            row = {"step": step, **{k: round(v, 6) for k, v in last.items()}, "val_loss": round(last["test_loss"], 6),
                   "eval_train_loss": round(last["train_loss"], 6), "weight_norm": round(weight_norm(model), 4),
                   **fourier_row(model, cfg.p), "lr": optimizer.param_groups[0]["lr"], "elapsed_s": round(elapsed, 3)}
            runs.append_jsonl(out / runs.METRICS, row)
            if step % cfg.snapshot_interval == 0:
                runs.snapshot_path(out, step).parent.mkdir(exist_ok=True)
                runs.atomic_save_model(model, runs.snapshot_path(out, step), {"step": str(step)})
            runs.write_status(out, step=step, loss=last["train_loss"],
                              eta_s=(cfg.max_steps - step) * elapsed / max(step, 1))
            if progress:
                progress(row)
            stopped = bool(should_stop and should_stop())
            done = stopped or step >= cfg.max_steps or (step_test_99 is not None and step - step_test_99 >= cfg.patience)
            if done:
                break
        lr = cfg.lr * min(1.0, (step + 1) / (cfg.warmup_steps + 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast:
            loss = F.cross_entropy(answer_logits(model, data.train_x), data.train_y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    elapsed += time.perf_counter() - clock
    if step % cfg.snapshot_interval:
        runs.atomic_save_model(model, runs.snapshot_path(out, step), {"step": str(step)})
    runs.atomic_save_model(model, out / runs.WEIGHTS, {"step": str(step)})
    freq = fourier_row(model, cfg.p)
    passed, verdict = check(last["test_acc"], freq["top6_share"], freq["key_frequencies"], cfg.target_acc)
    result = GrokResult(step, last["train_acc"], last["test_acc"], step_train_99, step_test_99,
                        freq["key_frequencies"], freq["key_share"], freq["top6_share"], round(elapsed, 2), passed, verdict)
    runs.write_status(out, state="stopped" if stopped else "finished", step=step, eta_s=0, result=asdict(result))
    return result
