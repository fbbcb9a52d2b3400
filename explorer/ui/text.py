"""Token text as the pages show it: one display form (gpt.token_display.display_token: ↵ newline, · space, → tab) and
one escaping per context (token_text for plotly/options/tables, token_html, token_md), token chips, probability
colours; and uploaded text read safely."""
from __future__ import annotations

import html
import re

from gpt.data import CorpusError, decode_bytes
from gpt.token_display import display_text, display_token, raw_token  # noqa: F401  (raw_token: chips from ids)


def read_upload(upload) -> tuple[str | None, str | None]:
    """(text, None) of an uploaded file, or (None, the one reason it cannot be used): binary, not UTF-8, empty
    or too large, said once (not also as "the text is empty" and "0 characters")."""
    try:
        return decode_bytes(upload.getvalue(), upload.name), None
    except CorpusError as e:
        return None, str(e)


def esc(text) -> str:
    """HTML-escape text once, where it goes into HTML (a corpus containing <script> must show as text). Never inside
    markdown code spans (Streamlit shows &#x27; there literally) nor plotly labels (explorer.figures.base.safe)."""
    return html.escape(str(text), quote=True)


# One token, one display form (gpt.token_display.display_token: ↵ newline, · space, → tab), one escaping per context:
def token_text(tokenizer, token_id: int) -> str:
    """Display text: plotly labels (the figure builders apply plotly's rule), select options, tables."""
    return display_token(tokenizer, token_id)


def token_html(tokenizer, token_id: int) -> str:
    """Display text HTML-escaped once: for st.markdown(..., unsafe_allow_html=True) and the HTML report."""
    return esc(display_token(tokenizer, token_id))


def token_md(tokenizer, token_id: int) -> str:
    """The token as a markdown inline code span, for st.markdown/st.caption/st.write text."""
    return code_md(display_token(tokenizer, token_id))


def code_md(text: str) -> str:
    """Text in its display form as a markdown inline code span: shown literally, so nothing is escaped inside (HTML
    escaping would show as &#x27;); a backtick inside gets a longer fence (CommonMark), padded where it touches the
    fence. display_text leaves display text unchanged, so raw and display text both work."""
    text = display_text(text)
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>&$~:])")


def text_md(text: str) -> str:
    """Display text for markdown outside a code span (labels, pills, expander titles): every character markdown
    (or Streamlit's :directives: and $math$) would read is backslash-escaped, so it shows as typed."""
    return _MD_SPECIAL.sub(r"\\\1", text)


# the names pages used before this module had one function per context; the same functions, not other ways
visible = display_text
token_label = token_text


CHIP_STYLE = ("display:inline-block;margin:1px;padding:1px 3px;border-radius:4px;font-family:monospace;"
              "white-space:pre;font-size:0.95em;")


def chips_html(pieces: list[tuple[str, str, str]]) -> str:
    """pieces: (raw text, hover title, css background colour) -> a row of token chips, each shown in the display
    form and HTML-escaped once. Raw text, because the layout reads it: chips between two spaces are kept on one line
    (a word never wraps in its middle), and a newline ends the line. Token ids become raw text with raw_token."""
    words, word = [], []
    for text, title, color in pieces:
        if word and text[:1].isspace() and text.strip():   # a BPE token like " the" starts a new word
            words.append(word)
            word = []
        word.append(f'<span title="{esc(title)}" style="{CHIP_STYLE}background:{esc(color)}">{esc(display_text(text))}</span>')
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
