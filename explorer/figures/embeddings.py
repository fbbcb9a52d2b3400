"""Embedding figures: token embeddings on principal components, and plain matrix heatmaps."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from explorer.figures.base import PALETTE, layout, safe

MAX_TEXT = 400   # beyond this many points, labels turn into noise and slow the browser: hover only, WebGL in 2D


def embedding_scatter(points, labels: list[str], ids: list[int] | None = None, explained=None,
                      highlight: list[int] | None = None, axis_range: float | None = None,
                      title: str | None = None) -> go.Figure:
    """Token embeddings on their first 2 or 3 principal components, each point labelled with its token.

    explained: the fraction of variance per component (named on the axes); highlight: ids drawn in another
    colour; axis_range: a fixed symmetric range, so frames of an animation (time machine) stay comparable.
    More than MAX_TEXT points (a BPE vocabulary): markers with hover text only, drawn with WebGL (scattergl) in
    2D, and the highlighted tokens in a second trace with their labels."""
    points = np.asarray(points, dtype=float)
    ids = list(range(len(labels))) if ids is None else list(ids)
    highlight = set(highlight or [])
    many = len(ids) > MAX_TEXT
    colors = [PALETTE[3] if i in highlight else PALETTE[0] for i in ids]
    shown = [safe(t) for t in labels]
    hover = [f"id {i}: {s}" for i, s in zip(ids, shown)]
    axis = ([f"PC{j + 1} ({100 * e:.0f}% var)" for j, e in enumerate(explained)] if explained is not None
            else ["PC1", "PC2", "PC3"])
    common = dict(mode="markers" if many else "markers+text", hovertext=hover, hoverinfo="text",
                  **({} if many else dict(text=shown, textposition="top center", textfont=dict(size=10))))
    marked = [j for j, i in enumerate(ids) if i in highlight] if many else []
    label_trace = dict(mode="markers+text", text=[shown[j] for j in marked], hovertext=[hover[j] for j in marked],
                       hoverinfo="text", textposition="top center", textfont=dict(size=11), showlegend=False)
    if points.shape[1] >= 3:
        fig = go.Figure(go.Scatter3d(x=points[:, 0], y=points[:, 1], z=points[:, 2],
                                     marker=dict(size=2 if many else 3, color=colors), **common))
        if marked:
            fig.add_trace(go.Scatter3d(x=points[marked, 0], y=points[marked, 1], z=points[marked, 2],
                                       marker=dict(size=4, color=PALETTE[3]), **label_trace))
        fig.update_layout(scene=dict(xaxis_title=axis[0], yaxis_title=axis[1], zaxis_title=axis[2]), showlegend=False)
        return layout(fig, title or "Token embeddings (PCA, 3D)", height=600)
    trace = go.Scattergl if many else go.Scatter
    fig = go.Figure(trace(x=points[:, 0], y=points[:, 1], marker=dict(size=4 if many else 7, color=colors), **common))
    if marked:
        fig.add_trace(go.Scatter(x=points[marked, 0], y=points[marked, 1], marker=dict(size=8, color=PALETTE[3]),
                                 **label_trace))
        fig.update_layout(showlegend=False)
    fig.update_xaxes(title_text=axis[0])
    fig.update_yaxes(title_text=axis[1] if len(axis) > 1 else "")
    if axis_range is not None:
        fig.update_xaxes(range=[-axis_range, axis_range], zeroline=False)
        fig.update_yaxes(range=[-axis_range, axis_range], zeroline=False, scaleanchor="x")
    return layout(fig, title or "Token embeddings (PCA, 2D)", height=560)


def matrix_heatmap(z: np.ndarray, title: str, x_title: str, y_title: str, colorscale: str = "RdBu",
                   symmetric: bool = True) -> go.Figure:
    """A plain matrix heatmap (positional embeddings, position x position similarity). With symmetric=True the
    scale is centred on 0: plotly's RdBu draws negative values red and positive values blue."""
    lim = float(np.nanmax(np.abs(z))) if symmetric and z.size else None
    fig = go.Figure(go.Heatmap(z=z, colorscale=colorscale, zmid=0 if symmetric else None,
                               zmin=-lim if lim else None, zmax=lim if lim else None,
                               colorbar=dict(thickness=12),
                               hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>%{{z:.3f}}<extra></extra>"))
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title, autorange="reversed")
    return layout(fig, title, height=420)
