"""What every figure shares: the palette, the layout, escaping of token text, number checks."""
from __future__ import annotations

import re

import plotly.graph_objects as go
import plotly.io as pio

# Every figure's look. As the default, a new figure starts from it; naming it in update_layout(template=...) made
# plotly validate and copy the whole template again for each figure (10-25 ms, on every rerun of a page).
pio.templates.default = "plotly_white"

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
MASK_COLOR = "#d9d9d9"     # what shows through where the causal mask hides the future
SELECT_COLOR = "#ff7f0e"   # the frame around a selected head or cell
WEIGHTS_SCALE = "Blues"    # attention weights and head scores in [0, 1], everywhere
MARGIN = dict(l=10, r=10, t=40, b=10)


def layout(fig: go.Figure, title: str, height: int = 360, **kw) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)), height=height, margin=MARGIN, **kw)
    return fig


# What plotly reads as markup in any label, title or hover text (plotly.js svg_text_utils): its few tags (<br>, <b>,
# <i>, <em>, <sub>, <sup>, <s>, <u>, <a>, <span>) and character entities (&amp;, &#39;, ...). Anything else, a lone
# "<" or "&" included, is drawn as the text it is (an SVG text node: never HTML), so only these are escaped.
_PLOTLY_TAG = re.compile(r"<(?=/?(?:br|b|i|em|sub|sup|s|u|a|span)(?:\s[^<>]*)?>)", re.IGNORECASE)
_PLOTLY_ENTITY = re.compile(r"&(?=#\d+;|#x[\da-fA-F]+;|[a-z]+;)")


def safe(text) -> str:
    """Display text for plotly labels, titles and hover text: unchanged, except the rare tag- or entity-shaped
    piece plotly would render ("<b>" stays "<b>", not bold); so a label never carries &lt; or &amp; it does not need."""
    text = _PLOTLY_ENTITY.sub("&amp;", str(text))
    return _PLOTLY_TAG.sub("&lt;", text)


def tick_labels(tokens: list[str]) -> list[str]:
    # plotly merges equal category labels, so each tick carries its position
    return [f"{i}:{safe(t)}" for i, t in enumerate(tokens)]


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def as_rows(values) -> list[list[float]]:
    """A 2-D tensor, array or nested list as nested lists of floats."""
    values = values.tolist() if hasattr(values, "tolist") else values
    return [[float(v) for v in row] for row in values]
