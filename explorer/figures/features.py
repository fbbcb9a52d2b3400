"""Figures of the Features page: where one feature's density sits among all features, and its activation values."""
from __future__ import annotations

import math

import plotly.graph_objects as go

from explorer.figures.base import PALETTE, layout


def density_figure(densities: list[float], feature_density: float, feature: int) -> go.Figure:
    """Histogram of log10(share of tokens) over every live feature, with this feature's value marked."""
    logs = [math.log10(d) for d in densities if d > 0]
    fig = go.Figure(go.Histogram(x=logs, nbinsx=40, marker_color="#c6dbef", name="all features",
                                 hovertemplate="log10 share %{x}<br>%{y} features<extra></extra>"))
    if feature_density > 0:
        x = math.log10(feature_density)
        fig.add_vline(x=x, line_color=PALETTE[1], line_width=3)
        fig.add_annotation(x=x, y=1, yref="paper", text=f"#{feature}: {feature_density:.2%} of tokens",
                           showarrow=False, xanchor="left", yanchor="top", font=dict(color=PALETTE[1]))
    fig.update_xaxes(title="log10 (share of tokens the feature fires on)")
    fig.update_yaxes(title="features")
    return layout(fig, "Activation density", height=260, showlegend=False)


def activation_histogram(counts: list[int], peak: float) -> go.Figure:
    """Counts of the feature's non-zero activations in equal bins over [0, its largest activation]."""
    width = peak / max(1, len(counts))
    centers = [width * (i + 0.5) for i in range(len(counts))]
    fig = go.Figure(go.Bar(x=centers, y=counts, width=width * 0.95, marker_color=PALETTE[0],
                           hovertemplate="activation ≈ %{x:.2f}<br>%{y:,} tokens<extra></extra>"))
    fig.update_xaxes(title="activation")
    fig.update_yaxes(title="tokens", type="log", dtick=1)
    return layout(fig, "Its activations", height=260, showlegend=False)
