"""Generation speed: batch 1, 200 new tokens, sampling with a KV cache; ours vs HF `generate`.

    .venv/bin/python bench/generate.py [--tokens 200] [--rounds 5] [--threads N]

Both models have nanoGPT's CPU-recipe shape (4 layers, 4 heads, 128 wide, char vocab of tiny Shakespeare)
and hold the same weights; the block is 256 so that 200 tokens fit in the context (HF cannot slide past
n_positions). Ours is timed through the public API: `stream_tokens` (each step also yields the token's
probability and its top-5 alternatives) and `generate_text` (text out). Target: ours >= 2x HF's tokens/s.
"""
from __future__ import annotations

import argparse

import torch
from common import hf_twin, interleaved, machine, median, shakespeare, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cpu-time", action="store_true", help="time in process CPU seconds (use with --threads 1 "
                   "on a busy machine)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from gpt.config import preset
    from gpt.generate import generate_text, stream_tokens
    from gpt.model import GPT
    from gpt.tokenizers import CharTokenizer
    tokenizer = CharTokenizer.train(shakespeare())
    model_cfg, _ = preset("nanogpt-cpu")
    model_cfg.vocab_size, model_cfg.block_size = tokenizer.vocab_size, 256
    torch.manual_seed(0)
    model = GPT(model_cfg).eval()
    hf = hf_twin(model).eval()
    prompt = "\n"
    prompt_ids = tokenizer.encode(prompt)
    n = args.tokens

    def ours_stream():
        steps = list(stream_tokens(model, prompt_ids, n, temperature=1.0, seed=1))
        assert len(steps) == n

    def ours_text():
        generate_text(model, tokenizer, prompt, max_new_tokens=n, temperature=1.0, seed=1)

    def hf_generate():
        with torch.inference_mode():
            out = hf.generate(torch.tensor([prompt_ids]), max_new_tokens=n, min_new_tokens=n, do_sample=True,
                              use_cache=True, top_k=0, pad_token_id=0)
        assert out.shape[1] == len(prompt_ids) + n

    fns = {"ours generate_text": ours_text, "ours stream_tokens (+prob, top-5)": ours_stream,
           "HF generate(use_cache=True, do_sample=True)": hf_generate}
    interleaved(fns, 1)  # warm-up
    times = interleaved(fns, args.rounds, cpu_time=args.cpu_time)
    hf_rate = n / median(times["HF generate(use_cache=True, do_sample=True)"])
    rows = [[name, n / median(t), n / min(t), 1000 * median(t) / n, f"{n / median(t) / hf_rate:.2f}x"]
            for name, t in times.items()]
    print(f"generation: batch 1, {n} new tokens, {model.num_params():,} params, block 256; {machine(args.cpu_time)}")
    print(table(["generator", "tokens/s (median)", "tokens/s (best)", "ms/token", "vs HF"], rows))
    ratio = n / median(times["ours generate_text"]) / hf_rate
    print(f"target: ours >= 2x HF -> {'met' if ratio >= 2 else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
