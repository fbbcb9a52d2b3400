"""Token text as the pages show it: one display form (↵ newline, · space, → tab), HTML-escaped once, token chips,
probability colours; and uploaded text read safely."""
from __future__ import annotations

import html

from gpt.data import CorpusError, decode_bytes
from gpt.tokenizers import token_label, visible  # noqa: F401  (one display form, defined in gpt/)


def read_upload(upload) -> tuple[str | None, str | None]:
    """(text, None) of an uploaded file, or (None, the one reason it cannot be used): binary, not UTF-8, empty
    or too large, said once (not also as "the text is empty" and "0 characters")."""
    try:
        return decode_bytes(upload.getvalue(), upload.name), None
    except CorpusError as e:
        return None, str(e)


def esc(text: str) -> str:
    """HTML-escape token text (a corpus containing <script> must show as text)."""
    return html.escape(text, quote=True)


CHIP_STYLE = ("display:inline-block;margin:1px;padding:1px 3px;border-radius:4px;font-family:monospace;"
              "white-space:pre;font-size:0.95em;")


def chips_html(pieces: list[tuple[str, str, str]]) -> str:
    """pieces: (token text, hover title, css background colour) -> a row of escaped token chips. Chips between
    two spaces are kept on one line (a word never wraps in its middle), and a newline token ends the line."""
    words, word = [], []
    for text, title, color in pieces:
        if word and text[:1].isspace() and text.strip():   # a BPE token like " the" starts a new word
            words.append(word)
            word = []
        word.append(f'<span title="{esc(title)}" style="{CHIP_STYLE}background:{esc(color)}">{esc(visible(text))}</span>')
        if text[-1:].isspace() or not text:
            words.append(word + (["<br>"] if text.endswith("\n") else []))
            word = []
    if word:
        words.append(word)
    return ('<div style="line-height:1.9">'
            + "".join(f'<span style="white-space:nowrap">{"".join(w)}</span>' for w in words) + "</div>")


def prob_color(p: float) -> str:
    """Probability 0..1 -> a red (surprising) to green (expected) background."""
    p = min(max(float(p), 0.0), 1.0)
    hue = int(120 * p)
    return f"hsl({hue}, 75%, 80%)"
