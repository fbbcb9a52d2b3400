"""Figures of the training lab: induction heads forming, grokking, sweeps over seeds, and the ICL/induction
curves the Train page and the time machine show beside the loss. Plain rows in (metrics.jsonl dicts), a
go.Figure out; no streamlit, no model calls."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from explorer.figures.base import PALETTE, is_number, layout


def _series(rows: list[dict], key: str) -> tuple[list, list]:
    pts = [(r["step"], r[key]) for r in rows if is_number(r.get(key)) and isinstance(r.get("step"), int)]
    return [s for s, _ in pts], [v for _, v in pts]


def probe_curves(rows: list[dict], title: str = "In-context learning and induction") -> go.Figure:
    """ICL score (left axis, nats) and the strongest head's induction / previous-token scores (right axis, 0-1)
    against the step: the numbers the trainer logs at each evaluation."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x, y = _series(rows, "icl_score")
    fig.add_trace(go.Scatter(x=x, y=y, name="ICL score (late - early loss)", mode="lines+markers",
                             line=dict(color=PALETTE[0])), secondary_y=False)
    for key, label, color in (("induction_score", "induction head", PALETTE[3]),
                              ("prev_token_score", "previous-token head", PALETTE[2])):
        x, y = _series(rows, key)
        fig.add_trace(go.Scatter(x=x, y=y, name=f"strongest {label}", mode="lines+markers",
                                 line=dict(color=color, dash="dot")), secondary_y=True)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="ICL score (nats)", secondary_y=False)
    fig.update_yaxes(title_text="head score", range=[0, 1], secondary_y=True)
    return layout(fig, title, height=300, legend=dict(orientation="h", y=-0.3))


def induction_lab_figure(rows_by_model: dict[str, list[dict]], phase_steps: dict[str, int | None]) -> go.Figure:
    """Side by side over the step, one colour per model: validation loss, the strongest induction head's score,
    and the ICL score; a dotted line where each model's induction score rose fastest (the phase change)."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07,
                        subplot_titles=("validation loss", "strongest induction head", "ICL score (late - early)"))
    for i, (name, rows) in enumerate(rows_by_model.items()):
        color = PALETTE[i % len(PALETTE)]
        for col, key in enumerate(("val_loss", "induction_score", "icl_score"), start=1):
            x, y = _series(rows, key)
            fig.add_trace(go.Scatter(x=x, y=y, name=name, legendgroup=name, showlegend=col == 1, mode="lines+markers",
                                     line=dict(color=color), marker=dict(size=5)), row=1, col=col)
        step = phase_steps.get(name)
        if step is not None:
            for col in (1, 2, 3):
                fig.add_vline(x=step, line=dict(color=color, dash="dot", width=1.5), row=1, col=col)
            # inside the plot, at its foot: above it the subplot's title would be overwritten
            fig.add_annotation(x=step, y=0.01, yref="y2 domain", xref="x2", text=f"phase change ({name}) @ {step}",
                               showarrow=False, yanchor="bottom", xanchor="left", xshift=4,
                               font=dict(size=11, color=color), bgcolor="rgba(255,255,255,0.8)")
    fig.add_hline(y=0.5, line=dict(color="#888", dash="dash", width=1), row=1, col=2)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_xaxes(title_text="step")
    layout(fig, "Induction heads form: 2-layer vs 1-layer attention-only", height=400,
            legend=dict(orientation="h", y=-0.25))
    return fig.update_layout(margin=dict(t=80))  # room for the subplot titles under the figure's title


def grokking_curves(rows: list[dict], step_train_99: int | None = None, step_test_99: int | None = None) -> go.Figure:
    """Loss (log scale), accuracy and the total weight norm of the grokking run, with the steps where train
    and test accuracy first reached 99% marked."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.07,
                        subplot_titles=("loss (log scale)", "accuracy", "weight norm"))
    for split, color in (("train", PALETTE[0]), ("test", PALETTE[1])):
        x, y = _series(rows, f"{split}_loss")
        fig.add_trace(go.Scatter(x=x, y=y, name=split, legendgroup=split, line=dict(color=color)), row=1, col=1)
        x, y = _series(rows, f"{split}_acc")
        fig.add_trace(go.Scatter(x=x, y=y, name=split, legendgroup=split, showlegend=False, line=dict(color=color)),
                      row=1, col=2)
    x, y = _series(rows, "weight_norm")
    fig.add_trace(go.Scatter(x=x, y=y, name="weight norm", line=dict(color=PALETTE[2])), row=1, col=3)
    for step, label, color in ((step_train_99, "train 99%", PALETTE[0]), (step_test_99, "test 99%", PALETTE[1])):
        if step is not None:
            fig.add_vline(x=step, line=dict(color=color, dash="dot"), row=1, col=2)
            fig.add_annotation(x=step, y=0.5 if "train" in label else 0.3, xref="x2", yref="y2", text=f"{label} @ {step}",
                               showarrow=False, xanchor="left", font=dict(size=11, color=color))
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_xaxes(title_text="step")
    layout(fig, "Grokking: a + b mod p", height=360, legend=dict(orientation="h", y=-0.25))
    return fig.update_layout(margin=dict(t=80))


