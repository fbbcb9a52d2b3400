"""The one display form of token text, everywhere it is shown (the app's pages, the HTML report, graph JSON
labels, feature labels). The app (explorer/ui/text.py) adds the one escaping each context needs."""
from __future__ import annotations

# The one display form of token text, everywhere it is shown (the app's pages, the HTML report, graph JSON labels,
# feature labels): whitespace made visible, never a backslash escape for a newline or tab, never GPT-2's "Ġ".
# Other control characters show as their Unicode control pictures (␀ for U+0000, ␍ for a carriage return, ␡ DEL).
_VISIBLE = {**{code: chr(0x2400 + code) for code in range(32)}, 127: "\u2421",
            ord(" "): "\u00b7", ord("\n"): "\u21b5", ord("\t"): "\u2192"}   # · ↵ →
EMPTY = "\u2205"   # ∅: a token with no text (shown, so it never makes an invisible chip)


def display_text(text: str) -> str:
    """Text as a learner sees it: a space shows as ·, a newline as ↵, a tab as →, other control characters as
    their control pictures; empty text as ∅. Not escaped for any markup: the app (explorer.ui.text) adds the one
    escaping each context needs (HTML, markdown, plotly)."""
    return text.translate(_VISIBLE) if text else EMPTY


def raw_token(tokenizer, token_id: int) -> str:
    """One token's own text (a newline is a newline). A byte-level token that is not whole UTF-8 (part of a
    multi-byte character) keeps its stray bytes as \\xNN escapes, so it stays readable and tells its bytes."""
    return tokenizer.token_bytes(int(token_id)).decode("utf-8", errors="backslashreplace")


def display_token(tokenizer, token_id: int) -> str:
    """One token as it is shown everywhere: display_text of its own text ("JULIET:↵O", never "JULIET:\\nO")."""
    return display_text(raw_token(tokenizer, token_id))
