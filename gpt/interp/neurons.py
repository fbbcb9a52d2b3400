"""MLP neurons: what each hidden unit of a feed-forward layer responds to and what it writes.

* `neuron_activations(model, ids, layer)`: (T, 4C) activations after the nonlinearity for a prompt.
* `top_contexts(model, val_ids, ...)`: for every layer and neuron, the K validation positions where it fires
  most (one pass over the validation text in consecutive block_size windows, as validation loss is measured).
  `cached_top_contexts(run)` stores the result in the run folder (interp/neurons-step{step}.safetensors), so
  each run and step pays for it once.
* `neuron_logit_effect(model, layer, neuron)`: the neuron's output direction (its column of W_out, i.e. the row
  it adds to the residual stream per unit of activation) times the unembedding W_U: the tokens it promotes and
  suppresses directly (ignoring later layers and the final norm's rescaling).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gpt.evaluate import consecutive_windows
from gpt.interp.capture import InterpError, run_with_cache
from gpt.interp.scan_cache import cached_tensors, scan_file
from gpt.model import GPT
from gpt.training.trainer import resolve_dtype

TOP_K = 8              # contexts kept per neuron
# Tokens per forward: bounded memory (the shipped model: 32 windows of 128, 4096 x 768 floats per layer; GPT-2
# small: 4 windows of 1,024, 150 MB of activations over its 12 layers instead of 1.2 GB for 32 windows).
TOKENS_PER_BATCH = 4096
LOGITS_PER_BATCH = 50_000_000   # ... and at most this many logits (GPT-2's 50,257-token vocabulary: one window, 200 MB)
SCAN_FLOPS = 1e11   # a scan's forward on 2 quiet cores (bench/gpt2_pages.py: 8,192 GPT-2-small tokens in 21 s)
FOLDER = "interp"
# How much a page scans, in parameter x token products (the forward's cost grows with both). The shipped model's
# whole validation split (1.8M parameters x 111k tokens, 2e11) is scanned as the page opens; a bigger scan waits
# for a click that says what it costs, and reads at most MAX_SCAN (GPT-2 small: its first 8 windows, 8,192 tokens).
AUTO_SCAN = 2.5e11
MAX_SCAN = 1.05e12


def scan_length(config, n_tokens: int, budget: float = MAX_SCAN) -> int:
    """How many tokens of an n_tokens text a scan within `budget` reads: whole windows of the block size, at least
    one (a text shorter than one window is returned whole, for top_contexts to refuse with its length)."""
    from gpt.sizing import count_params
    T = config.block_size
    affordable = int(budget // max(1, count_params(config)))
    return min(n_tokens, max(T, affordable // T * T))


def scan_seconds(config, n_tokens: int) -> float:
    """About how long a scan of n_tokens takes here (2 FLOPs per parameter and token at SCAN_FLOPS), for the
    button that asks before a big one."""
    from gpt.sizing import count_params
    return 2 * count_params(config) * n_tokens / SCAN_FLOPS


def is_scanned(run, seq: torch.Tensor) -> bool:
    """True when the scan of seq is already kept in the run folder (showing it costs a file read)."""
    return cache_path(run.path, run.step, seq).is_file()


def require_mlp(model: GPT, layer: int | None = None) -> None:
    cfg = model.config
    if not cfg.has_mlp:
        raise InterpError(f"a {cfg.arch.replace('_', '-')} model has no feed-forward (MLP) layers: only the GPT "
                          "rung has them")
    if layer is not None and not (isinstance(layer, int) and 0 <= layer < cfg.n_layer):
        raise InterpError(f"layer must be 0..{cfg.n_layer - 1}, got {layer!r}")


def check_neuron(model: GPT, neuron: int) -> None:
    n = 4 * model.config.n_embd
    if not (isinstance(neuron, int) and 0 <= neuron < n):
        raise InterpError(f"neuron must be 0..{n - 1} (each MLP layer has 4 x {model.config.n_embd}), got {neuron!r}")


@torch.no_grad()
def neuron_activations(model: GPT, ids, layer: int) -> torch.Tensor:
    """(T, 4C) float32 activations of layer's MLP neurons (after the nonlinearity) at every prompt position."""
    require_mlp(model, layer)
    name = f"blocks.{layer}.mlp.post"
    return run_with_cache(model, ids, {name})[name][0].float().cpu()


@dataclass
class TopContexts:
    """Where each neuron fires most over a token sequence (the validation text)."""
    values: torch.Tensor      # (L, N, K) the K largest activations of each layer's N neurons, largest first
    positions: torch.Tensor   # (L, N, K) their token positions in the sequence
    n_tokens: int             # how many tokens were scanned

    def contexts(self, seq: torch.Tensor, layer: int, neuron: int, before: int = 24, after: int = 4):
        """[(activation, tokens before, the token, tokens after)] as id lists, largest first."""
        out = []
        for value, pos in zip(self.values[layer, neuron].tolist(), self.positions[layer, neuron].tolist()):
            out.append((value, seq[max(0, pos - before):pos].tolist(), int(seq[pos]),
                        seq[pos + 1:pos + 1 + after].tolist()))
        return out


