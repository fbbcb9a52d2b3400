"""Random dictionaries for the interop checks, shared by tests/test_interop.py and bench/interop.py (a support
module, not a test module; the bench runs with tests/ on PYTHONPATH)."""
from __future__ import annotations

from pathlib import Path

import torch

from gpt.interp.features.dictionary import Dictionary, DictionaryConfig, LoadedDictionary


def random_loaded_dictionary(kind: str, activation: str, layer: int, C: int, n: int, k: int, skip: bool, seed: int,
                             name: str) -> LoadedDictionary:
    """A frozen dictionary on layer's MLP (transcoder) or resid_mid (SAE), C wide, n features (k active for TopK),
    random weights of scale 0.5 drawn from `seed`, decoder rows normalised, JumpReLU thresholds in [0.05, 0.55)."""
    site = (f"blocks.{layer}.mlp.in", f"blocks.{layer}.mlp.out") if kind == "transcoder" else (
        f"blocks.{layer}.resid_mid",) * 2
    cfg = DictionaryConfig(kind, *site, activation, n, C, C, "ab" * 32, k if activation == "topk" else None, skip=skip)
    d = Dictionary(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (d.W_enc, d.b_enc, d.W_dec, d.b_dec) + ((d.W_skip,) if skip else ()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        d.normalise_decoder()
        if d.log_threshold is not None:
            d.log_threshold.copy_(torch.rand(n, generator=g).mul(0.5).add(0.05).log())
    return LoadedDictionary(name, Path("."), cfg, d.eval().requires_grad_(False), None)
