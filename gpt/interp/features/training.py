"""Training sparse dictionaries on a model's activations, streamed from its training text.

One code path for both kinds: every step samples random block_size windows of the training split, runs the model
once (no grad, bf16 where native) recording every site the dictionaries read or write, and takes one Adam step
on each dictionary. The loss is the reconstruction error as a fraction of the target's variance (scale-free, so
one learning rate fits every layer), plus
* TopK (Gao et al. 2024): nothing more; sparsity is the k;
* ReLU: an L1 penalty on the activations (in units of the target's scale);
* JumpReLU (Rajamanoharan et al. 2024): an L0 penalty, trained through straight-through estimators of the step;
and for every kind AuxK: features that have not fired for `dead_after_tokens` tokens are asked to reconstruct
what the live ones miss (their top-k_aux pre-activations), which brings dead features back.
Decoder rows are kept at unit norm (the gradient along each row removed before the step, as Gao et al.).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.nn import functional as F

from gpt.interp.features.dictionary import ACTIVATIONS, KINDS, SAE_SITES, Dictionary, DictionaryConfig, DictionaryError
from gpt.model import GPT, Trace
from gpt.training.trainer import resolve_dtype

BANDWIDTH = 0.05  # JumpReLU's straight-through kernel width, in units of the target's scale


@dataclass
class FeatureTrainConfig:
    """How to train a set of dictionaries (one per layer). Defaults: the ones the shipped transcoders use."""
    kind: str = "transcoder"            # transcoder | sae | clt (gpt.interp.features.clt_training)
    layers: list[int] | None = None      # None = every layer
    site: str = "resid_mid"              # SAEs only: resid_pre, resid_mid or resid_post
    activation: str = "topk"
    n_features: int = 1024
    k: int = 32                          # TopK only
    skip: bool = False                   # transcoders: add a dense linear path x @ W_skip (a skip transcoder)
    tokens: int = 800_000                # training tokens seen by each dictionary
    batch_tokens: int = 1024
    lr: float = 2e-3
    sparsity_coeff: float | None = None  # L1 (relu) / L0 (jumprelu) weight; None = the kind's default
    aux_k: int = 256
    aux_coeff: float = 1 / 32
    dead_after_tokens: int = 50_000
    resample_at: tuple[float, ...] = (0.2, 0.4, 0.6)  # fractions of training where dead features restart
    seed: int = 0
    dtype: str = "auto"
    extra: dict = field(default_factory=dict)

    def validate(self, model_config) -> FeatureTrainConfig:
        def bad(msg):
            raise DictionaryError(msg)
        if self.kind not in KINDS + ("clt",):
            bad(f"--kind must be one of {', '.join(KINDS)}, clt, got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            bad(f"--activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if not model_config.has_attention:
            bad("a bigram model has no blocks: there are no activations inside it to learn features of")
        if self.kind in ("transcoder", "clt") and not model_config.has_mlp:
            bad(f"a {model_config.arch.replace('_', '-')} model has no MLP layers, so there is nothing for a "
                "transcoder to replace; train an SAE on the residual stream instead (--kind sae)")
        if self.kind == "clt" and (self.activation != "topk" or self.skip or self.layers):
            bad("a cross-layer transcoder (--kind clt) trains with --activation topk, no --skip, on every layer "
                "(--layers all)")
        if self.skip and self.kind != "transcoder":
            bad("--skip is for transcoders (an SAE reconstructs its own input)")
        if self.kind == "sae" and self.site not in SAE_SITES:
            bad(f"--site must be one of {', '.join(SAE_SITES)}, got {self.site!r}")
        if self.kind == "sae" and self.site == "resid_post" and not model_config.has_mlp:
            bad("this model has no MLPs, so no resid_post site; use resid_pre or resid_mid")
        n_layer = model_config.n_layer
        for layer in self.layers or []:
            if not (isinstance(layer, int) and 0 <= layer < n_layer):
                bad(f"--layers: layer {layer!r} does not exist (the model has layers 0..{n_layer - 1})")
        if not (isinstance(self.n_features, int) and 16 <= self.n_features <= 65536):
            bad(f"--n-features must be an integer in 16..65536, got {self.n_features!r}")
        if self.activation == "topk" and not (isinstance(self.k, int) and 1 <= self.k <= min(512, self.n_features)):
            bad(f"--k must be an integer in 1..{min(512, self.n_features)} (at most n_features), got {self.k!r}")
        if not (isinstance(self.tokens, int) and self.batch_tokens <= self.tokens <= 10**9):
            bad(f"--tokens must be an integer in {self.batch_tokens:,}..1,000,000,000, got {self.tokens!r}")
        if not (isinstance(self.batch_tokens, int) and 64 <= self.batch_tokens <= 65536):
            bad(f"batch_tokens must be in 64..65536, got {self.batch_tokens!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            bad(f"--lr must be in (0, 1), got {self.lr!r}")
        return self

    @property
    def default_sparsity(self) -> float:
        return {"relu": 0.3, "jumprelu": 0.02}.get(self.activation, 0.0)


def site_names(kind: str, layer: int, site: str) -> tuple[str, str]:
    if kind == "transcoder":
        return f"blocks.{layer}.mlp.in", f"blocks.{layer}.mlp.out"
    return f"blocks.{layer}.{site}", f"blocks.{layer}.{site}"


class _JumpReLU(torch.autograd.Function):
    """pre * (pre > t): the gradient to pre is the step; to t, a rectangle-kernel estimate (Rajamanoharan et al.)."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        near = ((pre - threshold).abs() < eps / 2).to(grad.dtype)
        grad_t = -(threshold / eps) * near * grad
        return grad * (pre > threshold), grad_t.sum_to_size(threshold.shape), None


