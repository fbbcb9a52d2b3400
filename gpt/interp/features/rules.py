"""The candidate rules a feature label is chosen from: small families of predicates over the text.

Each *family* gives every position of a token sequence one integer key (0..K-1), so a predicate is "the key is one
of these values" (or, for an ordinal family, "at least this value"): the current token, the current token with the
1-3 tokens before it, the token's character class (and the previous token's), the k-th letter of a word, the k-th
character of a line, the k-th character of a line after a blank line (a speaker's name in a play), and the current
token at a given place in a word or such a line. All keys look backwards only (what the model can have seen), and
they are computed once per text, so testing many predicates for many features is a few bincounts
(gpt/interp/features/labels.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

from gpt.token_display import display_text as visible
from gpt.token_display import display_token as token_label

# a token's character class; "vowel" and "consonant" are lowercase letters (capitals are a class of their own)
CLASSES = ("a capital", "a vowel", "a consonant", "a digit", "a space", "a newline", "punctuation", "other")
PLURAL = {"a capital": "capitals", "a vowel": "vowels", "a consonant": "consonants", "a digit": "digits",
          "a space": "spaces", "a newline": "newlines", "punctuation": "punctuation", "other": "other tokens"}
MAX_WORD_POS = 9     # "the 9th+ letter of a word"
MAX_LINE_COL = 16    # "the 16th+ character of a line"
MAX_HEADER_COL = 12  # "the 12th+ character of a line after a blank line"


def char_class(text: str) -> int:
    """Index into CLASSES of a token's text: by its first non-space character; all-whitespace tokens are a
    newline (if they hold one) or a space."""
    if not text:
        return CLASSES.index("other")
    stripped = text.lstrip(" ")
    if not stripped.strip():
        return CLASSES.index("a newline" if "\n" in text else "a space")
    c = stripped.lstrip()[0]
    if c.isupper():
        return 0
    if c.islower():
        return 1 if c in "aeiou" else 2
    if c.isdigit():
        return 3
    if not c.isalnum() and c.isprintable():
        return 6
    return 7


def ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


@dataclass
class Family:
    """One family of predicates: keys (N,) in 0..size-1 for every position of the text; `ordinal` families also
    offer "key >= k" predicates; key 0 of a `zero_is_none` family means "does not apply" and is never chosen.
    `parts(key)` splits a key into (what, where) ids (`m` | after `co`): one rule holds several values only when
    they share the what or the where, so "`n` or `s` after `co`" reads as one idea."""
    name: str
    keys: torch.Tensor
    size: int
    describe: Callable          # key -> the words of a label ("`m` after `co`")
    ordinal: bool = False
    zero_is_none: bool = False
    complexity: int = 0         # a small penalty: a simpler rule wins a near tie
    parts: Callable | None = None        # key -> (what id, where id)
    what: Callable | None = None         # what id -> words ("`m`")
    where: Callable | None = None        # where id -> words ("after `co`")

    def compatible(self, values: list[int], candidate: int) -> bool:
        if self.parts is None:
            return True
        w, h = zip(*(self.parts(v) for v in values + [candidate]))
        return len(set(w)) == 1 or len(set(h)) == 1

    def describe_set(self, values: list[int], at_least: bool = False) -> str:
        if at_least:
            return self.describe(values[0], at_least=True)
        if self.parts is None or len(values) == 1:
            return join_or([self.describe(v) for v in values])
        w, h = zip(*(self.parts(v) for v in values))
        if len(set(h)) == 1:
            return f"{join_or([self.what(x) for x in dict.fromkeys(w)])} {self.where(h[0])}".strip()
        return f"{self.what(w[0])} {join_or([self.where(x) for x in dict.fromkeys(h)])}"


_ORDINAL = re.compile(r"\bthe (\d+)(?:st|nd|rd|th)(\+?) ")


def join_or(parts: list[str]) -> str:
    """"a, b or c"; places that differ only in their number share the words: "the 5th, 6th or 7th letter of a word"."""
    if len(parts) > 1 and all(len(_ORDINAL.findall(p)) == 1 for p in parts) \
            and len({_ORDINAL.sub("the # ", p) for p in parts}) == 1:
        numbers = sorted((int(m.group(1)), m.group(2)) for m in (_ORDINAL.search(p) for p in parts))
        shown = [ordinal(k) + plus for k, plus in numbers]
        merged = ", ".join(shown[:-1]) + " or " + shown[-1]
        return _ORDINAL.sub(lambda m: f"the {merged} ", parts[0])
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def code(text: str) -> str:
    """A token's display form as a markdown code span (backticks inside the text are kept readable)."""
    return f"`{text}`" if "`" not in text else f"``{text}``"


