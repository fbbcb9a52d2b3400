"""What the token-display tests share (tests/test_token_display.py, tests/test_browser_every_page.py): a run
whose vocabulary holds every character that needs escaping somewhere, a prompt full of them, and what must never
be seen where a token is shown."""
from __future__ import annotations

from pathlib import Path

import torch

# What must never be seen where a token is shown: a newline as backslash-n, HTML escaped twice (or escaped where
# nothing unescapes it: markdown code spans, plotly, tables), GPT-2's byte alphabet for a space.
FORBIDDEN = ("\\n", "&#x27;", "&amp;", "&lt;", "&quot;", "&#39;", "&gt;", "Ġ")

PROMPT = "JULIET's <3 & \"love\":\n\tO `Romeo` *is* _here_ & Tybalt < 5;\nO Romeo's\n"
CORRUPTED = "BRUTUS's <3 & \"love\":\n\tO `Romeo` *is* _here_ & Tybalt < 5;\nO Romeo's\n"  # same length, one word


def make_awkward_run(root: Path, kind: str = "char") -> Path:
    """An untrained GPT (2 layers) whose corpus, and so its vocabulary and validation text, is full of the
    characters that need escaping, with a random top-k transcoder per layer (Features and Circuit pages). kind
    "bpe": a byte-level BPE of 300 tokens (merged tokens of their own, such as a newline and a tab, or a space and '<')."""
    from gpt import runs
    from gpt.config import GPTConfig, TrainConfig
    from gpt.interp.features.dictionary import Dictionary, DictionaryConfig, save_dictionary, weights_digest
    from gpt.model import GPT
    from gpt.tokenizers import save_tokenizer, train_tokenizer
    corpus = root.parent / "awkward-corpus.txt"
    corpus.write_text((PROMPT + CORRUPTED + "To be, or not to be: that is the question.\n") * 40, encoding="utf-8")
    run = root / ("awkward" if kind == "char" else f"awkward-{kind}")
    run.mkdir(parents=True)
    tok = train_tokenizer(kind, corpus.read_text(encoding="utf-8"), 300)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=16)
    torch.manual_seed(0)
    runs.write_config(run, cfg, TrainConfig(max_iters=1), corpus=str(corpus), tokenizer=kind,
                      corpus_sha256=None, init_from=None)
    save_tokenizer(tok, run / runs.TOKENIZER)
    runs.atomic_save_model(GPT(cfg), run / runs.WEIGHTS, {"step": "1"})
    digest = weights_digest(run / runs.WEIGHTS)
    g = torch.Generator().manual_seed(0)
    for layer in range(cfg.n_layer):
        dcfg = DictionaryConfig("transcoder", f"blocks.{layer}.mlp.in", f"blocks.{layer}.mlp.out", "topk", 32,
                                cfg.n_embd, cfg.n_embd, digest, 4)
        d = Dictionary(dcfg)
        with torch.no_grad():
            for p in (d.W_enc, d.b_enc, d.W_dec, d.b_dec):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            d.normalise_decoder()
        save_dictionary(run / "features" / f"transcoder-L{layer}", d)
    return run