class _Step(torch.autograd.Function):
    """1[pre > t] (for the L0 penalty): no gradient to pre, a rectangle-kernel estimate to t."""

    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        near = ((pre - threshold).abs() < eps / 2).to(grad.dtype)
        return None, (-(1 / eps) * near * grad).sum_to_size(threshold.shape), None


class DictionaryTrainer:
    """One dictionary, its optimizer and its dead-feature bookkeeping."""

    def __init__(self, config: DictionaryConfig, cfg: FeatureTrainConfig, first_x: torch.Tensor,
                 first_y: torch.Tensor, generator: torch.Generator):
        self.cfg = cfg
        # train on inputs and targets scaled to E||v||^2 = width (as SAELens): then pre-activations start at the
        # size the reconstruction needs, whatever the layer's scale; export() folds the scales back in
        self.x_scale = float(config.d_in ** 0.5 / first_x.norm(dim=-1).mean().clamp(min=1e-6))
        self.y_scale = float(config.d_out ** 0.5 / first_y.norm(dim=-1).mean().clamp(min=1e-6))
        first_x, first_y = first_x * self.x_scale, first_y * self.y_scale
        self.dictionary = Dictionary(config)
        d = self.dictionary
        with torch.no_grad():
            w = torch.randn(config.n_features, config.d_out, generator=generator)
            d.W_dec.copy_(w / w.norm(dim=1, keepdim=True))
            # encoder starts as the decoder's transpose (Gao et al.) where the two spaces have one width
            if config.d_in == config.d_out:
                d.W_enc.copy_(d.W_dec.T)
            else:
                d.W_enc.copy_(torch.randn(config.d_in, config.n_features, generator=generator) / config.d_in ** 0.5)
            d.b_dec.copy_(first_y.mean(0))
        self.scale = float(((first_y - first_y.mean(0)) ** 2).sum(-1).mean().sqrt().clamp(min=1e-6))
        if d.log_threshold is not None:
            with torch.no_grad():
                d.log_threshold.fill_(math.log(0.1 * self.scale / config.d_out ** 0.5 + 1e-6))
        self.sparsity = cfg.sparsity_coeff if cfg.sparsity_coeff is not None else cfg.default_sparsity
        self.optimizer = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
        self.since_fired = torch.zeros(config.n_features)  # tokens since each feature last fired
        self.last = {}

    def activations(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Training-time act: (values (N, k) or dense (N, n), indices (N, k) or None, sparsity penalty)."""
        d, act = self.dictionary, self.cfg.activation
        if act == "topk":
            top = pre.topk(self.cfg.k, dim=-1)
            return top.values.clamp(min=0), top.indices, pre.new_zeros(())
        if act == "relu":
            f = pre.clamp(min=0)
            return f, None, self.sparsity * (f.sum(-1) / self.scale).mean()
        threshold = d.threshold.to(pre.dtype)
        eps = BANDWIDTH * self.scale / self.dictionary.config.d_out ** 0.5
        f = _JumpReLU.apply(pre, threshold, eps)
        return f, None, self.sparsity * _Step.apply(pre, threshold, eps).sum(-1).mean()

    @torch.no_grad()
    def resample_dead(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> int:
        """Anthropic's resampling (Towards Monosemanticity): each dead feature restarts on a token the dictionary
        reconstructs badly (drawn with probability ~ squared error): its decoder row points along that token's
        error, its encoder column along its input, at a fifth of the live encoders' size; Adam forgets it."""
        dead = (self.since_fired > self.cfg.dead_after_tokens).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        d = self.dictionary
        x, y = x * self.x_scale, y * self.y_scale
        err = y - d(x)                                                    # (N, d_out)
        weights = (err ** 2).sum(-1)
        picks = torch.multinomial(weights / weights.sum(), dead.numel(), replacement=True, generator=generator)
        alive = torch.ones(d.config.n_features, dtype=torch.bool)
        alive[dead] = False
        enc_norm = d.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
        x_dir = x[picks] / x[picks].norm(dim=-1, keepdim=True).clamp(min=1e-8)   # (n_dead, d_in)
        e_dir = err[picks] / err[picks].norm(dim=-1, keepdim=True).clamp(min=1e-8)
        d.W_dec[dead] = e_dir
        d.W_enc[:, dead] = (x_dir * 0.2 * enc_norm).T
        d.b_enc[dead] = 0.0
        for p in (d.W_enc, d.b_enc, d.W_dec):
            state = self.optimizer.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    if p is d.W_enc:
                        state[key][:, dead] = 0.0
                    else:
                        state[key][dead] = 0.0
        self.since_fired[dead] = 0
        return int(dead.numel())

    def decode(self, values: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        d = self.dictionary
        if indices is None:
            return d.decode(values)
        # sparse decode: k rows of W_dec per token instead of a dense (N, n) @ (n, d_out)
        return F.embedding_bag(indices, d.W_dec.to(values.dtype), per_sample_weights=values, mode="sum") + d.b_dec

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float, autocast: Callable) -> None:
        """x (N, d_in), y (N, d_out) fp32: one Adam step."""
        d, cfg = self.dictionary, self.cfg
        x, y = x * self.x_scale, y * self.y_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        var = ((y - y.mean(0)) ** 2).sum(-1).mean().clamp(min=1e-8)
        with autocast():
            pre = d.pre_activations(x)
            values, indices, penalty = self.activations(pre)
            y_hat = (self.decode(values, indices) + d.skip_term(x)).float()
            mse = ((y_hat - y) ** 2).sum(-1).mean() / var
            fired = (values > 0)
            if indices is not None:
                fired_features = torch.zeros(d.config.n_features, dtype=torch.bool).index_fill_(
                    0, indices[fired].unique(), True)
            else:
                fired_features = fired.any(0)
            self.since_fired = torch.where(fired_features, 0, self.since_fired + x.size(0))
            dead = self.since_fired > cfg.dead_after_tokens
            aux = pre.new_zeros(())
            n_dead = int(dead.sum())
            if n_dead:  # AuxK: the dead features' top pre-activations model the residual error
                k_aux = min(cfg.aux_k, n_dead)
                dead_pre = pre.float().masked_fill(~dead, float("-inf"))
                top = dead_pre.topk(k_aux, dim=-1)
                err = (y - y_hat).detach()
                err_hat = F.embedding_bag(top.indices, d.W_dec, per_sample_weights=top.values,
                                          mode="sum")
                aux = cfg.aux_coeff * ((err_hat - err) ** 2).sum(-1).mean() / var
            loss = mse + penalty.float() + aux.float()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # keep decoder rows on the unit sphere: drop the gradient along each row
            g, w = d.W_dec.grad, d.W_dec
            if g is not None:
                g -= (g * w).sum(1, keepdim=True) * w
        self.optimizer.step()
        with torch.no_grad():
            d.W_dec /= d.W_dec.norm(dim=1, keepdim=True).clamp(min=1e-8)
        l0 = float(fired.sum(-1).float().mean())
        self.last = {"fvu": float(mse.detach()), "l0": l0, "dead": n_dead}


    @torch.no_grad()
    def export(self) -> Dictionary:
        """The dictionary in the model's own units: f and y_hat of the file's formula on raw activations equal
        the trained ones divided by y_scale (decoder rows stay unit-norm)."""
        d, out = self.dictionary, Dictionary(self.dictionary.config)
        out.W_enc.copy_(d.W_enc * (self.x_scale / self.y_scale))
        out.b_enc.copy_(d.b_enc / self.y_scale)
        out.W_dec.copy_(d.W_dec)
        out.b_dec.copy_(d.b_dec / self.y_scale)
        if d.W_skip is not None:  # y_hat = (x * xs) @ W / ys
            out.W_skip.copy_(d.W_skip * (self.x_scale / self.y_scale))
        if d.log_threshold is not None:
            out.log_threshold.copy_(d.log_threshold - math.log(self.y_scale))
        return out.eval().requires_grad_(False)


def lr_at(step: int, total: int, lr: float) -> float:
    """Short warmup, constant, linear decay over the last 20% (decay is what settles a dictionary)."""
    warm = max(1, total // 50)
    if step < warm:
        return lr * (step + 1) / warm
    decay_start = int(total * 0.8)
    if step >= decay_start:
        return lr * max(0.0, (total - step) / max(1, total - decay_start))
    return lr


class ActivationStream:
    """Batches of activations for training: B random block_size windows of the training ids per batch (B * T
    about cfg.batch_tokens), run once through the model (no grad, bf16 where native), the named sites recorded
    as fp32 (B*T, C) tensors. `total` steps cover cfg.tokens."""

    def __init__(self, model: GPT, train_ids: torch.Tensor, cfg: FeatureTrainConfig, names: set[str],
                 generator: torch.Generator):
        mc = model.config
        self.model, self.names, self.generator = model, names, generator
        self.device = next(model.parameters()).device
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        self.T = mc.block_size
        self.train_ids = torch.as_tensor(train_ids, dtype=torch.long).flatten()
        if len(self.train_ids) < self.T + 1:
            raise DictionaryError(f"the training text has {len(self.train_ids)} tokens, fewer than one window of "
                                  f"{self.T}")
        self.B = max(1, cfg.batch_tokens // self.T)
        self.total = max(1, cfg.tokens // (self.B * self.T))

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def next(self) -> dict[str, torch.Tensor]:
        ix = torch.randint(len(self.train_ids) - self.T, (self.B,), generator=self.generator)
        x = self.train_ids[ix[:, None] + torch.arange(self.T)].to(self.device)  # (B, T)
        trace = Trace(self.names)
        with torch.no_grad(), self.autocast():
            self.model(x, trace=trace)
        return {k: v.float().reshape(-1, v.size(-1)).cpu() for k, v in trace.acts.items()}  # (B*T, C)

    def training_record(self, cfg: FeatureTrainConfig, seconds: float) -> dict:
        """What config.json's "training" records (every dictionary of the run adds its own extras)."""
        return {"tokens": self.total * self.B * self.T, "steps": self.total, "batch_tokens": self.B * self.T,
                "lr": cfg.lr, "seconds": round(seconds, 1), "seed": cfg.seed,
                "dtype": str(self.dtype).replace("torch.", ""), "aux_k": cfg.aux_k,
                "dead_after_tokens": cfg.dead_after_tokens, **cfg.extra}


def train_dictionaries(model: GPT, train_ids: torch.Tensor, cfg: FeatureTrainConfig, digest: str,
                       progress: Callable[[int, int, dict], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> list[Dictionary]:
    """Train one dictionary per layer of cfg.layers on activations of `model` over random windows of
    `train_ids` (1-D, the run's training split). progress(step, total, stats) is called after every step;
    should_stop() returning True ends training early (the result is then None, nothing to save)."""
    mc = model.config
    cfg.validate(mc)
    if cfg.kind == "clt":
        raise DictionaryError("a cross-layer transcoder trains with gpt.interp.features.clt_training.train_crosslayer")
    layers = list(range(mc.n_layer)) if not cfg.layers else list(cfg.layers)
    generator = torch.Generator().manual_seed(cfg.seed)
    sites = [site_names(cfg.kind, layer, cfg.site) for layer in layers]
    stream = ActivationStream(model, train_ids, cfg, {n for pair in sites for n in pair}, generator)
    total = stream.total
    was_training = model.training
    model.eval()
    acts = stream.next()
    trainers = []
    for inp, out in sites:
        config = DictionaryConfig(cfg.kind, inp, out, cfg.activation, cfg.n_features, acts[inp].size(-1),
                                  acts[out].size(-1), digest, cfg.k if cfg.activation == "topk" else None,
                                  skip=cfg.skip)
        trainers.append(DictionaryTrainer(config.validate("training"), cfg, acts[inp], acts[out], generator))
    t0 = time.perf_counter()
    try:
        for step in range(total):
            if step:
                acts = stream.next()
            lr = lr_at(step, total, cfg.lr)
            resample = step in {int(total * f) for f in cfg.resample_at}
            for tr, (inp, out) in zip(trainers, sites):
                tr.step(acts[inp], acts[out], lr, stream.autocast)
                if resample:
                    tr.resample_dead(acts[inp], acts[out], generator)
            if progress is not None:
                progress(step + 1, total, {"seconds": time.perf_counter() - t0,
                                           "fvu": [tr.last["fvu"] for tr in trainers],
                                           "l0": [tr.last["l0"] for tr in trainers],
                                           "dead": [tr.last["dead"] for tr in trainers]})
            if should_stop is not None and should_stop():
                return None
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - t0
    out = []
    for tr in trainers:
        d = tr.export()
        d.config.training = {**stream.training_record(cfg, seconds), "sparsity_coeff": tr.sparsity}
        out.append(d)
    return out
