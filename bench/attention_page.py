"""Server-side cost of the Attention page for a 256-token prompt on a 4-layer x 4-head model.

Times what the page does on every rerun: encode, trace the attention, per-head scores, pool the overview,
build both figures and serialise them to JSON (what Streamlit sends). Goal: <= 0.5 s in total.
usage: python bench/attention_page.py [--rounds 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from explorer.figures.attention import attention_heatmap, attention_overview
from gpt import GPT, GPTConfig
from gpt.data import python_docs
from gpt.interp.attention import attention_trace, head_summary, head_table, pool_pattern
from gpt.token_display import display_token
from gpt.tokenizers import CharTokenizer

BUDGET_S = 0.5
THUMB = 32  # as explorer/views/attention.py


def one_render(model, tokenizer, prompt: str) -> dict[str, float]:
    times = {}
    t = time.perf_counter()
    ids = tokenizer.encode(prompt)
    labels = [display_token(tokenizer, i) for i in ids]
    times["encode"] = time.perf_counter() - t
    t = time.perf_counter()
    trace = attention_trace(model, ids)
    times["trace"] = time.perf_counter() - t
    t = time.perf_counter()
    head_summary(trace.patterns)
    head_table(trace.patterns)
    pooled = pool_pattern(trace.patterns, THUMB)
    times["scores+pool"] = time.perf_counter() - t
    t = time.perf_counter()
    overview = attention_overview(pooled, selected=(0, 0))
    head = attention_heatmap(trace.patterns[0, 0], labels, "Layer 0, head 0")
    times["figures"] = time.perf_counter() - t
    t = time.perf_counter()
    size = len(overview.to_json()) + len(head.to_json())
    times["to_json"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    times["json_kb"] = size / 1024
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the app uses 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    text = python_docs()
    tokenizer = CharTokenizer.train(text)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=256, n_layer=4, n_head=4, n_embd=128)).eval()
    prompt = text[1000:1256]
    one_render(model, tokenizer, prompt)  # warm-up: first calls pay for imports and allocations
    rounds = [one_render(model, tokenizer, prompt) for _ in range(args.rounds)]
    print(f"Attention page, 256-token prompt, 4x4 model (n_embd 128), {args.threads} thread(s), "
          f"median of {args.rounds}:")
    for key in rounds[0]:
        value = statistics.median(r[key] for r in rounds)
        print(f"  {key:12s} {value:8.1f} KB" if key == "json_kb" else f"  {key:12s} {value * 1000:8.1f} ms")
    total = statistics.median(r["total"] for r in rounds)
    print(f"total / budget ({BUDGET_S} s) = {total / BUDGET_S:.2f}  ({'within' if total <= BUDGET_S else 'OVER'} budget)")


if __name__ == "__main__":
    main()
