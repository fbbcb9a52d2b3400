"""Activation patching (causal tracing, Meng et al. 2022; Wang et al. 2022's IOI circuit).

Two prompts of the same token length differ in one detail (clean: "ROMEO" earlier in the text, corrupted:
"JULIET"), and two answer tokens tell them apart. The metric is the logit difference answer - wrong at the last
position. Run the corrupted prompt, but paste in ONE activation from the clean run: the fraction of the
clean-minus-corrupted metric this brings back,

    recovered = (patched - corrupted) / (clean - corrupted),

says how much of the difference flows through that activation (0: none of it, 1: all of it).

Every patch is a batch row: the corrupted prompt is repeated once per patch and each row gets its own clean
activation through the model's own capture points (gpt.model.Trace interventions), so a whole grid is one
forward pass (or a few, for big models) instead of one per cell.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gpt.interp.capture import InterpError, check_ids, require_attention, residual_boundaries, run_with_cache
from gpt.model import GPT, Trace
from gpt.token_display import display_text
from gpt.tokenizers import UnknownCharactersError

TOKENS_PER_FORWARD = 32768  # rows x tokens per batched forward: ~40 MB of attention per layer at 6 heads

# The Patching page's worked example, made for the shipped Shakespeare model: who speaks next? JULIET and ROMEO
# take turns, so after ROMEO's line the next speaker starts with "J"; with BRUTUS in JULIET's place, with "B".
WORKED_EXAMPLE = {
    "clean": "JULIET:\nAy me!\n\nROMEO:\nShe speaks.\n\nJULIET:\nO Romeo!\n\nROMEO:\nI am here.\n\n",
    "corrupted": "BRUTUS:\nAy me!\n\nROMEO:\nShe speaks.\n\nBRUTUS:\nO Romeo!\n\nROMEO:\nI am here.\n\n",
    "answer": "J", "wrong": "B"}


# Speakers tried in turn for the other tokenizers (JULIET and BRUTUS first, which give WORKED_EXAMPLE exactly): a
# BPE splits names into unlike numbers of tokens, and patching needs two prompts of one length.
SPEAKERS = ("JULIET", "BRUTUS", "HAMLET", "TYBALT", "LUCIO", "ANGELO", "CLAUDIO", "PAULINA", "CAMILLO", "LEONTES",
            "CAPULET", "MENENIUS", "GLOUCESTER", "NURSE", "SAMPSON", "GREGORY", "HORTENSIO", "PETRUCHIO")


def example_prompt(speaker: str) -> str:
    return WORKED_EXAMPLE["clean"].replace("JULIET", speaker)


def fitting_example(tokenizer, block_size: int) -> dict | None:
    """The worked example with the first pair of SPEAKERS for which this tokenizer reads both prompts as the same
    number of tokens (at most block_size) and whose names start with two different single tokens (the answers);
    None when no pair fits (then the page asks for a pair of the learner's own)."""
    def first_token(name: str) -> int | None:
        ids = tokenizer.encode(name)
        text = tokenizer.decode(ids[:1])
        try:   # the answer box holds text: it must read back as that same one token
            return ids[0] if single_token_id(tokenizer, text) == ids[0] else None
        except InterpError:
            return None
    readable = [s for s in SPEAKERS if not tokenizer.unknown_chars(example_prompt(s))]
    lengths = {s: len(tokenizer.encode(example_prompt(s))) for s in readable}
    for clean in readable:
        for corrupted in readable:
            if corrupted == clean or lengths[clean] != lengths[corrupted] or lengths[clean] > block_size:
                continue
            answer, wrong = first_token(clean), first_token(corrupted)
            if answer is not None and wrong is not None and answer != wrong:
                return {"clean": example_prompt(clean), "corrupted": example_prompt(corrupted),
                        "answer": tokenizer.decode([answer]), "wrong": tokenizer.decode([wrong])}
    return None


# The three grids of a prompt pair are computed as the page opens up to this many parameter x token products (the
# shipped model's worked example: 1.8M x 60 x 391 rows = 4e10); a bigger pair (GPT-2 small: 7e12) waits for a click.
AUTO_PATCH = 2.5e11


def patching_cost(config, n_tokens: int) -> float:
    """Parameter x token products of the three grids: one forward of the prompt per patch (every layer boundary at
    every position, every head, every MLP) plus the two baselines."""
    from gpt.sizing import count_params
    L, H = config.n_layer, config.effective_n_head
    rows = (L + 1) * n_tokens + L * H + (L if config.has_mlp else 0) + 2
    return float(count_params(config)) * n_tokens * rows


# Effective FLOP/s of the grids on 2 quiet cores: higher than a plain forward's because each row starts at the block it
# patches (bench/gpt2_pages.py: GPT-2 small's 32-token pair, 2.3e12 parameter-tokens, in 15 s).
PATCH_FLOPS = 3e11


def patching_seconds(config, n_tokens: int) -> float:
    """About how long the three grids take here, for the button that asks before a big pair."""
    return 2 * patching_cost(config, n_tokens) / PATCH_FLOPS


@dataclass(frozen=True)
class Patch:
    """Copy the clean activation at capture point `name`, at `index` of one sequence's tensor, into a row."""
    name: str
    index: tuple  # e.g. (t,) for a (T, C) residual at position t; (h,) for head h of (nh, T, hs)


def single_token_id(tokenizer, text: str, what: str = "answer") -> int:
    """The one token id that spells `text`, or an InterpError saying why there is not exactly one."""
    if not text:
        raise InterpError(f"the {what} is empty: type the token it should be (e.g. one character)")
    try:
        ids = tokenizer.encode(text)
    except UnknownCharactersError as e:
        raise InterpError(f"the {what} '{display_text(text)}' has characters this model does not know: "
                          f"{' '.join(display_text(c) for c in e.chars[:10])}") from None
    if len(ids) != 1:
        raise InterpError(f"the {what} '{display_text(text)}' is {len(ids)} tokens for this tokenizer; patching compares two "
                          f"single tokens: pick one token (for a character model, one character)")
    return int(ids[0])


def check_pair(model: GPT, clean_ids, corrupted_ids, answer, wrong) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Validated (1, T) clean and corrupted ids of equal length, and the two answer token ids."""
    require_attention(model)
    clean, corrupted = check_ids(model, clean_ids), check_ids(model, corrupted_ids)
    if clean.size(0) != 1 or corrupted.size(0) != 1:
        raise InterpError("patching compares one clean and one corrupted prompt")
    if clean.size(1) != corrupted.size(1):
        raise InterpError(f"the clean prompt has {clean.size(1)} tokens and the corrupted one "
                          f"{corrupted.size(1)}: they must have the same length so positions line up "
                          f"(change a name for one of the same length, or pad with spaces)")
    vocab = model.config.vocab_size
    for what, token in (("answer", answer), ("wrong answer", wrong)):
        if not isinstance(token, int) or not 0 <= token < vocab:
            raise InterpError(f"the {what} must be one token id in [0, {vocab}), got {token!r}")
    if answer == wrong:
        raise InterpError("the answer and the wrong answer are the same token: their difference is always 0")
    return clean, corrupted, answer, wrong


@dataclass
class PatchingBaseline:
    clean_metric: float      # logit[answer] - logit[wrong] at the last position, clean prompt
    corrupted_metric: float  # the same on the corrupted prompt


@torch.no_grad()
def recovered_fractions(model: GPT, clean_ids, corrupted_ids, answer: int, wrong: int,
                        patches: list[list[Patch]], progress=None) -> tuple[torch.Tensor, PatchingBaseline]:
    """For each patch set (one batch row each; an empty set patches nothing), the fraction of the clean-minus-
    corrupted logit difference it recovers: a (len(patches),) tensor, plus both baselines. progress(fraction of
    rows done) is called after every forward (a page's progress bar; it may raise to stop)."""
    clean, corrupted, answer, wrong = check_pair(model, clean_ids, corrupted_ids, answer, wrong)
    names = {p.name for row in patches for p in row}
    clean_cache = run_with_cache(model, clean, names)
    starts = {f"blocks.{i}.resid_pre" for i in range(model.config.n_layer)}
    corrupted_cache = run_with_cache(model, corrupted, starts)
    metric = lambda logits: (logits[:, -1, answer] - logits[:, -1, wrong]).double()  # (B,)
    clean_metric = float(metric(clean_cache.logits))
    corrupted_metric = float(metric(corrupted_cache.logits))
    if abs(clean_metric - corrupted_metric) < 1e-6:
        raise InterpError(f"both prompts give the same logit difference ({clean_metric:.3f}): there is nothing to "
                          f"recover; make the prompts differ in something that changes the answer")
    # A patch in block l cannot change anything before block l, so each row starts at the first block it
    # patches, from the corrupted run's residual stream there: half the work of running every row from the top.
    T = clean.size(1)
    rows_per_forward = max(1, TOKENS_PER_FORWARD // T)
    starts = [min((layer_of(p.name) for p in row), default=0) for row in patches]
    patched = torch.zeros(len(patches), dtype=torch.float64)
    done = 0
    for first in sorted(set(starts)):
        rows = [r for r, s in enumerate(starts) if s == first]
        for i in range(0, len(rows), rows_per_forward):
            chunk = rows[i:i + rows_per_forward]
            interventions = patch_interventions(clean_cache, [patches[r] for r in chunk])
            x = corrupted_cache[f"blocks.{first}.resid_pre"].expand(len(chunk), T, -1)
            logits, _ = model.forward_from(first, x, Trace(set(), interventions), last_only=True)  # (rows, 1, V)
            patched[chunk] = metric(logits)
            done += len(chunk)
            if progress is not None:
                progress(done / len(patches))
    fractions = (patched - corrupted_metric) / (clean_metric - corrupted_metric)
    return fractions.float(), PatchingBaseline(clean_metric, corrupted_metric)


def layer_of(name: str) -> int:
    return int(name.split(".")[1])  # "blocks.{i}.…"


def patch_interventions(clean_cache, rows: list[list[Patch]]) -> dict:
    """One intervention per capture point, writing each row's clean slices into that row of the batch."""
    by_name: dict[str, list[tuple[int, tuple]]] = {}
    for row, patch_set in enumerate(rows):
        for p in patch_set:
            by_name.setdefault(p.name, []).append((row, p.index))

    def make(name, targets):
        clean = clean_cache[name][0]  # one sequence's activation, e.g. (T, C) or (nh, T, hs)

        def fn(x):  # x (B, ...) the corrupted batch's activation at this point
            x = x.clone()
            for row, index in targets:
                x[(row, *index)] = clean[index]
            return x
        return fn
    return {name: make(name, targets) for name, targets in by_name.items()}


def boundary_labels(model: GPT) -> list[str]:
    """Row labels of the residual grid: "embeddings" (into block 0), then "after block 0", ... (boundary_label)."""
    return [label for label, _ in residual_boundaries(model)]


def residual_points(model: GPT) -> list[str]:
    """Capture points of the residual stream at every layer boundary: the input of block 0, then each block's
    output (the last one enters the final norm)."""
    return [name for _, name in residual_boundaries(model)]


def patch_residual(model: GPT, clean_ids, corrupted_ids, answer: int, wrong: int, progress=None) -> torch.Tensor:
    """(n_layer + 1, T) recovered fractions for patching the residual stream at one layer boundary and one
    position: row 0 = the input to block 0 (embeddings), row l + 1 = the output of block l."""
    require_attention(model)
    T = check_ids(model, clean_ids).size(1)
    points = residual_points(model)
    patches = [[Patch(name, (t,))] for name in points for t in range(T)]
    fractions, _ = recovered_fractions(model, clean_ids, corrupted_ids, answer, wrong, patches, progress)
    return fractions.view(len(points), T)


def patch_heads(model: GPT, clean_ids, corrupted_ids, answer: int, wrong: int, progress=None) -> torch.Tensor:
    """(n_layer, n_head) recovered fractions for patching one head's output (its attn.z, all positions)."""
    cfg = model.config
    require_attention(model)
    patches = [[Patch(f"blocks.{i}.attn.z", (h,))] for i in range(cfg.n_layer) for h in range(cfg.effective_n_head)]
    fractions, _ = recovered_fractions(model, clean_ids, corrupted_ids, answer, wrong, patches, progress)
    return fractions.view(cfg.n_layer, cfg.effective_n_head)


def patch_mlps(model: GPT, clean_ids, corrupted_ids, answer: int, wrong: int, progress=None) -> torch.Tensor:
    """(n_layer,) recovered fractions for patching one MLP's output (all positions)."""
    if not model.config.has_mlp:
        raise InterpError(f"a {model.config.arch.replace('_', '-')} model has no MLPs to patch")
    patches = [[Patch(f"blocks.{i}.mlp.out", (slice(None),))] for i in range(model.config.n_layer)]
    fractions, _ = recovered_fractions(model, clean_ids, corrupted_ids, answer, wrong, patches, progress)
    return fractions


def patching_baseline(model: GPT, clean_ids, corrupted_ids, answer: int, wrong: int) -> PatchingBaseline:
    """The clean and corrupted logit differences (what the fractions are relative to)."""
    return recovered_fractions(model, clean_ids, corrupted_ids, answer, wrong, [])[1]
