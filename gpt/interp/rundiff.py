"""Run diff: two models (two runs, or two snapshots of one run) on one prompt, side by side.

* hyperparameters: every config value that differs;
* per-token log-probability: how much more (or less) B expects each token of the prompt than A;
* attention: B's attention patterns minus A's, head by head (needs the same layer x head shape).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from gpt.interp.capture import InterpError, attention_patterns, check_ids


def flat_config(run) -> dict[str, object]:
    """model.*, train.* and run-level settings (corpus, tokenizer, ...) of a LoadedRun as one flat dict."""
    out = {f"model.{k}": v for k, v in run.config.to_dict().items()}
    out.update({f"train.{k}": v for k, v in run.train_config.to_dict().items()})
    out.update({k: v for k, v in run.extra.items() if k != "format_version" and not isinstance(v, (dict, list))})
    out["step"] = run.step
    return out


def config_diff(run_a, run_b) -> list[tuple[str, object, object]]:
    """(key, value in A, value in B) for every setting that differs; missing values show as None."""
    a, b = flat_config(run_a), flat_config(run_b)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def same_tokens(run_a, run_b, text: str) -> list[int]:
    """The prompt's ids, which must mean the same tokens for both runs (else a diff is meaningless)."""
    ids_a, ids_b = run_a.tokenizer.encode(text), run_b.tokenizer.encode(text)
    pieces_a = [run_a.tokenizer.token_bytes(i) for i in ids_a]
    pieces_b = [run_b.tokenizer.token_bytes(i) for i in ids_b]
    if pieces_a != pieces_b or ids_a != ids_b:
        raise InterpError("the two runs tokenize this prompt differently (different vocabularies), so their "
                         "per-token predictions cannot be lined up; compare runs that share a tokenizer")
    return ids_a


@torch.no_grad()
def token_logprobs(model, ids: list[int]) -> torch.Tensor:
    """(T-1,) log-probability the model gives each token after the first."""
    x = check_ids(model, torch.tensor(ids))
    logits, _ = model(x)
    logp = F.log_softmax(logits[0, :-1].float(), -1)
    return logp.gather(1, x[0, 1:, None])[:, 0]


@dataclass
class RunDiff:
    ids: list[int]
    logprob_a: torch.Tensor          # (T-1,)
    logprob_b: torch.Tensor          # (T-1,)
    attention_delta: torch.Tensor | None  # (L, H, T, T): B minus A, or None when the shapes differ
    attention_note: str              # why attention_delta is None, or ""
    config: list[tuple[str, object, object]]

    @property
    def logprob_delta(self) -> torch.Tensor:
        """(T-1,) B minus A: positive where B expects the token more."""
        return self.logprob_b - self.logprob_a

    def head_change(self) -> torch.Tensor | None:
        """(L, H) mean absolute attention change per head (half the L1 distance per query: 0..1)."""
        if self.attention_delta is None:
            return None
        return 0.5 * self.attention_delta.abs().sum(-1).mean(-1)


def diff_runs(run_a, run_b, text: str) -> RunDiff:
    """Compare two loaded runs on one prompt (at most the shorter context of the two)."""
    ids = same_tokens(run_a, run_b, text)
    limit = min(run_a.config.block_size, run_b.config.block_size)
    if len(ids) < 2:
        raise InterpError("the prompt needs at least two tokens to compare predictions")
    ids = ids[:limit]
    lp_a, lp_b = token_logprobs(run_a.model, ids), token_logprobs(run_b.model, ids)
    shape_a = (run_a.config.n_layer, run_a.config.effective_n_head) if run_a.config.has_attention else None
    shape_b = (run_b.config.n_layer, run_b.config.effective_n_head) if run_b.config.has_attention else None
    delta, note = None, ""
    if shape_a is None or shape_b is None:
        note = "a bigram model has no attention to compare"
    elif shape_a != shape_b:
        note = (f"attention shapes differ (A: {shape_a[0]} layers x {shape_a[1]} heads, B: {shape_b[0]} x "
                f"{shape_b[1]}), so heads cannot be paired")
    else:
        x = torch.tensor([ids])
        delta = (attention_patterns(run_b.model, x) - attention_patterns(run_a.model, x))[0]
    return RunDiff(ids, lp_a, lp_b, delta, note, config_diff(run_a, run_b))
