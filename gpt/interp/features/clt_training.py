"""Training a cross-layer transcoder (gpt.interp.features.crosslayer) on a model's activations, streamed from its
training text with the per-layer trainer's machinery (gpt.interp.features.training: the activation stream, the
learning-rate schedule, AuxK and Anthropic-style resampling of dead features).

Every step records every layer's MLP input and output in one forward pass and takes one Adam step on the whole CLT.
The loss is the sum over output layers j of the reconstruction error of blocks.{j}.mlp.out as a share of its
variance (the per-layer trainer's normalised MSE, one per output), with TopK per encoder layer (k per layer; as
Gao et al., the sparsity is the k). Inputs and targets are scaled to E||v||^2 = width per layer while training, as
the per-layer trainer does; each feature's decoder is kept at unit norm *in the model's units up to one factor per
source layer* (its L - i output vectors divided by their targets' scales, times its own layer's), so saving folds
one scale per layer into the encoder, as the per-layer trainer's export does: every feature of a layer is scaled
alike, and the TopK choice in the file is the trained one.
"""
from __future__ import annotations

import time
from typing import Callable

import torch
from torch.nn import functional as F

from gpt.interp.features.crosslayer import CrossLayerConfig, CrossLayerTranscoder
from gpt.interp.features.dictionary import DictionaryError
from gpt.interp.features.training import ActivationStream, FeatureTrainConfig, lr_at
from gpt.model import GPT