@torch.no_grad()
def top_contexts(model: GPT, seq: torch.Tensor, k: int = TOP_K, max_tokens: int | None = None,
                 dtype: torch.dtype = torch.float32, progress=None) -> TopContexts:
    """Scan seq (1-D token ids) in consecutive non-overlapping windows of block_size and keep, per layer and
    neuron, the k positions of highest activation. A running top-k per batch of windows bounds memory.

    Fast enough for the whole validation split (bench/neurons.py): the trace records only the MLP activations,
    so attention runs its fused kernel (no (T, T) weights materialised), and the top-k runs over positions for
    all neurons at once. dtype=torch.bfloat16 runs the forward under bf16 autocast: ~1.6x faster on a CPU with
    native bf16; the top position of ~5% of neurons then differs from fp32's (near-ties). progress(fraction done)
    is called after every batch of windows (a page's progress bar; it may raise to stop the scan)."""
    require_mlp(model)
    cfg = model.config
    seq = torch.as_tensor(seq, dtype=torch.long).flatten()
    if max_tokens is not None:
        seq = seq[:max_tokens]
    T = cfg.block_size
    if len(seq) < T:
        raise InterpError(f"the evaluation text has {len(seq)} tokens, fewer than one window of {T}: this needs at least {T}")
    L, N = cfg.n_layer, 4 * cfg.n_embd
    best_v = torch.full((L, k, N), float("-inf"))         # kept as (k, N) per layer: top-k along positions
    best_p = torch.zeros((L, k, N), dtype=torch.long)
    names = {f"blocks.{i}.mlp.post" for i in range(L)}
    device = next(model.parameters()).device
    per_batch = max(1, min(TOKENS_PER_BATCH, LOGITS_PER_BATCH // cfg.vocab_size) // T)
    done = 0
    # every token once, the shorter last window included (gpt.evaluate.consecutive_windows)
    for batch, _ in consecutive_windows(seq, T, per_batch, targets=False):   # (B, T)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            cache = run_with_cache(model, batch.to(device), names)
        positions = torch.arange(done, done + batch.numel())              # (B*T,) positions in seq
        done += batch.numel()
        for i in range(L):
            acts = cache[f"blocks.{i}.mlp.post"].float().cpu().reshape(-1, N)   # (B*T, N)
            top = torch.topk(acts, min(k, acts.size(0)), dim=0)                # (k, N)
            merged_v = torch.cat([best_v[i], top.values])                      # (2k, N)
            merged_p = torch.cat([best_p[i], positions[top.indices]])
            keep = torch.topk(merged_v, k, dim=0)
            best_v[i], best_p[i] = keep.values, merged_p.gather(0, keep.indices)
        if progress is not None:
            progress(done / len(seq))
    return TopContexts(best_v.transpose(1, 2).contiguous(), best_p.transpose(1, 2).contiguous(), done)


def cache_path(run_dir: str | Path, step: int, seq: torch.Tensor) -> Path:
    """Where the scan of `seq` at `step` is kept: one file per step and text (the learner may switch texts)."""
    return scan_file(Path(run_dir) / FOLDER, f"neurons-step{int(step)}", seq)


def cached_top_contexts(run, seq: torch.Tensor, progress=None) -> TopContexts:
    """top_contexts for a loaded run (gpt.runs.LoadedRun) over the whole of seq (its validation text), read from /
    written to its run folder (one file per step and text). A scan stopped by progress raising writes nothing."""
    cfg = run.config

    def fresh(stored) -> bool:  # a scan of part of it (an older scan left the tail out) is stale
        return stored["values"].shape[:2] == (cfg.n_layer, 4 * cfg.n_embd) and int(stored["n_tokens"]) == len(seq)

    def compute() -> dict[str, torch.Tensor]:
        device = next(run.model.parameters()).device  # bf16 where native: a page waits
        result = top_contexts(run.model, seq, dtype=resolve_dtype("auto", device), progress=progress)
        return {"values": result.values, "positions": result.positions, "n_tokens": torch.tensor(result.n_tokens)}
    stored = cached_tensors(cache_path(run.path, run.step, seq), fresh, compute)
    return TopContexts(stored["values"], stored["positions"], int(stored["n_tokens"]))


@torch.no_grad()
def neuron_logit_effect(model: GPT, layer: int, neuron: int) -> torch.Tensor:
    """(V,) W_out[:, neuron] @ W_U^T: how much one unit of this neuron's activation raises each token's logit
    through the direct path to the unembedding."""
    require_mlp(model, layer)
    check_neuron(model, neuron)
    direction = model.blocks[layer].mlp.c_proj.weight[:, neuron].float()    # (C,) what the neuron writes
    return (model.lm_head.weight.float() @ direction).cpu()                  # (V,)
