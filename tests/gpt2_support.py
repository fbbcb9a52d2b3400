"""A small random GPT-2 as a user has one on disk: a Hugging Face folder (config.json, model.safetensors, vocab.json,
merges.txt) with a byte-level BPE trained here, and the Hugging Face cache layout that holds such folders
(models--ORG--NAME/snapshots/REV/ + refs/main). Nothing is downloaded; the weights are random."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from gpt.config import GPTConfig
from gpt.hf.gpt2 import ENDOFTEXT, save_gpt2_folder
from gpt.hf.gpt2 import train_gpt2_tokenizer as gpt2_tokenizer  # noqa: F401  (the tests' name for it)
from gpt.model import GPT
from gpt.tokenizers import BPETokenizer


def write_gpt2_folder(folder: Path, tokenizer: BPETokenizer, n_layer: int = 2, n_head: int = 2, n_embd: int = 32,
                      block_size: int = 128, seed: int = 0) -> Path:
    """A random GPT-2-architecture model (tanh GELU, biases, tied head) of the given shape, saved as an HF folder."""
    cfg = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                    n_embd=n_embd, dropout=0.0, bias=True, arch="gpt", activation="gelu_tanh").validate()
    torch.manual_seed(seed)
    return save_gpt2_folder(GPT(cfg).eval(), tokenizer, folder)


def fake_hf_cache(cache: Path, repo_id: str, folder: Path | None, revision: str = "0123abcd" * 5,
                  ref: bool = True) -> Path:
    """Put `folder`'s files where huggingface_hub keeps repo_id (models--ORG--NAME/snapshots/REV/), refs/main
    naming REV; folder None makes an entry with no snapshot (an interrupted download). Returns the snapshot dir."""
    entry = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = entry / "snapshots" / revision
    (entry / "refs").mkdir(parents=True, exist_ok=True)
    if folder is None:
        (entry / "blobs").mkdir(exist_ok=True)
        return snapshot
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        shutil.copy(f, snapshot / f.name)
    if ref:
        (entry / "refs" / "main").write_text(revision)
    return snapshot


def synthetic_bpe(n_tokens: int) -> BPETokenizer:
    """A byte-level BPE of n_tokens (the 256 bytes, two-letter merges of printable ASCII in a fixed order, and
    <|endoftext|>), built without training: a GPT-2-sized vocabulary in milliseconds, for views whose cost grows
    with the vocabulary."""
    printable = list(range(33, 127))
    vocab = [bytes([b]) for b in range(256)]
    merges = []
    for a in printable:
        for b in printable:
            if len(vocab) >= n_tokens - 1:
                break
            merges.append((a, b, len(vocab)))
            vocab.append(bytes([a, b]))
    return BPETokenizer(vocab + [ENDOFTEXT.encode()], merges, special_tokens={ENDOFTEXT: len(vocab)})