class CrossLayerTrainer:
    """One CLT being trained, in scaled units, with its optimizer and dead-feature bookkeeping."""

    def __init__(self, config: CrossLayerConfig, cfg: FeatureTrainConfig, first_xs: list[torch.Tensor],
                 first_ys: list[torch.Tensor], generator: torch.Generator):
        self.cfg, L = cfg, config.n_layers
        self.x_scale = [float(config.d_in ** 0.5 / x.norm(dim=-1).mean().clamp(min=1e-6)) for x in first_xs]
        self.y_scale = [float(config.d_out ** 0.5 / y.norm(dim=-1).mean().clamp(min=1e-6)) for y in first_ys]
        # per source layer i: (L - i,) the factor from a scaled decoder vector of output j to the model's units,
        # times layer i's own scale (1 for j = i): the decoders then start and stay near unit size while training
        self.unscale = [torch.tensor([self.y_scale[i] / s for s in self.y_scale[i:]]) for i in range(L)]
        self.clt = CrossLayerTranscoder(config)
        c = self.clt
        with torch.no_grad():
            for i in range(L):
                w = torch.randn(config.n_features, L - i, config.d_out, generator=generator)
                c.W_dec[i].copy_(w)
                same = w[:, 0] / w[:, 0].norm(dim=-1, keepdim=True)
                c.W_enc[i].copy_(same.T if config.d_in == config.d_out else
                                 torch.randn(config.d_in, config.n_features, generator=generator) / config.d_in ** 0.5)
                c.b_dec[i].copy_(first_ys[i].mean(0) * self.y_scale[i])
            self.renormalise()
        self.optimizer = torch.optim.Adam(c.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
        self.since_fired = torch.zeros(L, config.n_features)
        self.last = {}

    def _weighted(self, i: int) -> torch.Tensor:
        """(n, L - i, d_out) layer i's decoders in the model's units times y_scale[i] (unit norm per feature)."""
        return self.clt.W_dec[i] * self.unscale[i][None, :, None]

    @torch.no_grad()
    def renormalise(self) -> None:
        for i in range(self.clt.config.n_layers):
            norms = self._weighted(i).flatten(1).norm(dim=1).clamp(min=1e-8)
            self.clt.W_dec[i] /= norms[:, None, None]

    def _decode_all(self, i: int, values: torch.Tensor, indices: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """Sparse decode of layer i's features to all its outputs: (N, k) values at (N, k) indices -> (N, L-i, d)."""
        out = F.embedding_bag(indices, W.flatten(1).to(values.dtype), per_sample_weights=values, mode="sum")
        return out.view(values.size(0), W.size(1), W.size(2))

    def step(self, xs: list[torch.Tensor], ys: list[torch.Tensor], lr: float, autocast: Callable) -> None:
        """xs, ys: every layer's MLP input and output (N, C) fp32. One Adam step."""
        c, cfg, L = self.clt, self.cfg, self.clt.config.n_layers
        xs = [x * s for x, s in zip(xs, self.x_scale)]
        ys = [y * s for y, s in zip(ys, self.y_scale)]
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        var = [((y - y.mean(0)) ** 2).sum(-1).mean().clamp(min=1e-8) for y in ys]
        with autocast():
            pres, tops = [], []
            y_hat = [c.b_dec[j].expand_as(ys[j]) for j in range(L)]
            for i in range(L):
                pre = c.pre_activations(i, xs[i])
                top = pre.topk(cfg.k, dim=-1)
                values = top.values.clamp(min=0)
                out = self._decode_all(i, values, top.indices, c.W_dec[i])
                for j in range(i, L):
                    y_hat[j] = y_hat[j] + out[:, j - i]
                pres.append(pre)
                tops.append((values, top.indices))
            mses = [((y_hat[j].float() - ys[j]) ** 2).sum(-1).mean() / var[j] for j in range(L)]
            loss = sum(mses)
            errors = [(ys[j] - y_hat[j].float()).detach() for j in range(L)]
            n_dead, aux = [], pres[0].new_zeros(())
            for i, (values, indices) in enumerate(tops):
                fired = torch.zeros(c.config.n_features, dtype=torch.bool).index_fill_(
                    0, indices[values > 0].unique(), True)
                self.since_fired[i] = torch.where(fired, 0, self.since_fired[i] + xs[i].size(0))
                dead = self.since_fired[i] > cfg.dead_after_tokens
                n_dead.append(int(dead.sum()))
                if n_dead[-1]:  # AuxK: the dead features' top pre-activations model what the live ones miss
                    top = pres[i].float().masked_fill(~dead, float("-inf")).topk(min(cfg.aux_k, n_dead[-1]), dim=-1)
                    err_hat = self._decode_all(i, top.values, top.indices, c.W_dec[i].float())
                    aux = aux + sum(((err_hat[:, j - i] - errors[j]) ** 2).sum(-1).mean() / var[j]
                                    for j in range(i, L))
            loss = loss + cfg.aux_coeff * aux
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # stay on the constraint: drop each decoder gradient's part along the norm's normal
            for i in range(L):
                g, w = c.W_dec[i].grad, c.W_dec[i]
                if g is not None:
                    normal = (w * self.unscale[i][None, :, None] ** 2).flatten(1)  # d(||weighted||^2 / 2) / dW
                    gf = g.view(g.size(0), -1)
                    gf -= ((gf * normal).sum(1, keepdim=True) / (normal * normal).sum(1, keepdim=True).clamp(
                        min=1e-20)) * normal
        self.optimizer.step()
        self.renormalise()
        self.last = {"fvu": [float(m.detach()) for m in mses],
                     "l0": [float((v > 0).sum(-1).float().mean()) for v, _ in tops], "dead": n_dead}

    @torch.no_grad()
    def resample_dead(self, xs: list[torch.Tensor], ys: list[torch.Tensor], generator: torch.Generator) -> int:
        """Each dead feature of layer i restarts on a token the CLT reconstructs badly over outputs i..L-1 (drawn
        with probability ~ squared error): its decoder along that token's errors, its encoder along its input at
        a fifth of the live encoders' size; Adam forgets it (as the per-layer trainer's resample_dead)."""
        c, L = self.clt, self.clt.config.n_layers
        xs = [x * s for x, s in zip(xs, self.x_scale)]
        ys = [y * s for y, s in zip(ys, self.y_scale)]
        y_hat = [c.decode(j, [c.encode(i, x) for i, x in enumerate(xs)]) for j in range(L)]
        errors = torch.stack([y - yh for y, yh in zip(ys, y_hat)], 1)  # (N, L, d)
        restarted = 0
        for i in range(L):
            dead = (self.since_fired[i] > self.cfg.dead_after_tokens).nonzero().flatten()
            if dead.numel() == 0:
                continue
            err = errors[:, i:]                                         # (N, L - i, d)
            weights = (err ** 2).flatten(1).sum(-1)
            picks = torch.multinomial(weights / weights.sum(), dead.numel(), replacement=True, generator=generator)
            alive = torch.ones(c.config.n_features, dtype=torch.bool)
            alive[dead] = False
            enc_norm = c.W_enc[i][:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
            x = xs[i][picks]
            c.W_dec[i][dead] = err[picks]
            c.W_enc[i][:, dead] = (x / x.norm(dim=-1, keepdim=True).clamp(min=1e-8) * 0.2 * enc_norm).T
            c.b_enc[i][dead] = 0.0
            for p in (c.W_enc[i], c.b_enc[i], c.W_dec[i]):
                state = self.optimizer.state.get(p, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        if p is c.W_enc[i]:
                            state[key][:, dead] = 0.0
                        else:
                            state[key][dead] = 0.0
            self.since_fired[i, dead] = 0
            restarted += int(dead.numel())
        self.renormalise()
        return restarted

    @torch.no_grad()
    def export(self) -> CrossLayerTranscoder:
        """The CLT in the model's units: layer i's features are the trained ones divided by y_scale[i] (the
        encoder takes x_scale[i] / y_scale[i]), decoders become unit-norm per feature, and each output's bias is
        divided by its scale: y_hat_j of the file on raw activations = the trained one / y_scale[j]."""
        c, out = self.clt, CrossLayerTranscoder(self.clt.config)
        for i in range(c.config.n_layers):
            out.W_enc[i].copy_(c.W_enc[i] * (self.x_scale[i] / self.y_scale[i]))
            out.b_enc[i].copy_(c.b_enc[i] / self.y_scale[i])
            out.W_dec[i].copy_(self._weighted(i))
            out.b_dec[i].copy_(c.b_dec[i] / self.y_scale[i])
        return out.eval().requires_grad_(False)


def train_crosslayer(model: GPT, train_ids: torch.Tensor, cfg: FeatureTrainConfig, digest: str,
                     progress: Callable[[int, int, dict], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> list[CrossLayerTranscoder] | None:
    """Train one CLT over every layer of `model` (cfg.kind "clt", TopK with cfg.k per layer, cfg.n_features per
    layer). progress and should_stop as train_dictionaries' (the stats carry one fvu per output layer and one L0
    and dead count per encoder layer); None when stopped. A list of one, as train_dictionaries returns a list."""
    mc = model.config
    if cfg.kind != "clt":
        raise DictionaryError(f"train_crosslayer trains --kind clt, not {cfg.kind!r}")
    cfg.validate(mc)
    L = mc.n_layer
    generator = torch.Generator().manual_seed(cfg.seed)
    ins = [f"blocks.{i}.mlp.in" for i in range(L)]
    outs = [f"blocks.{i}.mlp.out" for i in range(L)]
    stream = ActivationStream(model, train_ids, cfg, set(ins) | set(outs), generator)
    was_training = model.training
    model.eval()
    acts = stream.next()
    config = CrossLayerConfig(L, "topk", cfg.n_features, acts[ins[0]].size(-1), acts[outs[0]].size(-1), digest,
                              cfg.k).validate("training")
    trainer = CrossLayerTrainer(config, cfg, [acts[n] for n in ins], [acts[n] for n in outs], generator)
    resample_steps = {int(stream.total * f) for f in cfg.resample_at}
    t0 = time.perf_counter()
    try:
        for step in range(stream.total):
            if step:
                acts = stream.next()
            xs, ys = [acts[n] for n in ins], [acts[n] for n in outs]
            trainer.step(xs, ys, lr_at(step, stream.total, cfg.lr), stream.autocast)
            if step in resample_steps:
                trainer.resample_dead(xs, ys, generator)
            if progress is not None:
                progress(step + 1, stream.total, {"seconds": time.perf_counter() - t0, **trainer.last})
            if should_stop is not None and should_stop():
                return None
    finally:
        model.train(was_training)
    clt = trainer.export()
    clt.config.training = stream.training_record(cfg, time.perf_counter() - t0)
    return [clt]
