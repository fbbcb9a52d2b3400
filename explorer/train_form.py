"""The Train page's form logic without streamlit: form values -> configs, problems, estimates, CLI options."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from gpt.config import ARCHS, ConfigError, GPTConfig, TrainConfig
from gpt.data import min_corpus_length
from gpt.model import count_params, flops_per_token, memory_estimate

ARCH_LABELS = {"bigram": "bigram (no attention)", "single_head": "single head", "multi_head": "multi-head",
               "gpt": "GPT (attention + MLP)"}
BPE_MIN_VOCAB = 256


@dataclass
class FormValues:
    """Everything the Train form asks for, as plain values."""
    corpus: str | None = "tiny-shakespeare"   # built-in name or a file path; None with corpus_text
    corpus_text: str | None = None            # uploaded or pasted text
    tokenizer: str = "char"
    vocab_size: int = 512                     # BPE only
    char_vocab: int = 65                      # char only: distinct characters of the corpus (for estimates)
    arch: str = "gpt"
    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 32
    block_size: int = 32
    dropout: float = 0.0
    batch_size: int = 8
    max_iters: int = 200
    lr: float = 1e-3
    warmup_iters: int = 10
    eval_interval: int = 50
    seed: int = 1337
    bf16: bool = False
    init_from: str | None = None              # fine-tune: the parent run folder (its shape and tokenizer)
    parent_config: GPTConfig | None = field(default=None, repr=False)

    @property
    def vocab(self) -> int:
        if self.parent_config is not None:
            return self.parent_config.vocab_size
        return self.vocab_size if self.tokenizer == "bpe" else self.char_vocab


def configs(v: FormValues) -> tuple[GPTConfig, TrainConfig]:
    """Validated configs for the form, or ConfigError saying what to change."""
    if v.parent_config is not None:
        model = GPTConfig(**v.parent_config.to_dict())
    else:
        model = GPTConfig(vocab_size=max(1, v.vocab), block_size=v.block_size, n_layer=v.n_layer, n_head=v.n_head,
                          n_embd=v.n_embd, dropout=v.dropout, arch=v.arch)
    train = TrainConfig(batch_size=v.batch_size, max_iters=v.max_iters, lr=v.lr, min_lr=v.lr / 10,
                        warmup_iters=v.warmup_iters, eval_interval=v.eval_interval, seed=v.seed,
                        dtype="bfloat16" if v.bf16 else "float32", eval_iters=10)
    return model.validate(), train.validate()


def problems(v: FormValues) -> list[str]:
    """Why this form cannot start, in plain words (empty: it can)."""
    found = []
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
    """Options for `python -m gpt.train` (see explorer.jobs.train_command); no corpus text here."""
    model, train = configs(v)
    opts = {"corpus": v.corpus, "batch_size": train.batch_size, "max_iters": train.max_iters, "lr": train.lr,
            "min_lr": train.min_lr, "warmup_iters": train.warmup_iters, "eval_interval": train.eval_interval,
            "eval_iters": train.eval_iters, "seed": train.seed, "dtype": train.dtype,
            "log_interval": max(1, min(10, train.max_iters // 50)), "sample_tokens": 200}
    if v.parent_config is not None:
        opts["init_from"] = v.init_from
        return opts
    opts.update(arch=model.arch, n_layer=model.n_layer, n_head=model.n_head, n_embd=model.n_embd,
                block_size=model.block_size, dropout=model.dropout, tokenizer=v.tokenizer)
    if v.tokenizer == "bpe":
        opts["vocab_size"] = v.vocab_size
    return opts


def ladder_options(v: FormValues) -> list[tuple[str, dict]]:
    """The four rungs with the same data, width, context, batch, steps and learning rate: only the
    architecture changes, so the curves compare like with like."""
    base = train_options(FormValues(**{**v.__dict__, "parent_config": None, "init_from": None}))
    return [(arch, {**base, "arch": arch}) for arch in ARCHS]


def auto_name(v: FormValues, now: float | None = None) -> str:
    corpus = "text" if v.corpus_text is not None else str(v.corpus or "run").split("/")[-1].split(".")[0]
    kind = "finetune" if v.parent_config is not None else v.arch.replace("_", "-")
    return f"{kind}-{corpus}-{time.strftime('%m%d-%H%M%S', time.localtime(now))}"


def human_count(n: float, unit: str = "") -> str:
    for factor, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {suffix}{unit}"
    return f"{n:.0f} {unit}".strip()


def human_bytes(n: float) -> str:
    for factor, suffix in ((2**30, "GB"), (2**20, "MB"), (2**10, "KB")):
        if n >= factor:
            return f"{n / factor:.1f} {suffix}"
    return f"{n:.0f} B"
