"""Plotly figure builders: plain data in, a go.Figure out. No streamlit, no model calls, so each is
unit-tested on its figure data (tests/test_charts.py)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
MASK_COLOR = "#d9d9d9"   # what shows through where the causal mask hides the future
MARGIN = dict(l=10, r=10, t=40, b=10)


def _layout(fig: go.Figure, title: str, height: int = 360, **kw) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)), height=height, margin=MARGIN,
                      template="plotly_white", **kw)
    return fig


# ---- training ----
def loss_curves(metrics_by_run: dict[str, list[dict]], title: str = "Loss") -> go.Figure:
    """Train loss (lines) and validation loss (dots on dashed lines) per run against the step."""
    fig = go.Figure()
    for i, (name, rows) in enumerate(metrics_by_run.items()):
        color = PALETTE[i % len(PALETTE)]
        label = f"{name} " if len(metrics_by_run) > 1 else ""
        train = [(r["step"], r["train_loss"]) for r in rows if _num(r.get("train_loss"))]
        val = [(r["step"], r["val_loss"]) for r in rows if _num(r.get("val_loss"))]
        if train:
            fig.add_trace(go.Scatter(x=[s for s, _ in train], y=[v for _, v in train], mode="lines",
                                     name=f"{label}train", line=dict(color=color, width=1.5)))
        if val:
            fig.add_trace(go.Scatter(x=[s for s, _ in val], y=[v for _, v in val], mode="lines+markers",
                                     name=f"{label}val", line=dict(color=color, dash="dash", width=2),
                                     marker=dict(size=7)))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="cross-entropy (nats)")
    return _layout(fig, title, legend=dict(orientation="h", y=-0.2))


def metric_curve(rows: list[dict], key: str, title: str, y_title: str, color: str = PALETTE[2]) -> go.Figure:
    """One logged metric (lr, tokens_per_s, grad_norm...) against the step."""
    pts = [(r["step"], r[key]) for r in rows if _num(r.get(key)) and "train_loss" in r] or \
          [(r["step"], r[key]) for r in rows if _num(r.get(key))]
    fig = go.Figure(go.Scatter(x=[s for s, _ in pts], y=[v for _, v in pts], mode="lines",
                               line=dict(color=color), name=key))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=y_title)
    return _layout(fig, title, height=240)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


# ---- attention ----
def attention_heatmap(pattern: np.ndarray, labels: list[str], title: str) -> go.Figure:
    """One head's (T, T) pattern: row = query (the token predicting), column = key (the token looked at).
    The future (above the diagonal) is left empty so the grey causal mask shows through."""
    T = pattern.shape[0]
    z = np.where(np.tril(np.ones((T, T), dtype=bool)), pattern, np.nan).astype(np.float32)  # float32: half the bytes
    ticks = [f"{i}:{t}" for i, t in enumerate(labels)]
    fig = go.Figure(go.Heatmap(
        z=z, colorscale="Blues", zmin=0, zmax=1,
        # hover names positions only: per-cell token text would cost T*T strings (megabytes at T=256)
        hovertemplate="query %{y} → key %{x}<br>weight %{z:.3f}<extra></extra>",
        colorbar=dict(title="weight", thickness=12)))
    step = max(1, T // 48)  # at most ~48 tick labels per axis stay readable
    tickvals = list(range(0, T, step))
    fig.update_xaxes(tickvals=tickvals, ticktext=[ticks[i] for i in tickvals], side="top", tickangle=-90,
                     title_text="key (attended to)", showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(tickvals=tickvals, ticktext=[ticks[i] for i in tickvals], autorange="reversed",
                     title_text="query (predicting from)", showgrid=False, zeroline=False, scaleanchor="x",
                     constrain="domain")
    size = min(900, max(420, 16 * T + 160))
    fig = _layout(fig, title, height=size, plot_bgcolor=MASK_COLOR)
    fig.update_layout(margin=dict(l=10, r=10, t=90 if T <= 48 else 60, b=10))
    return fig


def attention_overview(pooled: np.ndarray, selected: tuple[int, int] | None = None) -> go.Figure:
    """Small multiples: every head's pattern (pooled to a thumbnail), layers as rows, heads as columns.

    Drawn as one mosaic heatmap (tiles separated by blank gaps, labelled on the axes) rather than a subplot per
    head: 24 subplots took ~0.3-1.5 s to build in Python and made the browser lay out 48 axes on every rerun."""
    L, H, S = pooled.shape[0], pooled.shape[1], pooled.shape[-1]
    step = S + max(1, S // 16)  # a blank row/column between tiles
    z = np.full((L * step - (step - S), H * step - (step - S)), np.nan)
    visible = np.tril(np.ones((S, S), dtype=bool))  # the causal mask hides the upper triangle
    for layer in range(L):
        for head in range(H):
            z[layer * step:layer * step + S, head * step:head * step + S] = np.where(visible, pooled[layer, head],
                                                                                     np.nan)
    centers = [i * step + (S - 1) / 2 for i in range(max(L, H))]
    # 3 decimals in float32 are plenty for a thumbnail and halve the page's payload
    fig = go.Figure(go.Heatmap(z=np.round(z, 3).astype(np.float32), colorscale="Blues", zmin=0, zmax=1,
                               showscale=False, hovertemplate="weight %{z:.2f}<extra></extra>", hoverongaps=False))
    if selected is not None:
        layer, head = selected
        fig.add_shape(type="rect", x0=head * step - 0.5, x1=head * step + S - 0.5, y0=layer * step - 0.5,
                      y1=layer * step + S - 0.5, line=dict(color="#ff7f0e", width=2))
    fig.update_xaxes(tickvals=centers[:H], ticktext=[f"H{h}" for h in range(H)], side="top", showgrid=False,
                     zeroline=False, ticks="", constrain="domain")
    fig.update_yaxes(tickvals=centers[:L], ticktext=[f"L{layer}" for layer in range(L)], showgrid=False,
                     zeroline=False, ticks="", autorange="reversed", scaleanchor="x", constrain="domain")
    cell = max(60, min(150, 520 // H))  # keep thumbnails about square in a ~520 px wide column
    return _layout(fig, "Every head at a glance", height=min(1600, 90 + cell * L), plot_bgcolor="white")


def head_score_grid(values: np.ndarray, name: str, fmt: str = ".2f") -> go.Figure:
    """A layer x head grid coloured and labelled by one per-head score."""
    L, H = values.shape
    fig = go.Figure(go.Heatmap(z=values, x=[f"H{h}" for h in range(H)], y=[f"L{layer}" for layer in range(L)],
                               colorscale="Viridis", text=[[format(v, fmt) for v in row] for row in values],
                               texttemplate="%{text}", hovertemplate="%{y} %{x}: %{z:.3f}<extra></extra>",
                               colorbar=dict(thickness=12)))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, name, height=120 + 36 * L)


# ---- embeddings ----
def embedding_scatter(points: np.ndarray, labels: list[str], ids: list[int], explained: np.ndarray,
                      highlight: list[int] | None = None) -> go.Figure:
    """Token embeddings on their first 2 or 3 principal components, each point labelled with its token."""
    highlight = set(highlight or [])
    colors = [PALETTE[3] if i in highlight else PALETTE[0] for i in ids]
    hover = [f"id {i}: {lab!r}" for i, lab in zip(ids, labels)]
    axis = [f"PC{j + 1} ({100 * e:.0f}% var)" for j, e in enumerate(explained)]
    common = dict(mode="markers+text", text=labels, hovertext=hover, hoverinfo="text",
                  textposition="top center", textfont=dict(size=10))
    if points.shape[1] >= 3:
        fig = go.Figure(go.Scatter3d(x=points[:, 0], y=points[:, 1], z=points[:, 2],
                                     marker=dict(size=3, color=colors), **common))
        fig.update_layout(scene=dict(xaxis_title=axis[0], yaxis_title=axis[1], zaxis_title=axis[2]))
        return _layout(fig, "Token embeddings (PCA, 3D)", height=600)
    fig = go.Figure(go.Scatter(x=points[:, 0], y=points[:, 1], marker=dict(size=7, color=colors), **common))
    fig.update_xaxes(title_text=axis[0])
    fig.update_yaxes(title_text=axis[1] if len(axis) > 1 else "")
    return _layout(fig, "Token embeddings (PCA, 2D)", height=560)


def matrix_heatmap(z: np.ndarray, title: str, x_title: str, y_title: str, colorscale: str = "RdBu",
                   symmetric: bool = True) -> go.Figure:
    """A plain matrix heatmap (positional embeddings, position x position similarity)."""
    lim = float(np.nanmax(np.abs(z))) if symmetric and z.size else None
    fig = go.Figure(go.Heatmap(z=z, colorscale=colorscale, zmid=0 if symmetric else None,
                               zmin=-lim if lim else None, zmax=lim if lim else None,
                               colorbar=dict(thickness=12),
                               hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>%{{z:.3f}}<extra></extra>"))
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title, autorange="reversed")
    return _layout(fig, title, height=420)


# ---- generation ----
def token_bars(tokens: list[str], probs: list[float], title: str, chosen: int | None = None) -> go.Figure:
    """Horizontal bars of candidate tokens and their probabilities, most likely on top; `chosen` (an index
    into tokens) is drawn in another colour."""
    colors = [PALETTE[1] if i == chosen else PALETTE[0] for i in range(len(tokens))]
    fig = go.Figure(go.Bar(x=probs, y=[f"{t!r}" for t in tokens], orientation="h", marker_color=colors,
                           text=[f"{p:.1%}" for p in probs], textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text="probability", range=[0, min(1.0, max(probs, default=1) * 1.25 + 0.02)])
    return _layout(fig, title, height=max(220, 60 + 26 * len(tokens)))
