"""Optimizers: AdamW (nanoGPT's) or Muon on the hidden matrices with AdamW on the rest (modded-nanogpt's).

Muon (Jordan et al. 2024; torch.optim.Muon) replaces each 2-D weight update by its nearest semi-orthogonal matrix
(a few Newton-Schulz iterations on the momentum), so every direction of a matrix learns at the same rate.
It is meant for the matrices inside the blocks only: embeddings, the LM head and the 1-D gains and biases stay on
AdamW. `MuonWithAdamW` holds both and looks like one optimizer to the Trainer: one `param_groups` list (the
schedule sets each group's lr as `lr * group["lr_scale"]`), one `state_dict` (the parameter ids of the Muon part
follow AdamW's), so checkpoints and exact resume work unchanged.

Both are small classes of our own with torch.optim's arithmetic and state layout (tests compare them with
torch.optim.AdamW(fused=True) and torch.optim.Muon): torch.optim's first call imports torch._dynamo, which cost
every training command 1.35 s here.
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from gpt.config import TrainConfig
from gpt.training.precision import fast_matmul_dtype

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's (Keller Jordan's) quintic Newton-Schulz


def orthogonalise(G: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Batched Newton-Schulz: G (N, rows, cols) -> roughly U V^T of each matrix's SVD U S V^T.
    torch.optim.Muon's _zeropower_via_newtonschulz for a stack of same-shaped matrices at once. It runs in bf16
    where bf16 matmuls are native (CUDA, CPUs with AVX-512 BF16/AMX), in fp32 elsewhere: emulated bf16 made
    each Muon step ~0.8 s instead of ~20 ms on an AVX2-only CPU."""
    a, b, c = NS_COEFFICIENTS
    X = G.to(fast_matmul_dtype(G.device))
    wide = X.size(-2) <= X.size(-1)
    if not wide:
        X = X.mT  # iterate on the smaller Gram matrix
    X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm <= 1
    for _ in range(steps):
        gram = X @ X.mT  # (N, r, r)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b*A + c*A^2
        X = torch.baddbmm(X, poly, X, beta=a)  # a*X + (b*A + c*A^2) X
    return X if wide else X.mT


class Optimizer:
    """What the Trainer uses of torch.optim.Optimizer (param_groups, state, zero_grad, and state_dict /
    load_state_dict in torch's layout, so resume files of either load), without torch.optim itself: its first
    call imports torch._dynamo, 1.35 s measured here, a tenth of the CPU speedrun's whole budget."""

    def __init__(self, params, defaults: dict):
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = defaults
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict] = defaultdict(dict)  # parameter -> its state tensors

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def state_dict(self) -> dict:
        """{"state": {index: {name: tensor}}, "param_groups": [{hyperparameters, "params": [index]}]}"""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: s for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict) -> None:
        saved = sd["param_groups"]
        if [len(g["params"]) for g in saved] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the saved optimizer state has a different number of parameters per group")
        by_id = {old: p for g_old, g in zip(saved, self.param_groups) for old, p in zip(g_old["params"], g["params"])}
        self.state = defaultdict(dict)
        for pid, s in sd["state"].items():
            p = by_id[int(pid)]
            # as torch: state tensors follow their parameter's device and dtype, the step count stays fp32
            self.state[p] = {k: (v.to(p.device) if k == "step" else v.to(p.device, p.dtype))
                             if torch.is_tensor(v) else v for k, v in s.items()}
        self.param_groups = [{**g_old, "params": g["params"]} for g_old, g in zip(saved, self.param_groups)]

    def params_to_step(self, group: dict, new_state) -> list[torch.Tensor]:
        """The group's parameters that have a gradient; one seen for the first time gets new_state(p)."""
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            if not self.state[p]:
                self.state[p] = new_state(p)
        return params


