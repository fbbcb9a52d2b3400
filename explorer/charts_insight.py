"""Pure plotly figure builders for the "Look deeper" pages (no streamlit; tested without a browser).

Token labels arrive already made printable by the caller; plotly renders them as text, not HTML, except
inside hover templates, so every label goes through `_safe` first.
"""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

DETECTOR_TITLES = ["previous-token", "first-token (sink)", "duplicate-token", "induction"]


def _safe(text: str) -> str:
    return html.escape(str(text), quote=False)


def _tick_labels(tokens: list[str]) -> list[str]:
    # plotly merges equal category labels, so each tick carries its position
    return [f"{i}:{_safe(t)}" for i, t in enumerate(tokens)]


def head_grid(values, title: str = "", zmax: float = 1.0, colorscale: str = "Blues", zmid=None) -> go.Figure:
    """One layer x head heatmap with the value written in each cell. values: (L, H) nested list or tensor."""
    values = [[float(v) for v in row] for row in (values.tolist() if hasattr(values, "tolist") else values)]
    L, H = len(values), len(values[0])
    fig = go.Figure(go.Heatmap(
        z=values, x=[f"H{h}" for h in range(H)], y=[f"L{layer}" for layer in range(L)], colorscale=colorscale,
        zmin=-zmax if zmid is not None else 0.0, zmax=zmax, zmid=zmid,
        text=[[f"{v:.2f}" for v in row] for row in values], texttemplate="%{text}",
        hovertemplate="%{y} %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=120 + 45 * L, margin=dict(l=40, r=10, t=40, b=30))
    fig.update_yaxes(autorange="reversed")
    return fig


def detector_heatmaps(scores) -> go.Figure:
    """scores (4, L, H) -> four side-by-side layer x head heatmaps, one per detector."""
    scores = scores.tolist() if hasattr(scores, "tolist") else scores
    L, H = len(scores[0]), len(scores[0][0])
    fig = make_subplots(rows=1, cols=4, subplot_titles=DETECTOR_TITLES, horizontal_spacing=0.04)
    for d, grid in enumerate(scores):
        fig.add_trace(go.Heatmap(
            z=grid, x=[f"H{h}" for h in range(H)], y=[f"L{layer}" for layer in range(L)], zmin=0, zmax=1,
            colorscale="Blues", showscale=(d == 3), text=[[f"{v:.2f}" for v in row] for row in grid],
            texttemplate="%{text}", hovertemplate=f"{DETECTOR_TITLES[d]} %{{y}} %{{x}}: %{{z:.3f}}<extra></extra>"),
            row=1, col=d + 1)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=140 + 40 * L, margin=dict(l=40, r=10, t=40, b=30))
    return fig


def score_curves_figure(steps: list[int], curves: dict[str, list[float]], loss_steps: list[int],
                        losses: list[float]) -> go.Figure:
    """Head-score curves over training (left axis) next to the validation loss (right axis)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name, ys in curves.items():
        fig.add_trace(go.Scatter(x=steps, y=ys, mode="lines+markers", name=_safe(name)), secondary_y=False)
    if loss_steps:
        fig.add_trace(go.Scatter(x=loss_steps, y=losses, mode="lines", name="validation loss",
                                 line=dict(color="gray", dash="dot")), secondary_y=True)
    fig.update_yaxes(title_text="head score", range=[0, 1.05], secondary_y=False)
    fig.update_yaxes(title_text="validation loss", secondary_y=True)
    fig.update_xaxes(title_text="training step")
    fig.update_layout(height=380, margin=dict(l=50, r=50, t=30, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def attention_overview(patterns, max_tokens: int = 32) -> go.Figure:
    """patterns (L, H, T, T) -> the Attention page's mosaic of every head, cropped to the first max_tokens."""
    from explorer.charts import attention_overview as mosaic
    return mosaic(np.asarray(patterns)[..., :max_tokens, :max_tokens])


def attention_map(pattern, tokens: list[str], title: str = "", diverging: bool = False) -> go.Figure:
    """One (T, T) attention pattern (or difference, diverging=True) with token labels."""
    ticks = _tick_labels(tokens)
    fig = go.Figure(go.Heatmap(
        z=pattern.tolist() if hasattr(pattern, "tolist") else pattern, x=ticks, y=ticks,
        colorscale="RdBu" if diverging else "Blues", zmid=0 if diverging else None,
        zmin=None if diverging else 0, zmax=None if diverging else 1,
        hovertemplate="query %{y}<br>key %{x}<br>%{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title="query (attending)")
    fig.update_xaxes(title="key (attended to)")
    fig.update_layout(title=title, height=520, margin=dict(l=60, r=10, t=40, b=60))
    return fig


def embedding_scatter(points, labels: list[str], axis_range: float, title: str = "") -> go.Figure:
    """(V, 2) points labelled by token; a fixed symmetric axis range keeps frames comparable."""
    pts = points.tolist() if hasattr(points, "tolist") else points
    safe = [_safe(t) for t in labels]
    fig = go.Figure(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers+text", text=safe,
                               textposition="top center", marker=dict(size=6),
                               hovertemplate="%{text}<extra></extra>"))
    fig.update_xaxes(range=[-axis_range, axis_range], zeroline=False)
    fig.update_yaxes(range=[-axis_range, axis_range], zeroline=False, scaleanchor="x")
    fig.update_layout(title=title, height=520, margin=dict(l=30, r=10, t=40, b=30))
    return fig


def lens_heatmap(layer_labels: list[str], tokens: list[str], top_tokens: list[list[str]], top_probs) -> go.Figure:
    """Logit lens: rows = depth, columns = positions; each cell shows the top next token, coloured by its
    probability."""
    probs = top_probs.tolist() if hasattr(top_probs, "tolist") else top_probs
    fig = go.Figure(go.Heatmap(
        z=probs, x=_tick_labels(tokens), y=layer_labels, zmin=0, zmax=1, colorscale="Viridis",
        text=[[_safe(t) for t in row] for row in top_tokens], texttemplate="%{text}",
        hovertemplate="after %{y}, at %{x}: predicts %{text} (p=%{z:.2f})<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=120 + 40 * len(layer_labels), margin=dict(l=60, r=10, t=20, b=60))
    return fig


def prob_bars(groups: dict[str, list[tuple[str, float]]], title: str = "") -> go.Figure:
    """Grouped bars of next-token probabilities: {"intact": [(token, p), ...], "ablated": [...]}, aligned by
    token."""
    order: list[str] = []
    for pairs in groups.values():
        order += [t for t, _ in pairs if t not in order]
    fig = go.Figure()
    for name, pairs in groups.items():
        lookup = dict(pairs)
        fig.add_trace(go.Bar(x=[_safe(t) for t in order], y=[lookup.get(t, 0.0) for t in order], name=_safe(name)))
    fig.update_layout(barmode="group", title=title, height=320, yaxis=dict(title="probability", range=[0, 1]),
                      margin=dict(l=50, r=10, t=40, b=40))
    return fig


def delta_bars(tokens: list[str], deltas: list[float], title: str = "") -> go.Figure:
    """Per-token signed differences (e.g. log-prob of B minus A), green up, red down."""
    colors = ["#2ca02c" if d >= 0 else "#d62728" for d in deltas]
    fig = go.Figure(go.Bar(x=_tick_labels(tokens), y=deltas, marker_color=colors,
                           hovertemplate="%{x}: %{y:+.3f}<extra></extra>"))
    fig.update_layout(title=title, height=320, margin=dict(l=50, r=10, t=40, b=60))
    return fig
