"""Figures of the landing page "Inside a prediction": the pipeline picture and one heat strip per stage.

Every vector is drawn as a strip of coloured cells (blue = positive, red = negative, white = 0) with its exact
value on hover, so a learner sees the same numbers gpt.interp.forward_steps computed.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from explorer.figures.base import MASK_COLOR, PALETTE, SELECT_COLOR, safe

# negative red, zero white, positive blue (written out: plotly.py and plotly.js disagree on which end "RdBu" is)
SIGNED_SCALE = [[0.0, "#b2182b"], [0.25, "#ef8a62"], [0.5, "#f7f7f7"], [0.75, "#67a9cf"], [1.0, "#2166ac"]]
PROB_SCALE = "Blues"


def light(trace: dict | None, title: str = "", height: int = 300, margin: dict | None = None, **kw) -> go.Figure:
    """A figure with base.layout's look built in one go: one trace (a plain dict) and its layout, with no plotly
    template. Building with go.Heatmap(...) then update_layout(template="plotly_white") cost 9-30 ms per figure,
    and this page draws a dozen figures per click (bench/inside_page.py)."""
    layout = dict(template="none", height=height, margin=margin or dict(l=10, r=10, t=34 if title else 8, b=40),
                  font=dict(family="sans-serif", size=12, color="#31333f"), paper_bgcolor="white",
                  plot_bgcolor=kw.pop("plot_bgcolor", "white"), hoverlabel=dict(font_size=12), **kw)
    if title:
        layout["title"] = dict(text=title, x=0, font=dict(size=15))
    return go.Figure(data=[] if trace is None else [trace], layout=layout)


def _np(v) -> np.ndarray:
    return np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float32)


def strips(rows: list[tuple[str, object]], title: str = "", x_name: str = "channel", height: int | None = None,
           limit: float | None = None) -> go.Figure:
    """Several vectors of the same length as labelled strips on one signed colour scale (hover: row, index, value).
    limit fixes the colour range at +-limit (default: the largest magnitude shown)."""
    names = [name for name, _ in rows]
    z = np.stack([_np(v) for _, v in rows])                      # (rows, n)
    finite = z[np.isfinite(z)]
    lim = limit or (float(np.abs(finite).max()) if finite.size else 1.0)
    trace = dict(type="heatmap",
        z=z, y=names, colorscale=SIGNED_SCALE, zmin=-(lim or 1.0), zmax=lim or 1.0, xgap=0.5, ygap=3,
        hovertemplate="%{y}<br>" + x_name + " %{x}: %{z:.4f}<extra></extra>",
        colorbar=dict(thickness=10, len=1.0, lenmode="fraction", y=0.5, yanchor="middle", outlinewidth=0))
    return light(trace, title, height or 70 + 34 * len(rows),
                 yaxis=dict(autorange="reversed", type="category", automargin=True),
                 xaxis=dict(title=dict(text=f"{x_name} (0..{z.shape[1] - 1})"), showgrid=False, zeroline=False))


def pipeline_figure(cfg, layer: int | None = None, T: int = 0) -> go.Figure:
    """The whole model as one row of boxes with the run's real sizes; `layer` (a block) is framed in orange.
    Models deeper than 6 layers show their first 4 blocks, a gap and the last one."""
    C, V = cfg.n_embd, cfg.vocab_size
    boxes: list[tuple[str, str, str]] = [("Text → tokens", f"{T} token ids", "#eeeeee")]
    pos = "token + position" if cfg.has_position_table else "token (rotary: positions<br>rotate q, k)"
    boxes.append(("Embedding", f"{pos}<br>({T}, {C})", "#fde0c5"))
    layers = list(range(cfg.n_layer)) if cfg.has_attention else []
    shown = layers if len(layers) <= 6 else layers[:4] + [None] + layers[-1:]
    nh, hs = cfg.effective_n_head, cfg.head_size
    norm = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm", "none": "no norm"}[cfg.norm]
    for i in shown:
        if i is None:
            boxes.append(("…", f"{cfg.n_layer - 5} more<br>blocks", "#ffffff"))
            continue
        inner = f"{norm}<br>attention {nh}×{hs}<br>+ residual"
        if cfg.has_mlp:
            inner += f"<br>{norm}<br>MLP {C}→{4 * C}→{C}<br>+ residual"
        boxes.append((f"Block {i}", inner, "#dbe9f6"))
    final = "Final " + norm if cfg.norm != "none" else "No final norm"
    boxes += [(final, f"({T}, {C})", "#eeeeee"), ("Logits", f"× W_U → ({T}, {V})", "#e5f5e0"),
              ("Softmax", f"→ next token<br>({V} probabilities)", "#e5f5e0")]
    n = len(boxes)
    shapes, notes = [], []
    height = 1.0 if not cfg.has_mlp else 1.4
    for k, (name, body, color) in enumerate(boxes):
        selected = name == f"Block {layer}"
        # plain dicts, added in one call: add_shape/add_annotation validate each one (~160 ms for this picture)
        shapes.append(dict(type="rect", x0=k + 0.06, x1=k + 0.94, y0=0, y1=height, fillcolor=color, layer="below",
                           line=dict(color=SELECT_COLOR if selected else "#888888", width=3 if selected else 1)))
        notes.append(dict(x=k + 0.5, y=height, text=f"<b>{safe(name)}</b>", showarrow=False, yshift=-12,
                          font=dict(size=12, color="#222222")))
        notes.append(dict(x=k + 0.5, y=height / 2 - 0.08, text=body, showarrow=False,
                          font=dict(size=10, color="#222222")))
        if k < n - 1:
            notes.append(dict(x=k + 1.06, y=height / 2, ax=k + 0.94, ay=height / 2, xref="x", yref="y", axref="x",
                              ayref="y", text="", showarrow=True, arrowhead=2, arrowwidth=1.2))
    return light(None, "", 150 if not cfg.has_mlp else 190, margin=dict(l=4, r=4, t=4, b=4), shapes=shapes,
                 annotations=notes, xaxis=dict(visible=False, range=[0, n]),
                 yaxis=dict(visible=False, range=[-0.05, height + 0.05]))


def attention_row_figure(head, labels: list[str], position: int) -> go.Figure:
    """The chosen query's row through the head: q·k, ÷√hs, the causal mask and the softmax, one column per token.
    Future columns (j > position) are grey: the mask sets their score to -inf, so softmax gives them 0."""
    T = len(labels)
    P = position + 1
    rows = {"q · k": _np(head.dots), f"÷ √{len(head.q)}  (score)": _np(head.scores), "softmax (weight)": _np(head.weights)}
    z = np.full((3, T), np.nan, dtype=np.float32)
    text = [[""] * T for _ in range(3)]
    for r, values in enumerate(rows.values()):
        z[r, :P] = values
        for j in range(P):
            text[r][j] = f"{values[j]:.2f}"
    # each row has its own range: shade it from its own min (white) to max (dark) so the three compare at a glance
    zc = np.full_like(z, np.nan)
    for r in range(3):
        v = z[r, :P]
        span = float(v.max() - v.min()) or 1.0
        zc[r, :P] = (v - v.min()) / span
    ticks = [f"{j}:{safe(t)}" for j, t in enumerate(labels)]
    show_text = T <= 40
    trace = dict(type="heatmap",
        z=zc, x=ticks, y=list(rows), colorscale=PROB_SCALE, zmin=0, zmax=1, showscale=False, xgap=1, ygap=3,
        customdata=z, text=text, texttemplate="%{text}" if show_text else None, textfont=dict(size=9),
        hovertemplate="%{y}<br>key %{x}: %{customdata:.4f}<extra></extra>", hoverongaps=False)
    notes = []
    if P < T:
        notes.append(dict(x=ticks[min(T - 1, P + (T - P) // 2)], y=1, text="future: masked (−∞ → weight 0)",
                          showarrow=False, font=dict(color="#555555", size=11), bgcolor="rgba(255,255,255,0.7)"))
    frame = dict(type="rect", xref="x", yref="paper", x0=position - 0.5, x1=position + 0.5, y0=0, y1=1,
                 line=dict(color=SELECT_COLOR, width=2))
    return light(trace, "", 230, margin=dict(l=10, r=10, t=8, b=10), plot_bgcolor=MASK_COLOR, annotations=notes,
                 shapes=[frame], yaxis=dict(autorange="reversed", type="category", automargin=True),
                 xaxis=dict(type="category", tickangle=-90 if T > 16 else 0, showgrid=False, tickfont=dict(size=10),
                            automargin=True))


def keys_figure(head, labels: list[str]) -> go.Figure:
    """This position's query (top row) above every visible token's key (one row per earlier position)."""
    rows = [("query q", head.q)]
    if not np.allclose(_np(head.q), _np(head.q_raw)):  # QK-norm or rotary changed it: show both
        rows.append(("q before norm/rotation", head.q_raw))
    rows += [(f"key {j}:{safe(labels[j])}", k) for j, k in enumerate(head.keys)]
    return strips(rows, x_name="head channel", height=70 + 18 * len(rows))


def logits_figure(view, token_text: list[str], top: int = 20) -> go.Figure:
    """The top tokens by probability after temperature: kept by top-k/top-p (blue) or cut (grey), the token
    sampling picked in orange, and a dashed line where the cut-off falls."""
    probs = _np(view.probs)
    order = np.argsort(-probs, kind="stable")[:top]
    kept = _np(view.kept).astype(bool)
    colors = [SELECT_COLOR if i == view.pick else (PALETTE[0] if kept[i] else "#c7c7c7") for i in order]
    labels = [safe(token_text[i]) for i in order]
    final = _np(view.final)
    trace = dict(type="bar",
        x=labels, y=probs[order], marker_color=colors, text=[f"{probs[i]:.1%}" if probs[i] >= 0.001 else "" for i in order],
        textposition="outside", cliponaxis=False, customdata=final[order],
        hovertemplate="%{x}: %{y:.3f} after temperature<br>%{customdata:.3f} after the cut-offs<extra></extra>")
    n_kept = int(kept[order].sum())
    shapes, notes = [], []
    if 0 < n_kept < len(order) and kept[order][:n_kept].all():
        shapes.append(dict(type="line", xref="x", yref="paper", x0=n_kept - 0.5, x1=n_kept - 0.5, y0=0, y1=1,
                           line=dict(color="#555555", dash="dash")))
        notes.append(dict(x=n_kept - 0.5, y=1.0, yref="paper", text="top-k / top-p cut-off", showarrow=False,
                          xanchor="left", xshift=4, font=dict(size=11)))
    return light(trace, "", 300, margin=dict(l=60, r=10, t=10, b=50), shapes=shapes, annotations=notes,
                 xaxis=dict(type="category", title=dict(text=f"the {len(order)} most likely next tokens")),
                 yaxis=dict(title=dict(text="probability"), gridcolor="#eeeeee",
                            range=[0, min(1.05, float(probs[order[0]]) * 1.2 + 0.02)]))


def top_neurons_figure(top: list[tuple[int, float]]) -> go.Figure:
    """The most active neurons of one MLP layer at this position, as bars."""
    trace = dict(type="bar", x=[f"n{i}" for i, _ in top], y=[v for _, v in top], marker_color=PALETTE[2],
                           text=[f"{v:.2f}" for _, v in top], textposition="outside", cliponaxis=False,
                           hovertemplate="neuron %{x}: %{y:.4f}<extra></extra>")
    return light(trace, "", 220, margin=dict(l=60, r=10, t=16, b=50),
                 xaxis=dict(type="category", title=dict(text="neuron")),
                 yaxis=dict(title=dict(text="activation"), gridcolor="#eeeeee"))


def neuron_heatmap(acts, neurons: list[int], labels: list[str], selected: int | None = None) -> go.Figure:
    """Activations (T, N) of the listed neurons (rows) at every prompt position (columns); `selected` framed."""
    z = _np(acts)[:, neurons].T                                     # (n, T)
    ticks = [f"{j}:{safe(t)}" for j, t in enumerate(labels)]
    names = [f"n{i}" for i in neurons]
    lim = float(np.abs(z).max()) or 1.0
    trace = dict(type="heatmap", z=z, x=ticks, y=names, colorscale=SIGNED_SCALE, zmin=-lim, zmax=lim, xgap=0.5,
                 ygap=0.5, hoverinfo="skip",  # the clickable markers below carry the hover text
                 colorbar=dict(thickness=10, len=min(1.0, 300 / (60 + 14 * len(neurons)))))
    shapes = []
    if selected in neurons:
        r = neurons.index(selected)
        shapes.append(dict(type="rect", xref="paper", x0=0, x1=1, y0=r - 0.5, y1=r + 0.5,
                           line=dict(color=SELECT_COLOR, width=2)))
    fig = light(trace, "", 90 + 14 * len(neurons), margin=dict(l=10, r=10, t=8, b=10), shapes=shapes,
                xaxis=dict(type="category", tickangle=-90 if len(labels) > 16 else 0, tickfont=dict(size=10),
                           showgrid=False, automargin=True),
                yaxis=dict(type="category", autorange="reversed", tickfont=dict(size=10), automargin=True))
    # heatmaps report no clicks: a near-transparent marker on every cell carries its neuron (customdata), so a
    # click on the map selects that neuron through Streamlit's plotly selection
    fig.add_trace(go.Scatter(x=[t for _ in names for t in ticks], y=[n for n in names for _ in ticks],
                             customdata=[[i, float(v)] for i, row in zip(neurons, z) for v in row], mode="markers",
                             showlegend=False, marker=dict(symbol="square", size=10, color="rgba(0,0,0,0.01)"),
                             selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)),
                             hovertemplate="neuron %{customdata[0]} at %{x}: %{customdata[1]:.3f}<br>click to study "
                                           "this neuron<extra></extra>"))
    fig.update_layout(clickmode="event+select", dragmode=False)
    return fig


def effect_bars(tokens: list[str], values: list[float], title: str) -> go.Figure:
    """Horizontal bars of signed per-token effects (logit change per unit of activation), largest magnitude on top."""
    trace = dict(type="bar", x=values, y=[safe(t) for t in tokens], orientation="h",
                           marker_color=["#2166ac" if v >= 0 else "#b2182b" for v in values],
                           text=[f"{v:+.2f}" for v in values], cliponaxis=False,
                           # outside the bar for positive values; inside for negative ones, which would otherwise
                           # run into the token labels on the left
                           textposition=["outside" if v >= 0 else "inside" for v in values],
                           insidetextanchor="start",
                           hovertemplate="%{y}: %{x:+.3f}<extra></extra>")
    return light(trace, title, 70 + 24 * len(tokens), margin=dict(l=10, r=40, t=34, b=40),
                 yaxis=dict(autorange="reversed", type="category", automargin=True),
                 xaxis=dict(title=dict(text="logit change per unit of activation"), gridcolor="#eeeeee",
                            automargin=True))
