"""Tokenizers: characters, and byte-level BPE trained from scratch (GPT-2 style pre-split).

Both offer encode (optionally with each token's character span), decode, a vocab listing, the BPE merge list
in order, and JSON save/load. The BPE tokenizer can also read GPT-2's own vocab.json + merges.txt.
"""
from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from pathlib import Path

import regex

from gpt.runs import atomic
from gpt.token_display import display_token

# GPT-2's pre-split: contractions, letter runs, number runs, punctuation runs, whitespace (keeping the last
# space with the next word). Merges never cross these chunk boundaries.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

Span = tuple[int, int]  # [start, end) character offsets into the encoded text


class TokenizerError(ValueError):
    pass


class UnknownCharactersError(TokenizerError):
    """Text holds characters a character tokenizer never saw; `chars` lists them in order of appearance."""

    def __init__(self, chars: list[str]):
        self.chars = chars
        shown = ", ".join(repr(c) for c in chars[:20]) + (" ..." if len(chars) > 20 else "")
        super().__init__(f"{len(chars)} character(s) not in this tokenizer's vocabulary: {shown}")


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: list[str]):
        if not chars:
            raise TokenizerError("a character tokenizer needs at least one character")
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise TokenizerError("character list must hold distinct single characters")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> "CharTokenizer":
        if not text:
            raise TokenizerError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def merges(self) -> list:
        return []

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of text outside the vocabulary, in order of first appearance."""
        if not set(text).difference(self.stoi):  # the common case, ~10x faster than the loop below
            return []
        return list(dict.fromkeys(c for c in text if c not in self.stoi))

    def encode(self, text: str, with_spans: bool = False):
        unknown = self.unknown_chars(text)
        if unknown:
            raise UnknownCharactersError(unknown)
        ids = list(map(self.stoi.__getitem__, text))
        if with_spans:
            return ids, [(i, i + 1) for i in range(len(text))]
        return ids

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)

    def token_bytes(self, token_id: int) -> bytes:
        return self.chars[token_id].encode("utf-8")

    def token_str(self, token_id: int) -> str:
        """The token as shown (display_token): kept for callers written before display_token."""
        return display_token(self, token_id)

    def vocab(self) -> list[tuple[int, str]]:
        return [(i, self.token_str(i)) for i in range(self.vocab_size)]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


class BPETokenizer:
    """Byte-level BPE. vocab[id] is the token's bytes; merges are (left id, right id, new id) in rank order."""

    kind = "bpe"

    def __init__(self, vocab: list[bytes], merges: list[tuple[int, int, int]], pattern: str = GPT2_PATTERN,
                 special_tokens: dict[str, int] | None = None):
        self.vocab_bytes = list(vocab)
        self.merge_list = [tuple(m) for m in merges]
        self.pattern = pattern
        self.special_tokens = dict(special_tokens or {})
        self._split = regex.compile(pattern)
        self._special_split = (regex.compile("(" + "|".join(regex.escape(s) for s in
                                                            sorted(self.special_tokens, key=len, reverse=True)) + ")")
                               if self.special_tokens else None)
        self.byte_to_id: dict[int, int] = {}
        for i, b in enumerate(self.vocab_bytes):
            if len(b) == 1 and b[0] not in self.byte_to_id:
                self.byte_to_id[b[0]] = i
        missing = [b for b in range(256) if b not in self.byte_to_id]
        if missing:
            raise TokenizerError(f"BPE vocabulary lacks {len(missing)} of the 256 single bytes")
        self.ranks = {(a, b): (rank, new) for rank, (a, b, new) in enumerate(self.merge_list)}
        self._cache: dict[str, list[int]] = {}

    # ---- training ----
    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str = GPT2_PATTERN) -> "BPETokenizer":
        """Learn vocab_size - 256 merges. Works on unique pre-split chunks weighted by frequency and updates
        pair counts incrementally (a heap with lazy deletion), so each merge touches only the chunks that
        hold the pair: about a second for vocab 1024 on tiny Shakespeare, where a naive loop takes minutes."""
        if not isinstance(vocab_size, int) or vocab_size < 256:
            raise TokenizerError(f"BPE vocab_size must be at least 256 (the single bytes), got {vocab_size!r}")
        if not text:
            raise TokenizerError("cannot train BPE on empty text")
        chunk_freq = Counter(regex.findall(pattern, text))
        words = [list(chunk.encode("utf-8")) for chunk in chunk_freq]
        freqs = list(chunk_freq.values())
        pair_count: dict[tuple[int, int], int] = defaultdict(int)
        pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
        for wi, ids in enumerate(words):
            for pair in zip(ids, ids[1:]):
                pair_count[pair] += freqs[wi]
                pair_words[pair].add(wi)
        heap = [(-c, p) for p, c in pair_count.items()]
        heapq.heapify(heap)
        vocab = [bytes([b]) for b in range(256)]
        merges: list[tuple[int, int, int]] = []
        while len(vocab) < vocab_size and heap:
            neg, pair = heapq.heappop(heap)
            if pair_count.get(pair, 0) != -neg or -neg <= 0:
                continue  # stale heap entry
            new_id = len(vocab)
            vocab.append(vocab[pair[0]] + vocab[pair[1]])
            merges.append((pair[0], pair[1], new_id))
            changed: set[tuple[int, int]] = set()
            for wi in list(pair_words.pop(pair, ())):
                ids, f = words[wi], freqs[wi]
                for p in zip(ids, ids[1:]):
                    pair_count[p] -= f
                    changed.add(p)
                merged = _merge(ids, pair, new_id)
                words[wi] = merged
                for p in zip(merged, merged[1:]):
                    pair_count[p] += f
                    pair_words[p].add(wi)
                    changed.add(p)
            pair_count.pop(pair, None)
            for p in changed:
                c = pair_count.get(p, 0)
                if c > 0:
                    heapq.heappush(heap, (-c, p))
                else:
                    pair_count.pop(p, None)
        return cls(vocab, merges, pattern)

    # ---- encoding ----
    @property
    def vocab_size(self) -> int:
        return len(self.vocab_bytes)

    @property
    def merges(self) -> list[tuple[int, int, int]]:
        return self.merge_list

    def unknown_chars(self, text: str) -> list[str]:
        return []  # every string is bytes, and every byte is a token

    def _encode_chunk(self, chunk: str) -> list[int]:
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = [self.byte_to_id[b] for b in chunk.encode("utf-8")]
        while len(ids) > 1:
            best = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, (float("inf"),))[0])
            if best not in self.ranks:
                break
            ids = _merge(ids, best, self.ranks[best][1])
        if len(self._cache) < 100_000:
            self._cache[chunk] = ids
        return ids

    def encode(self, text: str, with_spans: bool = False):
        ids: list[int] = []
        spans: list[Span] = []
        pieces = self._special_split.split(text) if self._special_split else [text]
        offset = 0
        for piece in pieces:
            if piece in self.special_tokens:
                ids.append(self.special_tokens[piece])
                spans.append((offset, offset + len(piece)))
            else:
                for m in self._split.finditer(piece):
                    chunk_ids = self._encode_chunk(m.group())
                    ids.extend(chunk_ids)
                    if with_spans:
                        spans.extend(self._chunk_spans(m.group(), chunk_ids, offset + m.start()))
            offset += len(piece)
        return (ids, spans) if with_spans else ids

    def _chunk_spans(self, chunk: str, chunk_ids: list[int], start: int) -> list[Span]:
        # map each byte of the chunk to the character it belongs to; a token holding part of a multi-byte
        # character gets that whole character's span
        byte_owner = [ci for ci, ch in enumerate(chunk) for _ in range(len(ch.encode("utf-8")))]
        spans, pos = [], 0
        for t in chunk_ids:
            n = len(self.vocab_bytes[t])
            spans.append((start + byte_owner[pos], start + byte_owner[pos + n - 1] + 1))
            pos += n
        return spans

    def decode_bytes(self, ids) -> bytes:
        return b"".join(self.vocab_bytes[i] for i in ids)

    def decode(self, ids) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self.vocab_bytes[token_id]

    def token_str(self, token_id: int) -> str:
        """The token as shown (display_token): kept for callers written before display_token."""
        return display_token(self, token_id)

    def vocab(self) -> list[tuple[int, str]]:
        return [(i, self.token_str(i)) for i in range(self.vocab_size)]

    def pre_split(self, text: str) -> list[str]:
        """The pieces encoding works on (GPT-2 style: letters, digits, punctuation, spaces); merges never cross them."""
        return self._split.findall(text)

    def replay(self, text: str) -> list[list[int]]:
        """How `text` (one pre-split chunk) is built: the token ids after each merge that changes it."""
        ids = [self.byte_to_id[b] for b in text.encode("utf-8")]
        steps = [ids]
        while len(ids) > 1:
            best = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, (float("inf"),))[0])
            if best not in self.ranks:
                break
            ids = _merge(ids, best, self.ranks[best][1])
            steps.append(ids)
        return steps

    def to_dict(self) -> dict:
        return {"kind": self.kind, "pattern": self.pattern, "vocab": [b.hex() for b in self.vocab_bytes],
                "merges": [list(m) for m in self.merge_list], "special_tokens": self.special_tokens}

    # ---- GPT-2's files ----
    @classmethod
    def from_gpt2_files(cls, vocab_json: str | Path, merges_txt: str | Path,
                        special_tokens=("<|endoftext|>",)) -> "BPETokenizer":
        """Read GPT-2's vocab.json (token string -> id) and merges.txt (ranked pairs).

        special_tokens: entries of vocab.json kept whole in text (GPT-2's <|endoftext|>); any entry outside the
        byte alphabet is special too."""
        byte_of = {c: b for b, c in _bytes_to_unicode().items()}
        encoder = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        if not isinstance(encoder, dict) or not encoder or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in encoder.values()):
            raise TokenizerError("vocab.json must map token strings to non-negative integer ids")
        vocab: list[bytes | None] = [None] * (max(encoder.values()) + 1)
        special = {}
        for token, i in encoder.items():
            if vocab[i] is not None:
                raise TokenizerError(f"vocab.json gives id {i} to two tokens")
            if token not in special_tokens and all(c in byte_of for c in token):
                vocab[i] = bytes(byte_of[c] for c in token)
            else:
                special[token] = i
                vocab[i] = token.encode("utf-8")
        if any(v is None for v in vocab):
            raise TokenizerError("vocab.json has gaps in its token ids")
        merges = []
        for n, line in enumerate(Path(merges_txt).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#version"):
                continue
            parts = line.split(" ")
            if len(parts) != 2 or any(t not in encoder for t in (*parts, parts[0] + parts[1])):
                raise TokenizerError(f"merges.txt line {n} ({line[:40]!r}) is not a pair of known tokens "
                                     "whose join is also in vocab.json")
            merges.append((encoder[parts[0]], encoder[parts[1]], encoder[parts[0] + parts[1]]))
        return cls(vocab, merges, GPT2_PATTERN, special)

    def to_gpt2_vocab(self) -> tuple[dict[str, int], list[str]]:
        """(vocab.json mapping, merges.txt lines) in GPT-2's byte-to-unicode alphabet."""
        char_of = _bytes_to_unicode()
        special_ids = set(self.special_tokens.values())
        encoder = {}
        for i, b in enumerate(self.vocab_bytes):
            key = b.decode("utf-8") if i in special_ids else "".join(char_of[x] for x in b)
            if key in encoder:  # GPT-2's format names tokens by their text, so each text must be unique
                raise TokenizerError(f"tokens {encoder[key]} and {i} have the same bytes {b!r}; GPT-2's "
                                     "vocab.json cannot hold both")
            encoder[key] = i
        to_str = {i: s for s, i in encoder.items()}
        merges = [f"{to_str[a]} {to_str[b]}" for a, b, _ in self.merge_list]
        return encoder, merges


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters (openai/gpt-2 encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


Tokenizer = CharTokenizer | BPETokenizer


BPE_DEFAULT_VOCAB = 512  # a BPE vocabulary when none is asked for (gpt.train, the Train form)


def train_tokenizer(kind: str, text: str, vocab_size: int | None = None) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size or BPE_DEFAULT_VOCAB)
    raise TokenizerError(f"unknown tokenizer kind {kind!r}; use 'char' or 'bpe'")


def tokenizer_from_dict(data: dict) -> Tokenizer:
    if not isinstance(data, dict):
        raise TokenizerError("tokenizer.json must hold a JSON object")
    try:
        if data.get("kind") == "char":
            return CharTokenizer(list(data["chars"]))
        if data.get("kind") == "bpe":
            vocab = [bytes.fromhex(h) for h in data["vocab"]]
            merges = [tuple(int(x) for x in m) for m in data["merges"]]
            if any(len(m) != 3 or not all(0 <= x < len(vocab) for x in m) for m in merges):
                raise TokenizerError("tokenizer.json: a merge refers to a token id outside the vocabulary")
            return BPETokenizer(vocab, merges, data.get("pattern", GPT2_PATTERN), data.get("special_tokens"))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, TokenizerError):
            raise
        raise TokenizerError(f"tokenizer.json is malformed: {e}") from e
    raise TokenizerError(f"tokenizer.json has unknown kind {data.get('kind')!r}")


def save_tokenizer(tok: Tokenizer, path: str | Path) -> None:
    atomic.write_text(path, json.dumps(tok.to_dict(), ensure_ascii=False))


def load_tokenizer(path: str | Path) -> Tokenizer:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerError(f"cannot read tokenizer {path}: {e}") from e
    return tokenizer_from_dict(data)
