"""Model and training configuration: dataclasses, validation with clear messages, presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Self

ARCHS = ("bigram", "single_head", "multi_head", "gpt")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "relu2")
POS_EMBEDDINGS = ("learned", "rotary")
NORMS = ("layernorm", "rmsnorm", "none")
DTYPES = ("auto", "float32", "bfloat16", "float16")
OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")


class ConfigError(ValueError):
    """A configuration that cannot work; the message says what to change."""


class _JsonConfig:
    """What GPTConfig and TrainConfig share: to and from JSON (from_dict refuses unknown keys and wrong types, then
    validates), and validate's one ConfigError naming every problem it found."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        return _from_dict(cls, data).validate()

    def _refuse_any(self, problems: list[str]) -> Self:
        if problems:
            raise ConfigError("; ".join(problems))
        return self


@dataclass
class GPTConfig(_JsonConfig):
    vocab_size: int = 65
    block_size: int = 64       # longest context the model can see (learned positions)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True          # biases in Linear and LayerNorm, as GPT-2
    arch: str = "gpt"          # one of ARCHS: the ladder bigram -> one head -> multi-head -> GPT
    activation: str = "gelu"   # one of ACTIVATIONS: "gelu_tanh" is GPT-2's, "relu2" is ReLU squared (Primer)
    layer_norm_eps: float = 1e-5  # eps of every LayerNorm/RMSNorm
    # ---- architecture options (modded-nanogpt's speedrun); the defaults are the classic GPT-2 ----
    pos_embedding: str = "learned"  # "rotary": no position table, q and k rotated by position (RoPE; LLaMA)
    norm: str = "layernorm"    # "rmsnorm": no mean, no bias (LLaMA); "none": identity (no normalisation at all)
    qk_norm: bool = False      # RMS-normalise each head's q and k before q.k (OLMo 2, Gemma 3): tamer logits
    tie_embeddings: bool = True  # the LM head is the token embedding (GPT-2); False: its own matrix (LLaMA)
    zero_init_proj: bool = False  # attention/MLP output projections start at zero: each block starts as identity
    logit_softcap: float = 0.0  # > 0: logits = cap * tanh(logits / cap) (Gemma 2); 0 = off

    @property
    def head_size(self) -> int:
        return self.n_embd // self.effective_n_head

    @property
    def effective_n_head(self) -> int:
        return 1 if self.arch == "single_head" else self.n_head

    @property
    def has_attention(self) -> bool:
        return self.arch != "bigram"

    @property
    def has_mlp(self) -> bool:
        return self.arch == "gpt"

    @property
    def has_position_table(self) -> bool:
        """A learned position embedding table `wpe` exists (not with rotary embeddings, nor in a bigram)."""
        return self.has_attention and self.pos_embedding == "learned"

    @property
    def uses_rotary(self) -> bool:
        return self.has_attention and self.pos_embedding == "rotary"

    @property
    def ties_embeddings(self) -> bool:
        """lm_head.weight is wte.weight (a bigram is always untied: tied, it could only score symmetrically)."""
        return self.has_attention and self.tie_embeddings

    @property
    def gpt2_incompatible(self) -> list[str]:
        """The options GPT-2's architecture cannot represent, as "name=value" (empty: exportable)."""
        off = {"pos_embedding": "learned", "norm": "layernorm", "qk_norm": False, "tie_embeddings": True,
               "logit_softcap": 0.0}
        wrong = [f"{k}={getattr(self, k)!r}" for k, v in off.items() if getattr(self, k) != v]
        if self.activation not in ("gelu", "gelu_tanh"):
            wrong.append(f"activation={self.activation!r}")
        return wrong

    def validate(self) -> "GPTConfig":
        problems = []
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive whole number (got {value!r})")
        if self.arch not in ARCHS:
            problems.append(f"arch must be one of {', '.join(ARCHS)} (got {self.arch!r})")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation must be one of {', '.join(ACTIVATIONS)} (got {self.activation!r})")
        if self.pos_embedding not in POS_EMBEDDINGS:
            problems.append(f"pos_embedding must be one of {', '.join(POS_EMBEDDINGS)} (got {self.pos_embedding!r})")
        if self.norm not in NORMS:
            problems.append(f"norm must be one of {', '.join(NORMS)} (got {self.norm!r})")
        for name in ("bias", "qk_norm", "tie_embeddings", "zero_init_proj"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false (got {getattr(self, name)!r})")
        cap = self.logit_softcap
        if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0.0 <= cap < float("inf"):
            problems.append(f"logit_softcap must be 0 (off) or a positive number like 30 (got {cap!r})")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout!r})")
        if not problems and self.arch in ("multi_head", "gpt") and self.n_embd % self.n_head:
            problems.append(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) so every head gets "
                f"the same width; try n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}")
        if not problems and self.uses_rotary and self.head_size % 2:
            problems.append(f"rotary embeddings rotate pairs of channels, so the head size n_embd/n_head must be "
                            f"even (got {self.n_embd}/{self.effective_n_head} = {self.head_size})")
        return self._refuse_any(problems)