class AdamW(Optimizer):
    """torch.optim.AdamW(fused=True)'s arithmetic (the same fused kernel, the same state), or a plain loop on a
    device without that kernel."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        devices = {p.device.type for g in self.param_groups for p in g["params"]}
        self.fused = devices <= {"cpu", "cuda", "mps"}

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = self.params_to_step(group, lambda p: {
                "step": torch.zeros((), dtype=torch.float32, device=p.device),
                "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)})
            if not params:
                continue
            grads = [p.grad for p in params]
            m = [self.state[p]["exp_avg"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]
            steps = [self.state[p]["step"] for p in params]
            torch._foreach_add_(steps, 1)
            (beta1, beta2), lr, wd, eps = group["betas"], group["lr"], group["weight_decay"], group["eps"]
            if self.fused:
                torch._fused_adamw_(params, grads, m, v, [], steps, lr=lr, beta1=beta1, beta2=beta2,
                                    weight_decay=wd, eps=eps, amsgrad=False, maximize=False)
                continue
            for p, g, m_i, v_i, t in zip(params, grads, m, v, steps):
                n = t.item()
                p.mul_(1 - lr * wd)
                m_i.lerp_(g, 1 - beta1)
                v_i.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (v_i.sqrt() / math.sqrt(1 - beta2 ** n)).add_(eps)
                p.addcdiv_(m_i, denom, value=-lr / (1 - beta1 ** n))


class BatchedMuon(Optimizer):
    """torch.optim.Muon's state and arithmetic (its defaults, its "original" lr adjustment), but one batched
    Newton-Schulz per group of same-shaped matrices instead of one per matrix: at our sizes (128 x 512 at most)
    the iteration's ~15 small matmuls per matrix cost more in call overhead than in arithmetic (bench/README.md)."""

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, eps: float = 1e-7, ns_steps: int = 5):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      eps=eps, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = self.params_to_step(group, lambda p: {"momentum_buffer": torch.zeros_like(p)})
            if not params:
                continue
            grads = [p.grad for p in params]
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            momentum = group["momentum"]
            torch._foreach_lerp_(bufs, grads, 1 - momentum)
            updates = [g.lerp(b, momentum) for g, b in zip(grads, bufs)] if group["nesterov"] else bufs
            by_shape: dict[tuple, list[int]] = defaultdict(list)
            for i, p in enumerate(params):
                by_shape[tuple(p.shape)].append(i)
            lr, wd = group["lr"], group["weight_decay"]
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            for (rows, cols), index in by_shape.items():
                ortho = orthogonalise(torch.stack([updates[i] for i in index]), group["ns_steps"], group["eps"])
                scale = lr * math.sqrt(max(1.0, rows / cols))  # torch.optim.Muon's "original" lr adjustment
                torch._foreach_add_([params[i] for i in index], list(ortho.unbind(0)), alpha=-scale)


def adamw(groups: list[dict], cfg: TrainConfig, device: torch.device) -> AdamW:
    """AdamW with the fused kernel where it exists: one call per step instead of one per parameter."""
    return AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def is_hidden_matrix(name: str, p: torch.nn.Parameter) -> bool:
    """The 2-D weights inside the transformer blocks (q/k/v, projections, MLP): Muon's share."""
    return p.dim() == 2 and name.startswith("blocks.")


class MuonWithAdamW:
    """Muon on the hidden matrices, AdamW on everything else, stepped together."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # tied weights listed once
        hidden = [p for n, p in named if is_hidden_matrix(n, p)]
        other = [p for n, p in named if not is_hidden_matrix(n, p)]
        self.adamw = adamw([{"params": [p for p in other if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                            {"params": [p for p in other if p.dim() < 2], "weight_decay": 0.0}], cfg, device)
        # Muon's own default lr adjustment ("original": x sqrt(max(1, rows/cols))) keeps updates' RMS similar
        # across shapes; its weight decay is decoupled (lr * wd), as AdamW's
        self.muon = BatchedMuon(hidden, lr=cfg.muon_lr, momentum=cfg.muon_momentum,
                                     weight_decay=cfg.weight_decay, nesterov=True)
        for group in self.muon.param_groups:
            group["lr_scale"] = cfg.muon_lr / cfg.lr
        self.param_groups = self.adamw.param_groups + self.muon.param_groups
        self._n_adamw = sum(len(g["params"]) for g in self.adamw.param_groups)

    @torch.no_grad()
    def step(self) -> None:
        self.adamw.step()
        self.muon.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        """One optimizer's layout: parameter ids 0..n-1 are AdamW's, n.. Muon's."""
        a, m = self.adamw.state_dict(), self.muon.state_dict()
        state = dict(a["state"])
        state.update({pid + self._n_adamw: s for pid, s in m["state"].items()})
        shifted = [{**g, "params": [pid + self._n_adamw for pid in g["params"]]} for g in m["param_groups"]]
        return {"state": state, "param_groups": a["param_groups"] + shifted}

    def load_state_dict(self, sd: dict) -> None:
        n, k = self._n_adamw, len(self.adamw.param_groups)
        groups = sd["param_groups"]
        self.adamw.load_state_dict({"state": {pid: s for pid, s in sd["state"].items() if pid < n},
                                    "param_groups": groups[:k]})
        self.muon.load_state_dict({
            "state": {pid - n: s for pid, s in sd["state"].items() if pid >= n},
            "param_groups": [{**g, "params": [pid - n for pid in g["params"]]} for g in groups[k:]]})
        self.param_groups = self.adamw.param_groups + self.muon.param_groups


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device):
    """cfg.optimizer "adamw": AdamW, weight decay on matrices only (nanoGPT); "muon": MuonWithAdamW."""
    if cfg.optimizer == "muon":
        return MuonWithAdamW(model, cfg, device)
    params = [p for p in model.parameters() if p.requires_grad]
    return adamw([{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], cfg, device)
