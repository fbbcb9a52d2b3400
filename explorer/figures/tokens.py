"""Token-level figures: next-token bars, grouped probability bars, per-token changes, the logit lens grid."""
from __future__ import annotations

import plotly.graph_objects as go

from explorer.figures.base import PALETTE, WEIGHTS_SCALE, as_rows, layout, safe, tick_labels


def token_bars(tokens: list[str], probs: list[float], title: str, chosen: int | None = None) -> go.Figure:
    """Horizontal bars of candidate tokens and their probabilities, most likely on top; `chosen` (an index
    into tokens) is drawn in another colour."""
    colors = [PALETTE[1] if i == chosen else PALETTE[0] for i in range(len(tokens))]
    fig = go.Figure(go.Bar(x=probs, y=[safe(t) for t in tokens], orientation="h", marker_color=colors,
                           text=[f"{p:.1%}" for p in probs], textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text="probability", range=[0, min(1.0, max(probs, default=1) * 1.25 + 0.02)])
    return layout(fig, title, height=max(220, 60 + 26 * len(tokens)))


def prob_bars(groups: dict[str, list[tuple[str, float]]], title: str = "") -> go.Figure:
    """Grouped bars of next-token probabilities: {"intact": [(token, p), ...], "ablated": [...]}, aligned by
    token."""
    order: list[str] = []
    for pairs in groups.values():
        order += [t for t, _ in pairs if t not in order]
    fig = go.Figure()
    for i, (name, pairs) in enumerate(groups.items()):
        lookup = dict(pairs)
        fig.add_trace(go.Bar(x=[safe(t) for t in order], y=[lookup.get(t, 0.0) for t in order], name=safe(name),
                             marker_color=PALETTE[i % len(PALETTE)]))
    fig = layout(fig, title, height=320)
    fig.update_layout(barmode="group", yaxis=dict(title="probability", range=[0, 1]),
                      margin=dict(l=50, r=10, t=40, b=40))
    return fig


def delta_bars(tokens: list[str], deltas: list[float], title: str = "") -> go.Figure:
    """Per-token signed differences (e.g. log-prob of B minus A), green up, red down."""
    colors = ["#2ca02c" if d >= 0 else "#d62728" for d in deltas]
    fig = go.Figure(go.Bar(x=tick_labels(tokens), y=deltas, marker_color=colors,
                           hovertemplate="%{x}: %{y:+.3f}<extra></extra>"))
    fig = layout(fig, title, height=320)
    fig.update_layout(margin=dict(l=50, r=10, t=40, b=60))
    return fig


def lens_heatmap(layer_labels: list[str], tokens: list[str], top_tokens: list[list[str]], top_probs) -> go.Figure:
    """Logit lens: rows = depth, columns = positions; each cell shows the top next token, coloured by its
    probability."""
    fig = go.Figure(go.Heatmap(
        z=as_rows(top_probs), x=tick_labels(tokens), y=layer_labels, zmin=0, zmax=1, colorscale=WEIGHTS_SCALE,
        text=[[safe(t) for t in row] for row in top_tokens], texttemplate="%{text}",
        hovertemplate="after %{y}, at %{x}: predicts %{text} (p=%{z:.2f})<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig = layout(fig, "", height=120 + 40 * len(layer_labels))
    fig.update_layout(margin=dict(l=60, r=10, t=20, b=60))
    return fig