@dataclass
class TrainConfig(_JsonConfig):
    batch_size: int = 12
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None   # None: decay over max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    grad_accum: int = 1
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    seed: int = 1337
    dtype: str = "auto"
    device: str = "auto"
    grad_checkpoint: bool = False
    compile: bool = False               # torch.compile the training step's model (nanoGPT's --compile)
    sample_tokens: int = 200            # length of the sample written at each eval
    snapshot_interval: int = 0          # steps between weight snapshots (time machine); 0 = at every eval
    snapshot_dtype: str = "float32"     # "bfloat16" halves the size of shipped snapshots
    optimizer: str = "adamw"            # "muon": Muon on the blocks' matrices, AdamW on the rest (gpt/training/optim.py)
    muon_lr: float = 0.02               # Muon's peak lr (the schedule scales it like lr)
    muon_momentum: float = 0.95
    schedule: str = "cosine"            # "wsd": warmup, stable at lr, linear cooldown over the last cooldown_frac
    cooldown_frac: float = 0.4          # wsd only: share of the steps spent decaying to min_lr
    # share of each training batch taken from the training text with every line said twice (the validation text
    # is untouched): copying from the context then pays, and induction heads form (gpt/lab/induction_lab.py)
    repeat_lines_frac: float = 0.0

    def validate(self) -> "TrainConfig":
        problems = []
        for name in ("batch_size", "max_iters", "grad_accum", "eval_interval", "eval_iters", "log_interval"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive whole number (got {value!r})")
        if not isinstance(self.warmup_iters, int) or self.warmup_iters < 0:
            problems.append(f"warmup_iters must be >= 0 (got {self.warmup_iters!r})")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr <= 1):
            problems.append(f"lr must be in (0, 1] (got {self.lr!r})")
        if not (isinstance(self.min_lr, (int, float)) and 0 <= self.min_lr <= self.lr):
            problems.append(f"min_lr must be between 0 and lr (got {self.min_lr!r})")
        if not isinstance(self.snapshot_interval, int) or self.snapshot_interval < 0:
            problems.append(f"snapshot_interval must be >= 0 (got {self.snapshot_interval!r})")
        elif self.snapshot_interval and isinstance(self.eval_interval, int) and self.eval_interval > 0 \
                and self.snapshot_interval % self.eval_interval:
            problems.append(f"snapshot_interval ({self.snapshot_interval}) must be a multiple of eval_interval "
                            f"({self.eval_interval}): snapshots are taken at evaluations")
        if self.snapshot_dtype not in ("float32", "bfloat16", "float16"):
            problems.append(f"snapshot_dtype must be float32, bfloat16 or float16 (got {self.snapshot_dtype!r})")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)} (got {self.schedule!r})")
        if not (isinstance(self.muon_lr, (int, float)) and 0 < self.muon_lr <= 1):
            problems.append(f"muon_lr must be in (0, 1] (got {self.muon_lr!r})")
        if not (isinstance(self.muon_momentum, (int, float)) and 0 <= self.muon_momentum < 1):
            problems.append(f"muon_momentum must be in [0, 1) (got {self.muon_momentum!r})")
        if not (isinstance(self.cooldown_frac, (int, float)) and 0 <= self.cooldown_frac <= 1):
            problems.append(f"cooldown_frac must be in [0, 1] (got {self.cooldown_frac!r})")
        if not (isinstance(self.repeat_lines_frac, (int, float)) and 0 <= self.repeat_lines_frac < 1):
            problems.append(f"repeat_lines_frac must be in [0, 1) (got {self.repeat_lines_frac!r})")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {', '.join(DTYPES)} (got {self.dtype!r})")
        if not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            problems.append("beta1 and beta2 must be in [0, 1)")
        if self.grad_clip < 0 or self.weight_decay < 0:
            problems.append("grad_clip and weight_decay must be >= 0")
        return self._refuse_any(problems)


