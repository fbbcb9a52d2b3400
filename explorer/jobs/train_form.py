"""The Train page's form logic without streamlit: form values -> configs, problems, estimates, CLI options."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_type_hints

import torch

from gpt.config import PRESETS, ConfigError, GPTConfig, TrainConfig
from gpt.data import cache_dir, min_corpus_length
from gpt.sizing import count_params, flops_per_token, memory_estimate
from gpt.tokenizers import BPE_DEFAULT_VOCAB
from gpt.training.trainer import resolve_device, resolve_dtype

ARCH_LABELS = {"bigram": "bigram (no attention)", "single_head": "single head", "multi_head": "multi-head",
               "gpt": "GPT (attention + MLP)"}
BPE_MIN_VOCAB = 256


_MODEL, _TRAIN = GPTConfig(), TrainConfig()  # the defaults the form's fields take: gpt/config.py's, not copies


@dataclass
class FormValues:
    """Everything the Train form asks for, as plain values. The model and training fields default to gpt/config.py's
    GPTConfig and TrainConfig defaults (the page itself opens on DEFAULT_PRESET's values: preset_form_values)."""
    corpus: str | None = "tiny-shakespeare"   # built-in name or a file path; None with corpus_text
    corpus_text: str | None = None            # uploaded or pasted text
    tokenizer: str = "char"
    vocab_size: int = BPE_DEFAULT_VOCAB       # BPE only
    char_vocab: int = _MODEL.vocab_size       # char only: distinct characters of the corpus (for estimates)
    arch: str = _MODEL.arch
    n_layer: int = _MODEL.n_layer
    n_head: int = _MODEL.n_head
    n_embd: int = _MODEL.n_embd
    block_size: int = _MODEL.block_size
    dropout: float = _MODEL.dropout
    batch_size: int = _TRAIN.batch_size
    max_iters: int = _TRAIN.max_iters
    lr: float = _TRAIN.lr
    warmup_iters: int = _TRAIN.warmup_iters
    eval_interval: int = _TRAIN.eval_interval
    seed: int = _TRAIN.seed
    bf16: bool = False                        # TrainConfig.dtype "auto" picks it where native: preset_form_values
    preset: str | None = None                 # a PRESETS name: its settings the form does not show still apply
    init_from: str | None = None              # fine-tune: the parent run folder (its shape and tokenizer)
    parent_config: GPTConfig | None = field(default=None, repr=False)

    @property
    def vocab(self) -> int:
        if self.parent_config is not None:
            return self.parent_config.vocab_size
        return self.vocab_size if self.tokenizer == "bpe" else self.char_vocab


DEFAULT_PRESET = "shakespeare-minute"  # what the Train form opens with (gpt/config.py PRESETS)
# the form's fields that a preset fills; the preset's other settings (min_lr, beta2, optimizer, ...) stay hidden
# and still apply, because the trainer is started from the preset (train_options passes --preset)
FORM_MODEL_FIELDS = ("arch", "n_layer", "n_head", "n_embd", "block_size", "dropout")
FORM_TRAIN_FIELDS = ("batch_size", "max_iters", "lr", "warmup_iters", "eval_interval", "seed")


def preset_base(name: str | None) -> tuple[GPTConfig, TrainConfig]:
    """The configs a form starts from: the named preset's, else the defaults (with cheap evaluations)."""
    if name in PRESETS:
        model_kw, train_kw, _ = PRESETS[name]
        return GPTConfig(**model_kw), TrainConfig(**train_kw)
    return GPTConfig(), TrainConfig(eval_iters=10)


def bf16_is_native() -> bool:
    """Whether this machine runs bf16 natively (what --dtype auto picks). Elsewhere bf16 is emulated: on an
    AVX2-only CPU a bf16 matmul ran at 1.2 GFLOP/s against 59-71 in fp32, and the default preset's step took
    3.6 s instead of 0.8 s, so a "one-minute" run would take half an hour."""
    return resolve_dtype("auto", resolve_device("auto")) == torch.bfloat16


def preset_form_values(name: str) -> dict:
    """The form fields a preset sets, as FormValues keyword arguments. bf16 is ticked when the preset trains in
    bf16 (or auto) and this machine runs it natively; the learner can still tick it by hand."""
    model, train = preset_base(name)
    values = {k: getattr(model, k) for k in FORM_MODEL_FIELDS}
    values.update({k: getattr(train, k) for k in FORM_TRAIN_FIELDS})
    values["bf16"] = train.dtype in ("bfloat16", "auto") and bf16_is_native()
    return values


def hidden_settings(name: str | None) -> dict:
    """The settings of a preset the form does not show (what a run started with it gets besides the form)."""
    if name not in PRESETS:
        return {}
    model_kw, train_kw, _ = PRESETS[name]
    shown = set(FORM_MODEL_FIELDS) | set(FORM_TRAIN_FIELDS) | {"dtype", "vocab_size"}
    return {k: v for k, v in {**model_kw, **train_kw}.items() if k not in shown}


def configs(v: FormValues) -> tuple[GPTConfig, TrainConfig]:
    """Validated configs for the form, or ConfigError saying what to change. A preset's hidden settings
    apply under the form's values; min_lr keeps the preset's ratio to lr (a tenth without a preset)."""
    base_model, base_train = preset_base(v.preset)
    if v.parent_config is not None:
        model = GPTConfig(**v.parent_config.to_dict())
    else:
        model = GPTConfig(**{**base_model.to_dict(), "vocab_size": max(1, v.vocab), "block_size": v.block_size,
                             "n_layer": v.n_layer, "n_head": v.n_head, "n_embd": v.n_embd, "dropout": v.dropout,
                             "arch": v.arch})
    min_lr_ratio = base_train.min_lr / base_train.lr if v.preset in PRESETS else 0.1
    train = TrainConfig(**{**base_train.to_dict(), "batch_size": v.batch_size, "max_iters": v.max_iters,
                           "lr": v.lr, "min_lr": v.lr * min_lr_ratio, "warmup_iters": v.warmup_iters,
                           "eval_interval": v.eval_interval, "seed": v.seed,
                           "dtype": "bfloat16" if v.bf16 else "float32", "snapshot_interval": 0})
    return model.validate(), train.validate()


# Every field's allowed range. The widgets accept any number, and a value outside its range is refused here
# with a message, never silently clamped or replaced (a learner who types block size 1 must see why not).
LIMITS: dict[str, tuple[str, float, float]] = {
    "n_layer": ("Layers", 1, 48), "n_head": ("Heads", 1, 32), "n_embd": ("Embedding width", 4, 2048),
    "block_size": ("Block size", 2, 1024), "dropout": ("Dropout", 0.0, 0.9), "batch_size": ("Batch size", 1, 512),
    "max_iters": ("Iterations", 1, 1_000_000), "lr": ("Learning rate", 1e-6, 1.0),
    "warmup_iters": ("Warmup steps", 0, 100_000), "eval_interval": ("Eval interval", 1, 100_000),
    "seed": ("Seed", 0, 2**31 - 1), "vocab_size": ("BPE vocab size", BPE_MIN_VOCAB, 65536),
}


# The fields that hold whole numbers (FormValues' int fields): the page gives them integer boxes, since
# st.number_input shows and returns floats ("3.00" layers) unless its value, step and bounds are all ints.
INTEGER_FIELDS = frozenset(k for k in LIMITS if get_type_hints(FormValues)[k] is int)


def range_problems(v: FormValues) -> list[str]:
    found = []
    for key, (label, low, high) in LIMITS.items():
        if key == "vocab_size" and (v.tokenizer != "bpe" or v.parent_config is not None):
            continue
        value = getattr(v, key)
        if value < low:
            found.append(f"{label} must be at least {low:g} (you typed {value:g})")
        elif value > high:
            found.append(f"{label} must be at most {high:g} (you typed {value:g})")
    return found


def problems(v: FormValues, available_bytes: int | None = None) -> list[str]:
    """Why this form cannot start, in plain words (empty: it can). available_bytes: the machine's free memory;
    a run whose training-memory estimate exceeds it is refused with both numbers."""
    found = range_problems(v)
    if found:  # the checks below would only repeat these in other words
        return found
    try:
        model, _ = configs(v)
    except ConfigError as e:
        found += [p.strip() for p in str(e).split(";")]
        model = None
    if v.parent_config is None and v.tokenizer == "bpe" and v.vocab_size < BPE_MIN_VOCAB:
        found.append(f"a BPE vocabulary needs at least {BPE_MIN_VOCAB} tokens (one per byte)")
    if v.corpus is None and v.corpus_text is None:
        found.append("choose a corpus: upload a .txt file or paste some text")
    if v.corpus_text is not None:
        if not v.corpus_text.strip():
            found.append("the pasted or uploaded text is empty")
        elif model is not None and len(v.corpus_text) < min_corpus_length(model.block_size):
            # the last 10% is held out for validation and must still fill one block
            found.append(f"the text has {len(v.corpus_text):,} characters; with block size {model.block_size} it "
                         f"needs at least {min_corpus_length(model.block_size):,} (10% is held out for validation)")
    if v.warmup_iters > v.max_iters:
        found.append(f"warmup ({v.warmup_iters} steps) is longer than the whole run ({v.max_iters} steps)")
    if v.eval_interval > v.max_iters:
        found.append(f"eval interval ({v.eval_interval}) is longer than the run ({v.max_iters}); you would "
                     "only see the final evaluation")
    if model is not None and available_bytes and not found:
        est = estimate(v)
        if est["memory_bytes"] > available_bytes:
            found.append(f"this run needs about {human_bytes(est['memory_bytes'])} of memory to train "
                         f"({human_count(est['params'])} parameters at batch size {v.batch_size}, block size "
                         f"{v.block_size}) but this machine has {human_bytes(available_bytes)} available; use "
                         "fewer or narrower layers, or a smaller batch or block size")
    return found


def estimate(v: FormValues) -> dict[str, float]:
    """Parameters, training FLOPs per step and for the run, and training memory for the form's shape."""
    model, train = configs(v)
    tokens_per_step = train.batch_size * model.block_size
    per_step = flops_per_token(model) * tokens_per_step
    memory = memory_estimate(model, train.batch_size, bytes_per_elem=2 if v.bf16 else 4)
    return {"params": count_params(model), "flops_per_step": per_step, "flops_total": per_step * train.max_iters,
            "memory_bytes": memory["total_bytes"], "tokens_per_step": tokens_per_step}


def train_options(v: FormValues) -> dict:
    """Options for `python -m gpt.train` (see explorer.jobs.training.train_command); no corpus text here."""
    model, train = configs(v)
    opts = {"corpus": v.corpus, "preset": v.preset if v.preset in PRESETS else None,
            "batch_size": train.batch_size, "max_iters": train.max_iters, "lr": train.lr,
            "min_lr": train.min_lr, "warmup_iters": train.warmup_iters, "eval_interval": train.eval_interval,
            "eval_iters": train.eval_iters, "seed": train.seed, "dtype": train.dtype,
            "log_interval": max(1, min(10, train.max_iters // 50)), "sample_tokens": 200,
            "snapshot_interval": train.snapshot_interval}
    if v.parent_config is not None:
        opts["init_from"] = v.init_from
        return opts
    opts.update(arch=model.arch, n_layer=model.n_layer, n_head=model.n_head, n_embd=model.n_embd,
                block_size=model.block_size, dropout=model.dropout, tokenizer=v.tokenizer)
    if v.tokenizer == "bpe":
        opts["vocab_size"] = v.vocab_size
    return opts


# The classic ladder (seed 004 of the project write-ups): bigram -> one head -> multi-head -> GPT, each rung adding one idea. Every rung sees the same
# data, context and batch. What differs is what each needs to show its own best, within about three minutes for
# the four on this machine's one trainer thread: a bigram is a lookup table that learns fastest with big steps
# (at the attention rungs' lr it is still far from converged when they stop, and a half-trained bigram beats
# half-trained attention); attention rungs need more steps to learn where to look. Measured on tiny Shakespeare
# (whole validation split): 2.483, 2.281, 2.149, 1.891, all four in 116 s on one thread (README). Shared by the
# Train page and tests/test_train_defaults.py, which checks the set-up that ordering rests on.
LADDER_SHARED = dict(block_size=64, batch_size=32, n_embd=64, dropout=0.0, warmup_iters=50, eval_interval=200,
                     eval_iters=10, dtype="float32", sample_tokens=200, log_interval=10)
LADDER_RUNGS: dict[str, dict] = {
    "bigram": dict(max_iters=600, lr=1e-2, min_lr=1e-3),
    "single_head": dict(n_layer=2, n_head=1, max_iters=1200, lr=3e-3, min_lr=3e-4),
    "multi_head": dict(n_layer=2, n_head=4, max_iters=1200, lr=3e-3, min_lr=3e-4),
    "gpt": dict(n_layer=2, n_head=4, max_iters=1200, lr=3e-3, min_lr=3e-4),
}
LADDER_NOTE = ("Each rung sees the same text, context (64 characters) and batch; the bigram (a lookup table) gets "
               "a higher learning rate, which is what it needs to converge, and the attention rungs more steps, "
               "which they need to learn where to look. About three minutes for all four on a quiet 2-core CPU.")


def ladder_options(v: FormValues) -> list[tuple[str, dict]]:
    """The four rungs' trainer options: the ladder's own shapes and budgets (LADDER_RUNGS) on the form's corpus,
    tokenizer and seed."""
    data = {"corpus": v.corpus, "tokenizer": v.tokenizer, "seed": v.seed}
    if v.tokenizer == "bpe":
        data["vocab_size"] = v.vocab_size
    return [(arch, {**data, **LADDER_SHARED, **rung, "arch": arch}) for arch, rung in LADDER_RUNGS.items()]


def auto_name(v: FormValues, now: float | None = None) -> str:
    corpus = "text" if v.corpus_text is not None else str(v.corpus or "run").split("/")[-1].split(".")[0]
    kind = "finetune" if v.parent_config is not None else v.arch.replace("_", "-")
    return f"{kind}-{corpus}-{time.strftime('%m%d-%H%M%S', time.localtime(now))}"


def human_count(n: float, unit: str = "") -> str:
    """3 significant figures at most ("3.1 GFLOP", "563 GFLOP"): a metric's narrow column cuts longer ones."""
    for factor, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            scaled = n / factor
            return f"{scaled:.0f} {suffix}{unit}" if abs(scaled) >= 100 else f"{scaled:.1f} {suffix}{unit}"
    return f"{n:.0f} {unit}".strip()


def human_bytes(n: float) -> str:
    for factor, suffix in ((2**30, "GB"), (2**20, "MB"), (2**10, "KB")):
        if n >= factor:
            return f"{n / factor:.1f} {suffix}"
    return f"{n:.0f} B"


# ---- expected wall time: a measured calibration of this machine at the form's shape ----
TIMINGS_FILE = "step-timings.json"   # in gpt.data.cache_dir(): survives app restarts, one entry per shape
TIMING_MAX_AGE_S = 24 * 3600         # a day: the machine's load (and so its speed) changes
CONFIRM_OVER_S = 2 * 3600            # runs expected to take longer ask for a confirmation first
CALIBRATION_MAX_STEP_FLOP = 2e11     # bigger steps are extrapolated, not timed (one step could take minutes)
CALIBRATION_METHOD = 3               # part of the cache key: timings remembered by an older gpt.training.calibrate (or optimizer) are redone


def timing_key(model: GPTConfig, train: TrainConfig, threads: int) -> str:
    """What the speed of a step depends on: the shape, batch, precision, optimizer, threads and the CPU."""
    fields = {**model.to_dict(), **{k: getattr(train, k) for k in ("batch_size", "dtype", "grad_accum")},
              **{k: v for k, v in train.to_dict().items() if k in ("optimizer", "compile", "grad_checkpoint")},
              "threads": threads, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "method": CALIBRATION_METHOD}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _read_timings() -> dict:
    try:
        return json.loads((cache_dir() / TIMINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_timing(key: str, timing: dict) -> None:
    timings = {k: t for k, t in _read_timings().items() if time.time() - t.get("at", 0) < TIMING_MAX_AGE_S}
    timings[key] = timing
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        tmp = cache_dir() / f".{TIMINGS_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(timings))
        tmp.replace(cache_dir() / TIMINGS_FILE)
    except OSError:
        pass  # a read-only cache folder only means measuring again next time


def measure_timing(model: GPTConfig, train: TrainConfig, threads: int, timeout_s: float = 120.0) -> dict:
    """{'step_s', 'eval_batch_s', 'startup_s', 'measured'}: a few real training steps of this shape, timed in a
    `python -m gpt.training.calibrate` process with the trainer's thread count; remembered for a day per shape.
    startup_s is that process's wall time beyond the timed work (imports, first-step allocations), a fair
    stand-in for the trainer's own start-up. Raises RuntimeError when the measurement fails."""
    key = timing_key(model, train, threads)
    known = _read_timings().get(key)
    if known and time.time() - known.get("at", 0) < TIMING_MAX_AGE_S:
        return known
    cmd = [sys.executable, "-m", "gpt.training.calibrate", "--model", json.dumps(model.to_dict()),
           "--train", json.dumps({**train.to_dict(), "max_iters": 1000, "warmup_iters": 0}),
           "--threads", str(threads)]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"timing a few steps took over {timeout_s:.0f} s") from e
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["the timing process failed"])[-1])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    timing = {"step_s": result["step_s"], "eval_batch_s": result["eval_batch_s"],
              "startup_s": startup_seconds(wall, result), "measured": True, "at": time.time()}
    _write_timing(key, timing)
    return timing


def startup_seconds(calibration_wall_s: float, result: dict) -> float:
    """The calibration process's wall time beyond its steady-state work (every step it ran at the median
    step time, two evaluation forwards): imports, building the model, the warm-up steps' extra cost. The
    trainer pays the same before its steps run at speed."""
    work_s = result["steps_run"] * result["step_s"] + 2 * result["eval_batch_s"]
    return max(0.0, calibration_wall_s - work_s)


def calibration_is_cheap(v: FormValues) -> bool:
    """Whether timing real steps of this shape is quick enough to do before Start (else extrapolate)."""
    return estimate(v)["flops_per_step"] <= CALIBRATION_MAX_STEP_FLOP


def extrapolate_timing(v: FormValues, reference: dict, reference_v: FormValues) -> dict:
    """A timing for a shape too big to time, from a measured one at another shape, in proportion to FLOPs
    per step (pessimistic for big shapes, which use the CPU better: good enough to warn about hours)."""
    scale = estimate(v)["flops_per_step"] / max(1.0, estimate(reference_v)["flops_per_step"])
    return {"step_s": reference["step_s"] * scale, "eval_batch_s": reference["eval_batch_s"] * scale,
            "startup_s": reference["startup_s"], "measured": False, "at": reference.get("at", time.time())}


def expected_seconds(v: FormValues, timing: dict) -> float:
    """Wall time of the whole run: start-up, the steps, and at each evaluation eval_iters batches on both
    splits, a text sample and a checkpoint (the sample's per-token cost is guessed from a forward pass)."""
    _, train = configs(v)
    n_evals = train.max_iters // train.eval_interval + 1 + (train.max_iters % train.eval_interval != 0)
    per_token = timing["eval_batch_s"] / max(1, train.batch_size * v.block_size)
    sample_s = 200 * max(1e-3, 4 * per_token)  # one token at a time: ~1 ms of overhead, or 4x its batched cost
    eval_s = 2 * train.eval_iters * timing["eval_batch_s"] + sample_s
    return timing["startup_s"] + train.max_iters * timing["step_s"] + n_evals * eval_s


def needs_confirmation(expected_s: float | None) -> bool:
    return expected_s is not None and expected_s > CONFIRM_OVER_S


def timing_for(v: FormValues, measure, threads: int) -> dict:
    """The timing behind the expected wall time: measured at this shape when that is quick, else
    extrapolated from a measurement at the default preset's shape. measure(model, train, threads) -> dict
    (measure_timing, or its cached wrapper in explorer/ui/cache.py)."""
    if calibration_is_cheap(v):
        return measure(*configs(v), threads)
    reference_v = FormValues(**preset_form_values(DEFAULT_PRESET), preset=DEFAULT_PRESET)
    return extrapolate_timing(v, measure(*configs(reference_v), threads), reference_v)
