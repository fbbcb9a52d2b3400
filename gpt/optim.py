"""Optimizers: AdamW (nanoGPT's) or Muon on the hidden matrices with AdamW on the rest (modded-nanogpt's).

Muon (Jordan et al. 2024; torch.optim.Muon) replaces each 2-D weight update by its nearest semi-orthogonal matrix
(a few Newton-Schulz iterations in bf16 on the momentum), so every direction of a matrix learns at the same rate.
It is meant for the matrices inside the blocks only: embeddings, the LM head and the 1-D gains and biases stay on
AdamW. `MuonWithAdamW` holds both and looks like one optimizer to the Trainer: one `param_groups` list (the
schedule sets each group's lr as `lr * group["lr_scale"]`), one `state_dict` (the parameter ids of the Muon part
follow AdamW's), so checkpoints and exact resume work unchanged.
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

from .config import TrainConfig

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch.optim.Muon's (Keller Jordan's) quintic Newton-Schulz


def orthogonalise(G: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Batched Newton-Schulz: G (N, rows, cols) -> roughly U V^T of each matrix's SVD U S V^T, in bf16.
    torch.optim.Muon's _zeropower_via_newtonschulz for a stack of same-shaped matrices at once."""
    a, b, c = NS_COEFFICIENTS
    X = G.bfloat16()
    wide = X.size(-2) <= X.size(-1)
    if not wide:
        X = X.mT  # iterate on the smaller Gram matrix
    X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm <= 1
    for _ in range(steps):
        gram = X @ X.mT  # (N, r, r)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b*A + c*A^2
        X = torch.baddbmm(X, poly, X, beta=a)  # a*X + (b*A + c*A^2) X
    return X if wide else X.mT


class BatchedMuon(torch.optim.Muon):
    """torch.optim.Muon with the same state and arithmetic, but one batched Newton-Schulz per group of
    same-shaped matrices instead of one per matrix: at our sizes (128 x 512 at most) the iteration's ~15 small
    matmuls per matrix cost more in call overhead than in arithmetic (measured in bench/README.md)."""

    @torch.no_grad()
    def step(self, closure=None):
        assert closure is None, "BatchedMuon takes no closure"
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
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
        return None


def adamw(groups: list[dict], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with the fused kernel where it exists: one call per step instead of one per parameter
    (CPU and CUDA; bench/speedrun.py and the notes in bench/README.md compare it with foreach)."""
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, **kwargs)


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
