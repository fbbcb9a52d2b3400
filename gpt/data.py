"""Corpora (built-in and user-supplied), the train/val split, and random-window batches as in nanoGPT."""
from __future__ import annotations

import functools
import hashlib
import lzma
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
# Shipped inside the package (xz, ~360 KB): a download-on-first-use design broke the shipped model's views
# offline, so no code path needs the network. The sha256 check guards against a damaged install.
TINY_SHAKESPEARE_FILE = "tinyshakespeare.txt.xz"
BUILTIN_CORPORA = {
    "tiny-shakespeare": "Shakespeare's plays, 1.1 MB (ships with the app)",
    "python-docs": "the Python reference docs shipped with every Python (pydoc_data.topics), ~465 KB",
}
MAX_CORPUS_BYTES = 200 * 1024 * 1024


class CorpusError(ValueError):
    """A corpus that cannot be used; the message says why and what to do instead."""


def cache_dir() -> Path:
    """Where computed artefacts (e.g. guided-experiment runs) are kept; GPT_EXPLORER_CACHE overrides it."""
    return Path(os.environ.get("GPT_EXPLORER_CACHE", Path.home() / ".cache" / "gpt-explorer"))


@functools.lru_cache(maxsize=1)
def tiny_shakespeare() -> str:
    """The tiny Shakespeare corpus (public domain), read from the copy shipped in gpt/corpora and sha256-checked."""
    packaged = resources.files("gpt") / "corpora" / TINY_SHAKESPEARE_FILE
    try:
        data = lzma.decompress(packaged.read_bytes())
    except (OSError, lzma.LZMAError) as e:
        raise CorpusError(f"the shipped copy of tiny-shakespeare (gpt/corpora/{TINY_SHAKESPEARE_FILE}) cannot be "
                          f"read ({e}); reinstall the project") from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != TINY_SHAKESPEARE_SHA256:
        raise CorpusError(f"the shipped tiny-shakespeare has sha256 {digest}, expected {TINY_SHAKESPEARE_SHA256}; "
                          "the install is damaged: reinstall the project")
    return data.decode("utf-8")


def python_docs() -> str:
    """Python's own reference documentation, present in every installation."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[key] for key in sorted(topics))


def check_text(text: str, source: str = "corpus") -> str:
    if not isinstance(text, str):
        raise CorpusError(f"{source} must be text")
    if not text.strip():
        raise CorpusError(f"{source} is empty or holds only whitespace; give it some text to learn from")
    return text


def decode_bytes(data: bytes, source: str = "corpus") -> str:
    if len(data) > MAX_CORPUS_BYTES:
        raise CorpusError(f"{source} is {len(data) / 2**20:.0f} MB; the limit is {MAX_CORPUS_BYTES // 2**20} MB")
    if b"\x00" in data[:1 << 20]:
        raise CorpusError(f"{source} looks binary (it contains NUL bytes); use a UTF-8 text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{source} is not UTF-8 text (bad byte at offset {e.start}); "
                          "save it as UTF-8 and try again") from e
    return check_text(text, source)


def load_corpus(spec: str) -> tuple[str, str]:
    """spec: a built-in name, or a path to a UTF-8 text file. Returns (text, description)."""
    if spec == "tiny-shakespeare":
        return tiny_shakespeare(), "tiny-shakespeare"
    if spec == "python-docs":
        return check_text(python_docs()), "python-docs"
    path = Path(spec)
    if not path.is_file():
        raise CorpusError(f"corpus {spec!r} is neither a built-in ({', '.join(BUILTIN_CORPORA)}) nor a file")
    try:
        if path.stat().st_size > MAX_CORPUS_BYTES:
            raise CorpusError(f"{path.name} is larger than {MAX_CORPUS_BYTES // 2**20} MB")
        data = path.read_bytes()
    except OSError as e:  # unreadable (permissions, a vanished file): a message, not a traceback
        raise CorpusError(f"cannot read corpus {spec!r}: {e.strerror or e}") from e
    return decode_bytes(data, path.name), str(path)


VAL_FRACTION = 0.1  # the last 10% is held out for validation, as nanoGPT


def split_index(n: int, val_fraction: float = VAL_FRACTION) -> int:
    """Where the training part of a sequence of n items ends and the validation part begins."""
    return int(n * (1 - val_fraction))


def min_corpus_length(block_size: int, val_fraction: float = VAL_FRACTION) -> int:
    """The fewest tokens for which both splits still hold one block plus its target."""
    return int((block_size + 1) / min(val_fraction, 1 - val_fraction)) + 1


def validation_text(text: str, val_fraction: float = VAL_FRACTION) -> str:
    """The held-out part of a corpus as text (exact for character tokenizers), from the next line start."""
    start = text.find("\n", split_index(len(text), val_fraction)) + 1
    return text[start:]


@dataclass
class Splits:
    train: torch.Tensor  # 1-D int64 token ids
    val: torch.Tensor


def split_ids(ids: list[int] | torch.Tensor, block_size: int, val_fraction: float = VAL_FRACTION) -> Splits:
    """First 90% train, last 10% validation, as nanoGPT; each split must fit one block plus its target."""
    data = torch.as_tensor(ids, dtype=torch.long)
    n = split_index(len(data), val_fraction)
    splits = Splits(data[:n], data[n:])
    for name, part in (("training", splits.train), ("validation", splits.val)):
        if len(part) < block_size + 1:
            raise CorpusError(
                f"the {name} split has {len(part)} tokens but block_size {block_size} needs at least "
                f"{block_size + 1}; use a longer corpus (about {min_corpus_length(block_size, val_fraction)} "
                f"tokens) or a smaller block_size")
    return splits


def corpus_splits(text: str, tokenizer, block_size: int, val_fraction: float = VAL_FRACTION) -> Splits:
    """THE split of a corpus for a model: its token ids, the first 90% to train on, the last 10% to validate on.
    The trainer splits this way, and so does everything that reads "the run's validation split" afterwards
    (whole-split loss, the app's evaluation text, the features CLI), so they all read the very same tokens."""
    return split_ids(tokenizer.encode(text), block_size, val_fraction)


def get_batch(data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator | None = None,
              device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """batch_size random windows: x (B, T) and the next-token targets y (B, T)."""
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    windows = data[ix[:, None] + offsets]  # (B, T+1) in one gather
    x, y = windows[:, :-1], windows[:, 1:]
    if torch.device(device).type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)
