"""Figures for "Why this token" and "Patching": the DLA waterfall, a layer x head grid, patching heatmaps.

Pure plotly, no streamlit. Token labels arrive in their display form (explorer.ui.text.token_text); every label and
hover text passes explorer.figures.base.safe here, which escapes the little plotly would read as markup.
"""
from __future__ import annotations

import plotly.graph_objects as go

from explorer.figures.base import safe as _safe

POSITIVE, NEGATIVE, TOTAL = "#2e7d32", "#c62828", "#1f4e99"


def _rows(values) -> list[list[float]]:
    values = values.tolist() if hasattr(values, "tolist") else values
    return [[float(v) for v in row] for row in values]


def dla_waterfall(parts: dict[str, float], total: float, k: int = 12, title: str = "") -> go.Figure:
    """The k parts of largest magnitude as a waterfall (each bar starts where the previous ended), the rest
    summed in one bar, then the total: the bars add up to the logit."""
    ranked = sorted(parts.items(), key=lambda kv: -abs(kv[1]))
    shown, rest = ranked[:k], ranked[k:]
    names = [n for n, _ in shown] + ([f"{len(rest)} others"] if rest else []) + ["total"]
    values = [v for _, v in shown] + ([sum(v for _, v in rest)] if rest else []) + [total]
    measures = ["relative"] * (len(names) - 1) + ["total"]
    fig = go.Figure(go.Waterfall(
        x=[_safe(n) for n in names], y=values, measure=measures, orientation="v",
        text=[f"{v:+.2f}" for v in values], textposition="outside",
        increasing=dict(marker=dict(color=POSITIVE)), decreasing=dict(marker=dict(color=NEGATIVE)),
        totals=dict(marker=dict(color=TOTAL)), connector=dict(line=dict(color="#999", width=1)),
        hovertemplate="%{x}: %{y:+.3f}<extra></extra>"))
    low = min(0.0, *(sum(values[:i + 1]) for i in range(len(values) - 1)), total)
    high = max(0.0, *(sum(values[:i + 1]) for i in range(len(values) - 1)), total)
    pad = 0.15 * (high - low or 1.0)
    fig.update_layout(title=_safe(title), height=420, margin=dict(l=50, r=20, t=50, b=90), showlegend=False,
                      yaxis_title="contribution to the logit", yaxis_range=[low - pad, high + pad])
    fig.update_xaxes(tickangle=-35)
    return fig


def signed_grid(values, x_labels: list[str], y_labels: list[str], title: str = "", zmax: float | None = None,
                x_title: str = "", y_title: str = "", fmt: str = ".2f", height: int | None = None,
                text: bool = True) -> go.Figure:
    """A heatmap centred on 0 (red negative, blue positive) with the value in each cell; labels escaped. Each x
    label should be unique (plotly merges equal category labels): token labels carry their position."""
    z = _rows(values)
    zmax = zmax or max(1e-9, max(abs(v) for row in z for v in row))
    fig = go.Figure(go.Heatmap(
        z=z, x=[_safe(x) for x in x_labels], y=[_safe(y) for y in y_labels], colorscale="RdBu", zmid=0,
        zmin=-zmax, zmax=zmax, text=[[format(v, fmt) for v in row] for row in z] if text else None,
        texttemplate="%{text}" if text else None, hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>",
        xgap=1, ygap=1))
    fig.update_layout(title=_safe(title), height=height or 110 + 42 * len(z), margin=dict(l=70, r=10, t=45, b=40),
                      xaxis_title=x_title, yaxis_title=y_title)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return fig


def head_heatmap(values, title: str = "", zmax: float | None = None) -> go.Figure:
    """(n_layer, n_head) values as a layer x head grid."""
    z = _rows(values)
    return signed_grid(z, [f"H{h}" for h in range(len(z[0]))], [f"L{i}" for i in range(len(z))], title, zmax,
                       x_title="head", y_title="layer")


def token_labels(tokens: list[str]) -> list[str]:
    """Unique axis labels: position and printable token ("3:a")."""
    return [f"{i}:{t}" for i, t in enumerate(tokens)]


def residual_patching_heatmap(values, tokens: list[str], row_labels: list[str], title: str = "") -> go.Figure:
    """(n_layer + 1, T) recovered fractions: rows are layer boundaries, columns the prompt's tokens (one tick per
    position, the token as its label; the hover adds the position)."""
    z = _rows(values)
    T = len(tokens)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(T)), y=[_safe(r) for r in row_labels], colorscale="RdBu", zmid=0, zmin=-1, zmax=1,
        customdata=[[_safe(t) for t in tokens]] * len(z), xgap=1, ygap=1,
        text=[[f"{v:.2f}" for v in row] for row in z] if T <= 24 else None, texttemplate="%{text}" if T <= 24 else None,
        hovertemplate="%{y} · position %{x} (%{customdata}): %{z:.3f}<extra></extra>"))
    fig.update_layout(title=_safe(title), height=170 + 34 * len(z), margin=dict(l=70, r=10, t=45, b=70),
                      xaxis_title="position (clean token; clean→corrupted where they differ)",
                      yaxis_title="residual stream")
    fig.update_xaxes(tickmode="array", tickvals=list(range(T)), ticktext=[_safe(t) for t in tokens], tickangle=0 if T <= 24 else -90,
                     tickfont=dict(size=11 if T <= 48 else 9, family="monospace"))
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


def mlp_patching_bars(values, title: str = "") -> go.Figure:
    """(n_layer,) recovered fractions of patching each MLP's output."""
    vals = [float(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]
    fig = go.Figure(go.Bar(x=[f"L{i}.mlp" for i in range(len(vals))], y=vals,
                           marker_color=[POSITIVE if v >= 0 else NEGATIVE for v in vals],
                           text=[f"{v:.2f}" for v in vals], textposition="outside",
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    top = max(1.0, *vals) * 1.15
    fig.update_layout(title=_safe(title), height=300, margin=dict(l=50, r=10, t=45, b=40),
                      yaxis_title="fraction recovered", yaxis_range=[min(0.0, *vals) * 1.15 - 0.05, top])
    return fig
