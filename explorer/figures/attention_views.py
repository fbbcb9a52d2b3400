"""Attention you can read and click: BertViz-style line view, a clickable heatmap (Altair/Vega-Lite, whose
selections Streamlit reports), and the query-key "neuron view" (plotly).

Selections are named so a page can pass `selection_mode=[...]` and react to clicks only (hover selections
stay in the browser and never rerun the script).
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from explorer.figures.base import MASK_COLOR, PALETTE, SELECT_COLOR, layout, safe

LINE_MIN_WEIGHT = 0.05   # fainter lines only blur the picture (and cost bytes); hover shows a token's lines
ROW_PX = 15              # vertical space per token in the line view: readable, 128 tokens in ~1.9k px
PICK_QUERY = "pick_query"  # selection names the pages listen to
PICK_CELL = "pick_cell"


def line_view(patterns: np.ndarray, labels: list[str], heads: list[int], position: int | None = None) -> alt.Chart:
    """BertViz's head view. patterns (nh, T, T) of one layer; heads: which heads to draw (each its own colour).
    Left column = the token reading (query), right column = the tokens it reads (keys); a line's opacity is the
    weight. Hovering a token keeps only its lines; clicking a left token selects that query (PICK_QUERY)."""
    patterns = np.asarray(patterns, dtype=np.float32)
    T = patterns.shape[-1]
    frames = []
    for h in heads:
        q, k = np.nonzero(np.tril(patterns[h]) >= LINE_MIN_WEIGHT)
        frames.append(pd.DataFrame({"head": f"head {h}", "query": q, "key": k,
                                    "weight": np.round(patterns[h][q, k], 3)}))
    # int32: Arrow's int64 arrives in the browser as BigInt, which Vega's selection tests do not match
    lines = pd.concat(frames, ignore_index=True).astype({"query": "int32", "key": "int32"})
    lines["x"], lines["x2"] = 0.0, 1.0
    text = list(labels)   # Vega draws text as text: no escaping
    # one hover selection over both token columns: "tok" is p for a query on the left, -(p + 1) for a key on the
    # right. (Two selections, one per column, do not work: Vega-Lite's point selection also fires on the other
    # column's marks, storing an undefined value that hides every line.)
    left = pd.DataFrame({"query": np.arange(T, dtype=np.int32), "tok": np.arange(T, dtype=np.int32), "token": text,
                         "x": 0.0, "chosen": [j == position for j in range(T)]})
    right = pd.DataFrame({"key": np.arange(T, dtype=np.int32), "tok": -np.arange(1, T + 1, dtype=np.int32),
                          "token": text, "x": 1.0})
    hover = alt.selection_point(name="hover_token", on="pointerover", clear="pointerout", fields=["tok"])
    pick = alt.selection_point(name=PICK_QUERY, on="click", fields=["query"], empty=False)
    shown = ("!hover_token.tok || !isValid(hover_token.tok[0]) || hover_token.tok[0] == datum.query"
             " || hover_token.tok[0] == -(datum.key + 1)")
    y_scale = alt.Scale(domain=[-0.5, T - 0.5], reverse=True, nice=False)  # position 0 on top
    x_scale = alt.Scale(domain=[-0.45, 1.45], nice=False)
    colors = alt.Scale(domain=[f"head {h}" for h in heads], range=[PALETTE[h % len(PALETTE)] for h in heads])
    rules = alt.Chart(lines).mark_rule(strokeWidth=1.5).encode(
        x=alt.X("x:Q", scale=x_scale, axis=None), x2="x2:Q",
        y=alt.Y("query:Q", scale=y_scale, axis=None), y2="key:Q",
        color=alt.Color("head:N", scale=colors, legend=alt.Legend(title=None, orient="top") if len(heads) > 1 else None),
        opacity=alt.condition(shown, alt.Opacity("weight:Q", scale=alt.Scale(domain=[0, 1], range=[0, 0.9]),
                                                 legend=None), alt.value(0.0)),
        tooltip=["head:N", "query:Q", "key:Q", alt.Tooltip("weight:Q", format=".3f")])
    left_text = alt.Chart(left).mark_text(align="right", dx=-6, fontSize=12, font="monospace").encode(
        x=alt.X("x:Q", scale=x_scale), y=alt.Y("query:Q", scale=y_scale), text="token:N",
        color=alt.condition("datum.chosen", alt.value(SELECT_COLOR), alt.value("#222222")))
    right_text = alt.Chart(right).mark_text(align="left", dx=6, fontSize=12, font="monospace").encode(
        x=alt.X("x:Q", scale=x_scale), y=alt.Y("key:Q", scale=y_scale), text="token:N")
    # one invisible target per token of both columns carries the selections (a param lives in one view)
    targets = pd.concat([left.assign(y=left["query"], x0=-0.3, x1=0.0, side="query (reads)"),
                         right.assign(y=right["key"], x0=1.0, x1=1.3, query=-1, side="key (is read)")],
                        ignore_index=True)
    targets["y0"], targets["y1"] = targets["y"] - 0.5, targets["y"] + 0.5
    hits = alt.Chart(targets[["x0", "x1", "y0", "y1", "y", "tok", "query", "token", "side"]]).mark_rect(
        opacity=0.001).encode(
        x=alt.X("x0:Q", scale=x_scale), x2="x1:Q", y=alt.Y("y0:Q", scale=y_scale), y2="y1:Q",
        tooltip=[alt.Tooltip("side:N", title="as"), alt.Tooltip("y:Q", title="position"), "token:N"]
    ).add_params(hover, pick)
    return alt.layer(rules, left_text, right_text, hits).properties(
        width=420, height=max(160, ROW_PX * T)).configure_view(stroke=None)


def clickable_heatmap(pattern: np.ndarray, labels: list[str], position: int | None = None,
                      title: str = "") -> alt.Chart:
    """One head's (T, T) pattern as cells sized to the content (6-22 px), every token's text on hover, a label on
    every k-th token, the colour legend no taller than the map; a click reports its query and key (PICK_CELL).
    The selected query row gets an orange outline."""
    pattern = np.asarray(pattern, dtype=np.float32)
    T = pattern.shape[0]
    q, k = np.tril_indices(T)
    names = [f"{j}:{t}" for j, t in enumerate(labels)]   # Vega draws text as text: no escaping
    cells = pd.DataFrame({"query": q, "key": k, "weight": np.round(pattern[q, k], 4),
                          "query_token": [names[i] for i in q], "key_token": [names[i] for i in k]})
    cell = int(min(22, max(6, 480 // max(T, 1))))  # 64 tokens: 7 px cells, a 448 px map above the fold
    size = cell * T
    every = max(1, int(np.ceil(14 / cell)))  # a label every `every` tokens keeps 14 px between labels
    shown = list(range(0, T, every))
    label_expr = "{" + ",".join(f"'{j}':'{names[j].replace(chr(92), chr(92) * 2).replace(chr(39), chr(92) + chr(39))}'"
                                for j in shown) + "}[datum.value] || ''"
    axis = dict(values=shown, labelExpr=label_expr, labelFontSize=11, labelFont="monospace", ticks=False, domain=False)
    pick = alt.selection_point(name=PICK_CELL, on="click", fields=["query", "key"], empty=False)
    base = alt.Chart(cells).encode(
        x=alt.X("key:O", scale=alt.Scale(domain=list(range(T))),
                axis=alt.Axis(title="key (attended to)", orient="top", labelAngle=-90, **axis)),
        y=alt.Y("query:O", scale=alt.Scale(domain=list(range(T))),
                axis=alt.Axis(title="query (predicting from)", **axis)))
    rects = base.mark_rect().encode(
        color=alt.Color("weight:Q", scale=alt.Scale(domain=[0, 1], range=["#f7fbff", "#08306b"]),  # white at 0
                        legend=alt.Legend(title="weight", gradientLength=max(60, min(size - 20, 200)),
                                          orient="right")),
        tooltip=[alt.Tooltip("query_token:N", title="query"), alt.Tooltip("key_token:N", title="key"),
                 alt.Tooltip("weight:Q", format=".3f")]).add_params(pick)
    layers = [rects]
    if position is not None and 0 <= position < T:
        row = pd.DataFrame({"query": [position], "k0": [0], "k1": [position]})
        layers.append(alt.Chart(row).mark_rect(fill=None, stroke=SELECT_COLOR, strokeWidth=2).encode(
            x=alt.X("k0:O", scale=alt.Scale(domain=list(range(T)))), x2=alt.X2("k1:O"),
            y=alt.Y("query:O", scale=alt.Scale(domain=list(range(T))))))
    chart = alt.layer(*layers).properties(width=size, height=size, **({"title": title} if title else {}))
    return chart.configure_view(fill=MASK_COLOR, stroke=None)


def query_key_figure(head, labels: list[str], key: int) -> go.Figure:
    """BertViz's neuron view for one query and one key of a head (a gpt.interp.forward.HeadStep): q and k per
    channel, their elementwise product as bars (the sum of the bars is q·k), and the resulting score and weight."""
    q = np.asarray(head.q, dtype=np.float32)
    k = np.asarray(head.keys[key], dtype=np.float32)
    prod = q * k
    hs = len(q)
    channels = list(range(hs))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=channels, y=q, mode="markers", name="q", marker=dict(color=PALETTE[0], size=6),
                             hovertemplate="channel %{x}: q = %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=channels, y=k, mode="markers", name="k", marker=dict(color=PALETTE[2], size=6,
                                                                                    symbol="diamond"),
                             hovertemplate="channel %{x}: k = %{y:.3f}<extra></extra>"))
    fig.add_trace(go.Bar(x=channels, y=prod, name="q × k", marker_color=["#2166ac" if v >= 0 else "#b2182b"
                                                                           for v in prod],
                         hovertemplate="channel %{x}: q×k = %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title_text=f"head channel (0..{hs - 1})")
    fig.update_yaxes(title_text="value")
    fig = layout(fig, "", height=280)
    fig.update_layout(margin=dict(l=50, r=10, t=10, b=40), legend=dict(orientation="h", y=1.1, x=0),
                      barmode="overlay")
    return fig


def softmax_row_figure(head, labels: list[str], key: int) -> go.Figure:
    """Where one score lands: the query's whole attention row (weights over the visible keys) with `key` in orange."""
    weights = np.asarray(head.weights, dtype=np.float32)
    names = [f"{j}:{safe(labels[j])}" for j in range(len(weights))]
    fig = go.Figure(go.Bar(x=names, y=weights, marker_color=[SELECT_COLOR if j == key else PALETTE[0]
                                                             for j in range(len(weights))],
                           customdata=np.asarray(head.scores, dtype=np.float32),
                           hovertemplate="%{x}: score %{customdata:.3f} → weight %{y:.3f}<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-90 if len(names) > 16 else 0, tickfont=dict(size=10))
    fig.update_yaxes(title_text="weight", range=[0, 1])
    fig = layout(fig, "", height=240)
    fig.update_layout(margin=dict(l=50, r=10, t=10, b=10))
    return fig