def fourier_figure(rows: list[dict]) -> go.Figure:
    """The embedding's norm per frequency over the steps (heatmap: step x frequency), and the latest row as bars
    with the key frequencies named."""
    rows = [r for r in rows if isinstance(r.get("fourier_norms"), list) and r["fourier_norms"]]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.6, 0.4], horizontal_spacing=0.08,
                        subplot_titles=("embedding norm per frequency over training", "now"))
    if not rows:
        return layout(fig, "Embedding in the Fourier basis (no evaluations yet)", height=340)
    z = [r["fourier_norms"] for r in rows]
    freqs = list(range(1, len(z[0]) + 1))
    fig.add_trace(go.Heatmap(x=freqs, y=[r["step"] for r in rows], z=z, colorscale="Viridis", showscale=False,
                             hovertemplate="frequency %{x}<br>step %{y}<br>norm %{z:.2f}<extra></extra>"), row=1, col=1)
    last = rows[-1]
    keys = set(last.get("key_frequencies") or [])
    fig.add_trace(go.Bar(x=freqs, y=last["fourier_norms"], showlegend=False,
                         marker_color=[PALETTE[3] if k in keys else "#9aa5b1" for k in freqs],
                         hovertemplate="frequency %{x}: %{y:.2f}<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title_text="frequency k (cos/sin 2πka/p)")
    fig.update_yaxes(title_text="step", row=1, col=1)
    share = last.get("key_share")
    title = (f"Embedding in the Fourier basis: key frequencies {sorted(keys)} hold {share:.0%} of the norm²"
             if keys and is_number(share) else "Embedding in the Fourier basis")
    layout(fig, title, height=360)
    return fig.update_layout(margin=dict(t=80))


def sweep_figure(results, param: str, series_param: str | None = None) -> go.Figure:
    """Final validation loss against one hyperparameter: each seed a small dot, the mean over seeds a line with
    +-1 standard deviation as error bars; with a second hyperparameter, one line per value of it.
    results: gpt.lab.sweeps.SettingResult list."""
    fig = go.Figure()
    groups: dict = {}
    for res in results:
        groups.setdefault(res.values.get(series_param) if series_param else None, []).append(res)
    for i, (series, items) in enumerate(groups.items()):
        color = PALETTE[i % len(PALETTE)]
        items = sorted((r for r in items if r.losses), key=lambda r: r.values[param])
        name = f"{series_param}={series}" if series_param else "mean ± 1 sd over seeds"
        fig.add_trace(go.Scatter(x=[r.values[param] for r in items], y=[r.mean for r in items], name=name,
                                 mode="lines+markers", line=dict(color=color),
                                 error_y=dict(type="data", array=[r.std or 0.0 for r in items], visible=True)))
        xs = [r.values[param] for r in items for _ in r.losses]
        ys = [v for r in items for v in r.losses]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", showlegend=False, name="seeds",
                                 marker=dict(color=color, size=6, opacity=0.45)))
    if param == "lr" or param == "weight_decay":
        fig.update_xaxes(type="log")
    fig.update_xaxes(title_text=param)
    fig.update_yaxes(title_text="final validation loss (nats)")
    return layout(fig, f"Final validation loss vs {param}: mean ± 1 sd over seeds, dots = single seeds", height=360,
                   legend=dict(orientation="h", y=-0.25))