def _from_dict(cls, data: dict):
    """Build a dataclass from JSON, refusing unknown keys and wrong types with a clear message."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {unknown}")
    kwargs = {}
    defaults = cls()
    for name, value in data.items():
        expected = type(getattr(defaults, name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if getattr(defaults, name) is None:   # Optional[int] fields
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{cls.__name__}.{name} must be {expected.__name__}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


# the architecture options the speedrun presets switch on: the ones that paid here (bench/README.md; RMSNorm,
# ReLU^2, an untied head and logit soft-capping did not: no better loss at 200 steps, and slower steps)
SPEEDRUN_ARCH = dict(pos_embedding="rotary", qk_norm=True, zero_init_proj=True)

# name -> (model overrides, train overrides, one-line description)
PRESETS: dict[str, tuple[dict, dict, str]] = {
    "tiny": (dict(n_layer=2, n_head=2, n_embd=32, block_size=32), dict(batch_size=8, max_iters=200, eval_interval=50),
             "2 layers x 32 wide: trains in seconds, for trying things out"),
    "nanogpt-cpu": (dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
                    dict(batch_size=12, max_iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100, beta2=0.99,
                         eval_iters=20),
                    "nanoGPT's CPU recipe: 4 layers, 4 heads, 128 wide, block 64 (val ~1.88 on Shakespeare)"),
    # the CPU speedrun: a smaller model than the recipe's, fewer and better steps (bench/speedrun.py measures
    # each part; bench/README.md: 2 x 96 reaches 1.88 in fewer FLOPs than 3 or 4 x 128 at this budget)
    # (no QK-norm here: over 4 seeds it cost 0.007 nats at this size and 3-5% of a step)
    "speedrun": (dict(n_layer=2, n_head=3, n_embd=96, block_size=64, dropout=0.0, **{**SPEEDRUN_ARCH, "qk_norm": False}),
                 dict(batch_size=32, max_iters=180, optimizer="muon", muon_lr=0.05, muon_momentum=0.9, lr=0.015,
                      min_lr=1e-4, beta1=0.8, beta2=0.95, warmup_iters=20, schedule="wsd", cooldown_frac=0.4,
                      eval_interval=180, eval_iters=2, sample_tokens=0),
                 "2 layers x 96 wide with Muon, rotary, WSD: val ~1.85 in ~0.12x the time of nanoGPT's recipe"),
    # the long run sized to ~3.7x the recipe's wall time: 3 layers of the recipe's width at block 128 with the
    # speedrun's settings (in ~330 s of training here: 3 x 128 for 1350 steps 1.470, 4 x 128 for 1100 steps 1.491,
    # 4 x 192 for 620 steps 1.521; the earlier 6 x 192 for 1500 steps reached 1.461 in ~12x the recipe's time)
    "speedrun-long": (dict(n_layer=3, n_head=4, n_embd=128, block_size=128, dropout=0.0, **SPEEDRUN_ARCH),
                      dict(batch_size=32, max_iters=1350, optimizer="muon", muon_lr=0.05, muon_momentum=0.9,
                           lr=0.015, min_lr=1e-4, beta1=0.8, beta2=0.95, warmup_iters=50, schedule="wsd",
                           cooldown_frac=0.4, eval_interval=270, eval_iters=5, sample_tokens=200),
                      "3 layers x 128 at block 128 with the speedrun's settings: val ~1.47 in ~3.5x the recipe's time"),
    # the shipped model: half of each batch says every line twice, so copying pays and an induction head forms
    # (L3H0, with the previous-token head L0H2; README); the validation text is plain Shakespeare
    "shakespeare-small": (dict(n_layer=4, n_head=6, n_embd=192, block_size=128, dropout=0.0),
                          dict(batch_size=32, max_iters=4000, lr=2e-3, min_lr=2e-4, warmup_iters=100,
                               beta2=0.99, eval_interval=250, eval_iters=20, snapshot_interval=500,
                               snapshot_dtype="bfloat16", optimizer="muon", muon_lr=0.03, schedule="wsd",
                               repeat_lines_frac=0.5),
                          "the shipped model's recipe (1.8M params, grows an induction head): ~18 min on 2 CPU cores"),
    "shakespeare-char": (dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2),
                         dict(batch_size=64, max_iters=5000, lr=1e-3, min_lr=1e-4, warmup_iters=100, beta2=0.99,
                              eval_interval=250, eval_iters=200),
                         "nanoGPT's GPU recipe (10.7M params): hours on a laptop CPU"),
    "gpt2": (dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257, activation="gelu_tanh"),
             dict(batch_size=8, max_iters=1000, lr=6e-4, min_lr=6e-5, warmup_iters=100, beta2=0.95),
             "GPT-2 small (124M): the shape of OpenAI's smallest GPT-2; very slow on a CPU"),
    # the Train form's default (explorer/jobs/train_form.py DEFAULT_PRESET): recognisable Shakespeare in about a minute
    # on one CPU thread; figures measured over the whole validation split are in the README
    # (3 layers beat 4 here: at this budget the cheaper step buys more steps than the 4th layer is worth)
    "shakespeare-minute": (dict(n_layer=3, n_head=4, n_embd=128, block_size=128, dropout=0.0),
                           dict(batch_size=16, max_iters=480, lr=2e-3, min_lr=2e-4, warmup_iters=50, beta2=0.99,
                                eval_interval=250, eval_iters=10, dtype="auto", optimizer="muon", muon_lr=0.03,
                                schedule="wsd"),
                           "3 layers x 128 wide, Muon: writes recognisable Shakespeare in about a minute"),
}


def preset(name: str) -> tuple[GPTConfig, TrainConfig]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    model_kw, train_kw, _ = PRESETS[name]
    return GPTConfig(**model_kw), TrainConfig(**train_kw)


__all__ = ["ARCHS", "ACTIVATIONS", "POS_EMBEDDINGS", "NORMS", "DTYPES", "OPTIMIZERS", "SCHEDULES", "ConfigError",
           "GPTConfig", "TrainConfig", "PRESETS", "preset"]
