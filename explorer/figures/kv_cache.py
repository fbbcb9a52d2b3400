"""The KV cache during generation: one decoding step (a single new query against every cached key) and the
cache's growth token by token."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures.base import PALETTE, SELECT_COLOR, layout, safe
from explorer.figures.inside import SIGNED_SCALE


def decode_step_figure(head, labels: list[str]) -> go.Figure:
    """head: a gpt.interp.forward.HeadStep at the newest position. Left: the key cache and the value cache (one row
    per token so far; the new token's row, just appended, framed in orange); right: the new query's attention row
    over all cached keys."""
    keys = np.asarray(head.keys, dtype=np.float32)
    values = np.asarray(head.values, dtype=np.float32)
    weights = np.asarray(head.weights, dtype=np.float32)
    P, hs = keys.shape
    names = [f"{j}:{safe(labels[j])}" for j in range(P)]
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.03, column_widths=[0.38, 0.38, 0.24],
                        subplot_titles=["K cache (keys)", "V cache (values)", "new query's weights"])
    for col, (mat, what) in enumerate(((keys, "key"), (values, "value")), start=1):
        lim = float(np.abs(mat).max()) or 1.0
        fig.add_trace(go.Heatmap(z=mat, y=names, colorscale=SIGNED_SCALE, zmin=-lim, zmax=lim, showscale=False,
                                 hovertemplate=f"%{{y}}<br>{what} channel %{{x}}: %{{z:.3f}}<extra></extra>"),
                      row=1, col=col)
        fig.add_shape(type="rect", x0=-0.5, x1=hs - 0.5, y0=P - 1.5, y1=P - 0.5, line=dict(color=SELECT_COLOR, width=2),
                      row=1, col=col)
    fig.add_trace(go.Bar(x=weights, y=names, orientation="h", marker_color=[SELECT_COLOR if j == P - 1 else PALETTE[0]
                                                                            for j in range(P)],
                         hovertemplate="%{y}: weight %{x:.3f}<extra></extra>", showlegend=False), row=1, col=3)
    fig.update_yaxes(type="category", autorange="reversed", tickfont=dict(size=10))
    fig.update_xaxes(range=[0, 1], row=1, col=3)
    fig = layout(fig, "", height=min(900, 80 + 14 * P))
    fig.update_layout(margin=dict(l=10, r=10, t=30, b=10))
    return fig


def cache_growth_figure(n_layer: int, n_embd: int, prompt_len: int, total: int, step: int) -> go.Figure:
    """Numbers held in the KV cache (2 x layers x T x C) as the sequence grows; the shown step marked."""
    t = np.arange(1, total + 1)
    numbers = 2 * n_layer * n_embd * t
    fig = go.Figure(go.Scatter(x=t, y=numbers, mode="lines", line=dict(color=PALETTE[0]),
                               hovertemplate="%{x} tokens: %{y:,} numbers<extra></extra>"))
    fig.add_vline(x=prompt_len, line=dict(color="#888888", dash="dot"))
    fig.add_annotation(x=prompt_len, y=1, yref="paper", text="end of prompt", showarrow=False, xanchor="left",
                       xshift=4, font=dict(size=11))
    fig.add_trace(go.Scatter(x=[step + 1], y=[2 * n_layer * n_embd * (step + 1)], mode="markers",
                             marker=dict(color=SELECT_COLOR, size=10), showlegend=False, hoverinfo="skip"))
    fig.update_xaxes(title_text="tokens in the sequence")
    fig.update_yaxes(title_text="cached numbers (K and V)")
    fig = layout(fig, "", height=240)
    fig.update_layout(margin=dict(l=60, r=10, t=10, b=40), showlegend=False)
    return fig
