"""Attention figures: one head's pattern, the mosaic of every head, and per-head score grids."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures.base import MASK_COLOR, SELECT_COLOR, WEIGHTS_SCALE, as_rows, layout, tick_labels
from gpt.interp.detectors import DETECTORS, LABELS


def attention_heatmap(pattern, labels: list[str], title: str = "", diverging: bool = False) -> go.Figure:
    """One head's (T, T) pattern: row = query (the token predicting), column = key (the token looked at).
    The future (above the diagonal) is left empty so the grey causal mask shows through. diverging=True draws
    a difference of two patterns (red/blue around 0) instead of weights in [0, 1]."""
    pattern = np.asarray(pattern, dtype=np.float32)
    T = pattern.shape[0]
    z = np.where(np.tril(np.ones((T, T), dtype=bool)), pattern, np.nan).astype(np.float32)  # float32: half the bytes
    ticks = tick_labels(labels)
    if diverging:
        lim = float(np.nanmax(np.abs(z))) if T else 1.0
        scale = dict(colorscale="RdBu", zmid=0, zmin=-lim or -1, zmax=lim or 1)
    else:
        scale = dict(colorscale=WEIGHTS_SCALE, zmin=0, zmax=1)
    fig = go.Figure(go.Heatmap(
        z=z, **scale,
        # hover names positions only: per-cell token text would cost T*T strings (megabytes at T=256)
        hovertemplate="query %{y} → key %{x}<br>" + ("change" if diverging else "weight") + " %{z:.3f}<extra></extra>",
        colorbar=dict(title="change" if diverging else "weight", thickness=12)))
    step = max(1, T // 48)  # at most ~48 tick labels per axis stay readable
    tickvals = list(range(0, T, step))
    fig.update_xaxes(tickvals=tickvals, ticktext=[ticks[i] for i in tickvals], side="top", tickangle=-90,
                     title_text="key (attended to)", showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(tickvals=tickvals, ticktext=[ticks[i] for i in tickvals], autorange="reversed",
                     title_text="query (predicting from)", showgrid=False, zeroline=False, scaleanchor="x",
                     constrain="domain")
    size = min(900, max(420, 16 * T + 160))
    fig = layout(fig, title, height=size, plot_bgcolor=MASK_COLOR)
    fig.update_layout(margin=dict(l=10, r=10, t=90 if T <= 48 else 60, b=10))
    return fig


def contrast_normalise(pooled: np.ndarray) -> np.ndarray:
    """Each head's thumbnail (..., S, S) divided by its own 99th-percentile weight over queries 1.. (query 0 can
    only read itself, a 1.0 that would wash every other cell out), clipped to 1: a previous-token head's faint
    diagonal becomes as dark as a sharp one."""
    pooled = np.asarray(pooled, dtype=np.float32)
    S = pooled.shape[-1]
    if S < 2:
        return pooled
    rows, cols = np.tril_indices(S)
    keep = rows > 0
    visible_cells = pooled[..., rows[keep], cols[keep]]                      # (..., n)
    top = np.quantile(visible_cells, 0.99, axis=-1)[..., None, None]
    return np.clip(pooled / np.maximum(top, 1e-6), 0.0, 1.0)


def attention_overview(patterns, selected: tuple[int, int] | None = None, max_tokens: int | None = None,
                       title: str = "Every head at a glance", tile_names: bool = False,
                       clickable: bool = False) -> go.Figure:
    """Small multiples: every head's (L, H, S, S) pattern (pooled or cropped to a thumbnail; max_tokens crops),
    layers as rows, heads as columns; tile_names writes "L1H2" over each tile (for a static page without hover);
    clickable=True lays an invisible marker over each tile's centre, so a click on a tile reports its
    customdata [layer, head] through Streamlit's plotly selection (heatmaps themselves report no clicks).

    Drawn as one mosaic heatmap (tiles separated by blank gaps, labelled on the axes) rather than a subplot per
    head: 24 subplots took ~0.3-1.5 s to build in Python and made the browser lay out 48 axes on every rerun."""
    pooled = np.asarray(patterns, dtype=np.float32)
    if max_tokens is not None:
        pooled = pooled[..., :max_tokens, :max_tokens]
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
    fig = go.Figure(go.Heatmap(z=np.round(z, 3).astype(np.float32), colorscale=WEIGHTS_SCALE, zmin=0, zmax=1,
                               showscale=False, hovertemplate="weight %{z:.2f}<extra></extra>", hoverongaps=False))
    if selected is not None:
        layer, head = selected
        fig.add_shape(type="rect", x0=head * step - 0.5, x1=head * step + S - 0.5, y0=layer * step - 0.5,
                      y1=layer * step + S - 0.5, line=dict(color=SELECT_COLOR, width=2))
    if clickable:
        xs, ys, who = [], [], []
        for layer in range(L):
            for head in range(H):
                xs.append(head * step + (S - 1) / 2)
                ys.append(layer * step + (S - 1) / 2)
                who.append([layer, head])
        fig.add_trace(go.Scatter(x=xs, y=ys, customdata=who, mode="markers", showlegend=False,
                                 marker=dict(symbol="square", size=int(0.8 * max(60, min(150, 520 // H))),
                                             color="rgba(0,0,0,0.01)"),
                                 selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)),
                                 hovertemplate="layer %{customdata[0]}, head %{customdata[1]}: click to show it"
                                               "<extra></extra>"))
        fig.update_layout(clickmode="event+select", dragmode=False)
        # fixed ranges: autorange would pad the axes for the big markers and shrink the tiles
        fig.update_xaxes(range=[-0.5, z.shape[1] - 0.5])
        fig.update_yaxes(range=[z.shape[0] - 0.5, -0.5], autorange=False)
    if tile_names:
        for layer in range(L):
            for head in range(H):
                fig.add_annotation(x=head * step + (S - 1) / 2, y=layer * step, text=f"L{layer}H{head}",
                                   showarrow=False, yshift=8, font=dict(size=10))
    fig.update_xaxes(tickvals=centers[:H], ticktext=[f"H{h}" for h in range(H)], side="top", showgrid=False,
                     zeroline=False, ticks="", constrain="domain")
    fig.update_yaxes(tickvals=centers[:L], ticktext=[f"L{layer}" for layer in range(L)], showgrid=False,
                     zeroline=False, ticks="", scaleanchor="x", constrain="domain",
                     **({} if clickable else {"autorange": "reversed"}))
    # keep thumbnails about square in their column: ~520 px wide, ~380 px on the Attention page (clickable)
    cell = max(40, min(150, 380 // H)) if clickable else max(60, min(150, 520 // H))
    return layout(fig, title, height=min(1600, 90 + cell * L), plot_bgcolor="white")


def head_grid(values, title: str = "", fmt: str = ".2f", zmax: float | None = 1.0,
              diverging: bool = False) -> go.Figure:
    """A layer x head grid coloured and labelled by one per-head value ((L, H) array, tensor or nested list).
    Scores in [0, 1] use the attention colours; diverging=True centres a red/blue scale on 0 (changes)."""
    rows = as_rows(values)
    L, H = len(rows), len(rows[0])
    if diverging:
        lim = zmax or max((abs(v) for row in rows for v in row), default=1.0) or 1.0
        scale = dict(colorscale="RdBu", zmid=0, zmin=-lim, zmax=lim)
    else:
        scale = dict(colorscale=WEIGHTS_SCALE, zmin=0, zmax=zmax)
    fig = go.Figure(go.Heatmap(
        z=rows, x=[f"H{h}" for h in range(H)], y=[f"L{layer}" for layer in range(L)], **scale,
        text=[[format(v, fmt) for v in row] for row in rows], texttemplate="%{text}",
        hovertemplate="%{y} %{x}: %{z:.3f}<extra></extra>", colorbar=dict(thickness=12)))
    fig.update_yaxes(autorange="reversed")
    fig = layout(fig, title, height=120 + 40 * L)
    fig.update_layout(margin=dict(l=40, r=10, t=40, b=30))
    return fig


def detector_heatmaps(scores) -> go.Figure:
    """scores (4, L, H) in gpt.interp.detectors.DETECTORS order -> four layer x head heatmaps side by side."""
    grids = [as_rows(grid) for grid in (scores.tolist() if hasattr(scores, "tolist") else scores)]
    L, H = len(grids[0]), len(grids[0][0])
    titles = [LABELS[d] for d in DETECTORS]
    fig = make_subplots(rows=1, cols=len(DETECTORS), subplot_titles=titles, horizontal_spacing=0.04)
    for d, grid in enumerate(grids):
        fig.add_trace(go.Heatmap(
            z=grid, x=[f"H{h}" for h in range(H)], y=[f"L{layer}" for layer in range(L)], zmin=0, zmax=1,
            colorscale=WEIGHTS_SCALE, showscale=(d == len(grids) - 1), text=[[f"{v:.2f}" for v in row] for row in grid],
            texttemplate="%{text}", hovertemplate=f"{titles[d]} %{{y}} %{{x}}: %{{z:.3f}}<extra></extra>"),
            row=1, col=d + 1)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=140 + 40 * L, margin=dict(l=40, r=10, t=40, b=30))
    return fig
