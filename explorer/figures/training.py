"""Training curves: loss per run, one logged metric, head scores beside the validation loss."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures.base import PALETTE, is_number, layout, safe


def smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {weight!r}")
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def loss_curves(metrics_by_run: dict[str, list[dict]], title: str = "Loss", smoothing: float = 0.0) -> go.Figure:
    """Per run, one hue: train loss solid, validation loss dashed with dots, against the step. `smoothing`
    (0..0.99) smooths the noisy one-batch train loss; validation points are shown as measured."""
    fig = go.Figure()
    for i, (name, rows) in enumerate(metrics_by_run.items()):
        color = PALETTE[i % len(PALETTE)]
        label = f"{name} " if len(metrics_by_run) > 1 else ""
        train = [(r["step"], r["train_loss"]) for r in rows if is_number(r.get("train_loss"))]
        val = [(r["step"], r["val_loss"]) for r in rows if is_number(r.get("val_loss"))]
        if train:
            ys = [v for _, v in train]
            fig.add_trace(go.Scatter(x=[s for s, _ in train], y=smooth(ys, smoothing) if smoothing else ys,
                                     mode="lines", name=f"{label}train", line=dict(color=color, width=1.5)))
        if val:
            fig.add_trace(go.Scatter(x=[s for s, _ in val], y=[v for _, v in val], mode="lines+markers",
                                     name=f"{label}val", line=dict(color=color, dash="dash", width=2),
                                     marker=dict(size=7)))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="cross-entropy (nats)")
    return layout(fig, title, legend=dict(orientation="h", y=-0.2))


def metric_curve(rows: list[dict], key: str, title: str, y_title: str, color: str = PALETTE[2]) -> go.Figure:
    """One logged metric (lr, tokens_per_s, grad_norm...) against the step."""
    pts = [(r["step"], r[key]) for r in rows if is_number(r.get(key)) and "train_loss" in r] or \
          [(r["step"], r[key]) for r in rows if is_number(r.get(key))]
    fig = go.Figure(go.Scatter(x=[s for s, _ in pts], y=[v for _, v in pts], mode="lines",
                               line=dict(color=color), name=key))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=y_title)
    return layout(fig, title, height=240)


def score_curves(steps: list[int], curves: dict[str, list[float]], loss_steps: list[int],
                 losses: list[float]) -> go.Figure:
    """Head-score curves over training (left axis) next to the validation loss (right axis)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name, ys in curves.items():
        fig.add_trace(go.Scatter(x=steps, y=ys, mode="lines+markers", name=safe(name)), secondary_y=False)
    if loss_steps:
        fig.add_trace(go.Scatter(x=loss_steps, y=losses, mode="lines", name="validation loss",
                                 line=dict(color="gray", dash="dot")), secondary_y=True)
    fig.update_yaxes(title_text="head score", range=[0, 1.05], secondary_y=False)
    fig.update_yaxes(title_text="validation loss", secondary_y=True)
    fig.update_xaxes(title_text="training step")
    fig.update_layout(height=380, margin=dict(l=50, r=50, t=30, b=40), legend=dict(orientation="h", y=-0.25))
    return fig
