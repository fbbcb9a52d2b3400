"""bf16 training on CPU through a working copy of the model, with fp32 master weights.

Autocast casts every weight and every LayerNorm output per forward and keeps the residual stream in fp32:
at nanoGPT's CPU size that is ~240 small copies per step, a large share of the time. Instead we keep

* `model`: the fp32 model, the one the optimizer updates, checkpoints save and evaluation reads;
* `work`: a bf16 copy that runs forward and backward, refreshed from `model` with one foreach copy per step;
* one flat fp32 gradient buffer: each master parameter's `.grad` is a view into it, so accumulating the bf16
  gradients, the global norm, clipping and zeroing are one op each instead of one per parameter.

Everything the run's state depends on (weights, optimizer, RNG) stays in `model`, so resume is unchanged.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch
import torch.nn as nn


@functools.cache  # the CPU does not change while we run
def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matmuls run natively. Without them (AVX2 only) PyTorch emulates bf16 and a
    bf16 matmul is ~45x slower than fp32 (measured: 297 vs 6.6 ms for Muon's Newton-Schulz at 4 x 128 x 512)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def fast_matmul_dtype(device: torch.device) -> torch.dtype:
    """The cheapest dtype that is still accurate enough for an iteration like Newton-Schulz on `device`."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16()):
        return torch.bfloat16
    return torch.float32


class LowPrecisionCopy:
    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16):
        self.model = model
        self.work = copy.deepcopy(model).to(dtype)  # deepcopy keeps weight tying
        self.work_forward = self.work  # what forward_backward calls: the Trainer may put a compiled work here
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.work_params = [p for p in self.work.parameters() if p.requires_grad]
        sizes = [p.numel() for p in self.params]
        self.flat_grad = torch.zeros(sum(sizes), dtype=torch.float32, device=self.params[0].device)
        self.grads = [g.view_as(p) for g, p in zip(self.flat_grad.split(sizes), self.params)]

    @torch.no_grad()
    def begin_step(self) -> None:
        """Copy the master weights into the bf16 copy and give every master parameter a zeroed fp32 grad."""
        torch._foreach_copy_(self.work_params, self.params)
        if self.work.training != self.model.training:  # Module.train walks every submodule
            self.work.train(self.model.training)
        self.work.grad_checkpoint = getattr(self.model, "grad_checkpoint", False)
        self.flat_grad.zero_()
        for p, g in zip(self.params, self.grads):
            p.grad = g  # the optimizer may have set grads to None since the last step

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> float:
        """Loss of one micro-batch (times scale); its gradient is added to the fp32 master grads."""
        _, loss = self.work_forward(x, y)
        (loss * scale).backward()
        with torch.no_grad():
            work_grads = [p.grad for p in self.work_params]
            if any(g is None for g in work_grads):  # a parameter unused by this forward
                pairs = [(g, w) for g, w in zip(self.grads, work_grads) if w is not None]
                torch._foreach_add_([g for g, _ in pairs], [w for _, w in pairs])
            else:
                torch._foreach_add_(self.grads, work_grads)
            for p in self.work_params:
                p.grad = None
        return loss.item() * scale

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> float:
        """Global L2 norm of the fp32 grads before clipping; scales them to max_norm when above it (max_norm>0),
        as torch.nn.utils.clip_grad_norm_ does."""
        norm = torch.linalg.vector_norm(self.flat_grad)
        if max_norm > 0:
            self.flat_grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
        return norm.item()