def text_positions(token_texts: list[str], ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per position of ids: the place in a word (1 = first letter, 0 = not a letter token), the column in the line
    (1 = the line's first token; a newline is the last token of its line), and the same column for a line that
    follows a blank line (0 elsewhere). The text's start counts as after a blank line."""
    n = ids.numel()
    word_pos, line_col, header_col = [0] * n, [0] * n, [0] * n
    wp = col = 0
    after_blank = True
    for i, t in enumerate(ids.tolist()):
        s = token_texts[t]
        core = s.lstrip(" ")
        wp = (1 if (s[:1] == " " or wp == 0) else wp + 1) if core and core.isalpha() else 0
        word_pos[i] = wp
        col += 1
        line_col[i] = col
        header_col[i] = col if after_blank else 0
        if "\n" in s:   # this token ends its line; the next line follows a blank one if this one was empty
            after_blank = col == 1 or s.count("\n") >= 2
            col = 0
    return {"word_pos": torch.tensor(word_pos), "line_col": torch.tensor(line_col),
            "header_col": torch.tensor(header_col)}


def compress(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(keys 0..K-1 per position, the K distinct codes in order)."""
    distinct, keys = torch.unique(codes, return_inverse=True)
    return keys, distinct


def families(tokenizer, ids: torch.Tensor) -> list[Family]:
    """Every family of predicates over the token ids (1-D, the whole labelling text: keys of the fitting part and
    the held-out part must share one numbering)."""
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    V = tokenizer.vocab_size
    texts = [tokenizer.decode([i]) for i in range(V)]
    shown = [token_label(tokenizer, i) for i in range(V)]
    out = [Family("token", ids.clone(), V, lambda k: code(shown[k]))]

    # the current token with the 1-3 tokens before it (positions before the text's start read as token V)
    def ngram(order: int) -> Family:
        codes = torch.zeros_like(ids)
        for back in range(order, -1, -1):
            prev = torch.full_like(ids, V)
            prev[back:] = ids[:ids.numel() - back] if back else ids
            codes = codes * (V + 1) + prev
        keys, distinct = compress(codes)
        table = distinct.tolist()

        def parts(k: int) -> tuple[int, int]:
            return table[k] % (V + 1), table[k] // (V + 1)     # (current token, the tokens before it)

        def where(before: int) -> str:
            toks = []
            for _ in range(order):
                toks.append(before % (V + 1))
                before //= V + 1
            text = "".join(texts[t] for t in reversed(toks) if t < V)
            return f"after {code(visible(text))}" if text else "at the start"
        what = lambda t: code(shown[t])  # noqa: E731

        def describe(k: int) -> str:
            t, h = parts(k)
            return f"{what(t)} {where(h)}"
        return Family(f"after{order}", keys, len(table), describe, complexity=order, parts=parts, what=what,
                      where=where)
    out += [ngram(1), ngram(2), ngram(3)]

    # what comes next (the one family that looks ahead: a late layer's feature is often "the next token is `o`",
    # which the model cannot see but predicts; the held-out score says how well it does)
    nxt = torch.cat([ids[1:], torch.tensor([V])])
    out.append(Family("before", nxt, V + 1, lambda k: f"before {code(shown[k])}" if k < V else "at the end",
                      zero_is_none=False, complexity=1))
    out.append(Family("token_before", ids * (V + 1) + nxt, V * (V + 1),
                      lambda k: f"{code(shown[k // (V + 1)])} before " + (code(shown[k % (V + 1)])
                                                                            if k % (V + 1) < V else "the end"),
                      complexity=1, parts=lambda k: divmod(k, V + 1), what=lambda t: code(shown[t]),
                      where=lambda n: f"before {code(shown[n])}" if n < V else "at the end"))

    cls_of = torch.tensor([char_class(t) for t in texts])
    cls = cls_of[ids]
    out.append(Family("class", cls, len(CLASSES), lambda k: CLASSES[k]))
    prev_cls = torch.cat([torch.tensor([CLASSES.index("a newline")]), cls[:-1]])
    C = len(CLASSES)
    out.append(Family("class_after_class", prev_cls * C + cls, C ** 2, lambda k: f"{CLASSES[k % C]} after "
                      f"{CLASSES[k // C]}", complexity=1, parts=lambda k: (k % C, k // C),
                      what=lambda c: CLASSES[c], where=lambda c: f"after {CLASSES[c]}"))

    pos = text_positions(texts, ids)

    def place(name: str, values: torch.Tensor, top: int, what: str, unit: str) -> Family:
        keys = values.clamp(max=top)

        def describe(k: int, at_least: bool = False) -> str:
            plus = "+" if at_least or k == top else ""
            return f"the {ordinal(k)}{plus} {unit} of {what}"
        return Family(name, keys, top + 1, describe, ordinal=True, zero_is_none=True)
    unit = "letter" if tokenizer.kind == "char" else "token"
    out.append(place("word_pos", pos["word_pos"], MAX_WORD_POS, "a word", unit))
    out.append(place("line_col", pos["line_col"], MAX_LINE_COL, "a line", "character" if unit == "letter" else unit))
    out.append(place("header_col", pos["header_col"], MAX_HEADER_COL, "a line after a blank line",
                     "character" if unit == "letter" else unit))

    # the token at a place: "`N` as the 3rd character of a line after a blank line"
    for base in ("word_pos", "header_col"):
        fam = next(f for f in out if f.name == base)
        keys = ids * fam.size + fam.keys

        def describe(k: int, fam=fam) -> str:
            t, p = divmod(k, fam.size)
            return f"{code(shown[t])} as {fam.describe(p)}" if p else code(shown[t])
        out.append(Family(f"token_{base}", torch.where(fam.keys > 0, keys, 0), V * fam.size, describe,
                          zero_is_none=True, complexity=1, parts=lambda k, fam=fam: divmod(k, fam.size),
                          what=lambda t: code(shown[t]), where=lambda p, fam=fam: f"as {fam.describe(p)}"))
    return out
