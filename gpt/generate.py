"""Sampling with a KV cache: temperature, top-k, top-p, greedy, seed, stop strings, streaming with probabilities,
and interventions (steering, clamping, ablation) for the pages that compare texts.

`stream_tokens` yields one `TokenStep` per generated token: its id, its probability under the model (T=1,
unfiltered: how expected it was), and the top alternatives; `generate_text` wraps it for plain text.
"""
from __future__ import annotations

import codecs
import secrets
from dataclasses import dataclass
from typing import Iterator

import torch
from torch.nn import functional as F

from gpt.model import GPT, Trace, all_position_wise


class GenerationError(ValueError):
    pass


@dataclass
class TokenStep:
    token_id: int
    prob: float                          # model probability of the chosen token (temperature 1, no filtering)
    alternatives: list[tuple[int, float]]  # top-k (id, prob) under the same distribution, best first
    text: str = ""                       # the text this token completes (may be "" mid-way through a UTF-8 char)


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """logits (V,) -> sampling logits after temperature, top-k and nucleus (top-p) filtering."""
    logits = logits.float() / max(temperature, 1e-8)
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = F.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cumulative - F.softmax(sorted_logits, dim=-1) >= top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return logits


def check_sampling(temperature: float, top_k: int | None, top_p: float | None, max_new_tokens: int) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise GenerationError(f"max_new_tokens must be a whole number >= 0, got {max_new_tokens!r}")
    if not temperature > 0:
        raise GenerationError(f"temperature must be > 0 (use greedy for argmax), got {temperature!r}")
    if top_k is not None and top_k < 1:
        raise GenerationError(f"top_k must be >= 1, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise GenerationError(f"top_p must be in (0, 1], got {top_p!r}")


def crop_prompt(ids, block_size: int) -> tuple[list[int], int]:
    """The one crop policy for a prompt longer than the context: keep its LAST block_size tokens, what the model
    sees when it generates the next token. Returns (the kept ids, how many were dropped from the front); pages
    that crop say so with that count (explorer/ui/prompts.py crop_note)."""
    ids = [int(i) for i in ids]
    dropped = max(0, len(ids) - block_size)
    return ids[dropped:], dropped


@torch.inference_mode()
def stream_tokens(model: GPT, prompt_ids: list[int], max_new_tokens: int, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
                  seed: int | None = None, alternatives: int = 5, use_cache: bool = True,
                  interventions: dict | None = None) -> Iterator[TokenStep]:
    """Generate token by token: the one sampler of the library (Generate, Steering, Ablation, `gpt.sample`).

    interventions: capture point -> fn, as gpt.model.Trace takes (a steering vector, a clamped feature, zeroed
    heads), applied at every position of every forward call, the prompt's included. The prompt is cropped to its
    last block_size tokens (crop_prompt). Within block_size a KV cache makes each step one token's work; it is
    kept when there are no interventions or every one is marked gpt.model.position_wise (then cached and
    recomputed logits agree, tests/test_sampler.py), otherwise every step recomputes the window. Past block_size
    the window slides, positions shift, and each step recomputes the last block_size tokens (exactly what an
    uncached model sees). Sampling: greedy = argmax; else temperature, then top-k, then top-p, drawn with a
    generator seeded by `seed` (the global RNG is never touched). Defaults: temperature 1 (the model's own
    distribution), no top-k/top-p, a fresh random seed."""
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    if len(prompt_ids) == 0:
        raise GenerationError("the prompt is empty: give at least one token to continue from")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    block = model.config.block_size
    gen = torch.Generator(device=device)
    gen.manual_seed(seed if seed is not None else secrets.randbits(62))  # never reseeds the global RNG
    ids, _ = crop_prompt(prompt_ids, block)
    trace = (lambda: Trace(set(), interventions)) if interventions else (lambda: None)
    use_cache = use_cache and all_position_wise(interventions)
    cache = model.new_kv_cache() if use_cache else None
    logits, _ = model(torch.tensor([ids], device=device), trace=trace(), kv_cache=cache)
    last = logits[0, -1].float()  # (V,)
    try:
        for _ in range(max_new_tokens):
            probs = F.softmax(last, dim=-1)
            if greedy:
                next_id = int(torch.argmax(last))
            else:
                unfiltered = temperature == 1.0 and not top_k and not (top_p and top_p < 1)
                sample_probs = probs if unfiltered else F.softmax(filter_logits(last, temperature, top_k, top_p),
                                                                  dim=-1)
                next_id = int(torch.multinomial(sample_probs, 1, generator=gen))
            top_alternatives = []
            if alternatives > 0:  # generate_text asks for none: two fewer ops per token
                top = torch.topk(probs, min(alternatives, probs.numel()))
                top_alternatives = list(zip(top.indices.tolist(), top.values.tolist()))
            yield TokenStep(next_id, float(probs[next_id]), top_alternatives)
            ids.append(next_id)
            if cache is not None and cache.length < block:
                step = torch.tensor([[next_id]], device=device)
                if interventions:  # through the capture points, so the interventions see the new position
                    last = model(step, trace=trace(), kv_cache=cache)[0][0, -1].float()
                else:  # the lean one-token path
                    last = model.decode_next(step, cache)[0].float()
            else:
                cache = None
                logits, _ = model(torch.tensor([ids[-block:]], device=device), trace=trace())
                last = logits[0, -1].float()
    finally:
        model.train(was_training)


def new_token_ids(model: GPT, prompt_ids: list[int], max_new_tokens: int, **sampling) -> list[int]:
    """stream_tokens' new ids as a list (no probabilities or alternatives): what the side-by-side pages show."""
    sampling.setdefault("alternatives", 0)
    return [step.token_id for step in stream_tokens(model, prompt_ids, max_new_tokens, **sampling)]


def stream_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int, stop: str | None = None,
                **sampling) -> Iterator[TokenStep]:
    """Like stream_tokens, from text; each step carries the text it completes (UTF-8 safe for byte tokens).
    Stops early once `stop` appears in the generated text (the stop string is included)."""
    if not prompt:
        raise GenerationError("the prompt is empty: type at least one character")
    prompt_ids = tokenizer.encode(prompt)  # UnknownCharactersError names what the tokenizer lacks
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    generated = ""
    for step in stream_tokens(model, prompt_ids, max_new_tokens, **sampling):
        step.text = decoder.decode(tokenizer.token_bytes(step.token_id))
        generated += step.text
        yield step
        if stop and stop in generated:
            return


def generate_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int = 200, stop: str | None = None,
                  **sampling) -> str:
    """The prompt's continuation as a string (without the prompt)."""
    sampling.setdefault("alternatives", 0)  # only the text is returned
    text = "".join(step.text for step in stream_text(model, tokenizer, prompt, max_new_tokens, stop, **sampling))
    if stop and stop in text:
        text = text[: text.index(stop) + len(stop)]
    return text
