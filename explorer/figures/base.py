"""What every figure shares: the palette, the layout, escaping of token text, number checks."""
from __future__ import annotations

import html

import plotly.graph_objects as go

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
MASK_COLOR = "#d9d9d9"     # what shows through where the causal mask hides the future
SELECT_COLOR = "#ff7f0e"   # the frame around a selected head or cell
WEIGHTS_SCALE = "Blues"    # attention weights and head scores in [0, 1], everywhere
MARGIN = dict(l=10, r=10, t=40, b=10)


def layout(fig: go.Figure, title: str, height: int = 360, **kw) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)), height=height, margin=MARGIN,
                      template="plotly_white", **kw)
    return fig


def safe(text) -> str:
    """Token text for hover templates and tick labels, which plotly renders as HTML."""
    return html.escape(str(text), quote=False)


def tick_labels(tokens: list[str]) -> list[str]:
    # plotly merges equal category labels, so each tick carries its position
    return [f"{i}:{safe(t)}" for i, t in enumerate(tokens)]


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def as_rows(values) -> list[list[float]]:
    """A 2-D tensor, array or nested list as nested lists of floats."""
    values = values.tolist() if hasattr(values, "tolist") else values
    return [[float(v) for v in row] for row in values]
