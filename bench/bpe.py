"""BPE training time: vocab 1024 on tiny Shakespeare, ours vs HF `tokenizers` (Rust) ByteLevel BPE trainer.

    .venv/bin/python bench/bpe.py [--vocab-size 1024] [--rounds 3]

Target: ours <= 10 s. The peer is a compiled Rust trainer, so the interesting figure is how close a pure
Python trainer gets; the pure-Python naive loop (minbpe style) is extrapolated from a few merges.
"""
from __future__ import annotations

import argparse
import time

from common import interleaved, machine, median, shakespeare, table


def naive_merges_per_s(text: str, merges: int = 3) -> float:
    """minbpe's BasicTokenizer loop on the same GPT-2 pre-split chunks: count all pairs, merge, repeat."""
    import regex

    from gpt.tokenizers import GPT2_PATTERN, _merge
    chunks = [list(c.encode("utf-8")) for c in regex.findall(GPT2_PATTERN, text)]
    t0 = time.perf_counter()
    for i in range(merges):
        counts: dict = {}
        for ids in chunks:
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        best = max(counts, key=counts.get)
        chunks = [_merge(ids, best, 256 + i) for ids in chunks]
    return merges / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    from gpt.tokenizers import BPETokenizer
    text = shakespeare()

    def ours():
        tok = BPETokenizer.train(text, args.vocab_size)
        assert tok.vocab_size == args.vocab_size
        assert tok.decode(tok.encode(text[:5000])) == text[:5000]

    fns = {"ours (gpt.tokenizers, pure Python)": ours}
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        def hf():
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, show_progress=False,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
            tok.train_from_iterator([text], trainer=trainer)
            assert tok.get_vocab_size() == args.vocab_size

        fns["HF tokenizers ByteLevel BPE (Rust)"] = hf
    except ImportError:
        print("HF tokenizers is not installed: only the naive-loop peer is shown")
    times = interleaved(fns, args.rounds)
    naive_rate = naive_merges_per_s(text)
    naive_s = (args.vocab_size - 256) / naive_rate
    ours_s = median(times["ours (gpt.tokenizers, pure Python)"])
    rows = [[name, median(t), min(t), f"{median(t) / ours_s:.3g}x"] for name, t in times.items()]
    rows.append(["naive minbpe-style loop (extrapolated from 3 merges)", naive_s, naive_s, f"{naive_s / ours_s:.3g}x"])
    print(f"BPE training, vocab {args.vocab_size}, tiny Shakespeare ({len(text):,} chars); {machine()}")
    print(table(["trainer", "median s", "min s", "this time / ours"], rows))
    print(f"target: ours <= 10 s -> {'met' if ours_s <= 10 else 'NOT met'} ({ours_s:.2f} s)")


if __name__ == "__main__":
    main()
