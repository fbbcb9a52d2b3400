"""Attention you can read and click: BertViz-style line view, a clickable heatmap (Vega-Lite, whose selections
Streamlit reports), and the query-key "neuron view" (plotly).

The two Vega-Lite builders return the spec a page hands to `st.vega_lite_chart`, written as plain dicts with their
rows as DataFrames under spec["datasets"] (Streamlit ships those as Arrow). Built through Altair they cost a third
of the Attention page's server time per click (schema objects made, validated and copied); the specs are checked
against Vega-Lite's schema in tests/test_figures_inside.py instead. Selections are named so a page can pass
`selection_mode=[...]` and react to clicks only (hover selections stay in the browser and never rerun the script).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from explorer.figures.base import MASK_COLOR, PALETTE, SELECT_COLOR, layout, safe

LINE_MIN_WEIGHT = 0.05   # fainter lines only blur the picture (and cost bytes); hover shows a token's lines
ROW_PX = 15              # vertical space per token in the line view: readable, 128 tokens in ~1.9k px
PICK_QUERY = "pick_query"  # selection names the pages listen to
PICK_CELL = "pick_cell"


def _named(frames: dict, data: pd.DataFrame) -> dict:
    """Put `data` in `frames` under a name made from its content (a stable name keeps the chart's identity, and so
    its selection, across reruns) and return the layer's reference to it."""
    digest = hashlib.sha1(",".join(map(str, data.columns)).encode())
    digest.update(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
    name = f"data-{digest.hexdigest()[:20]}"
    frames[name] = data
    return {"name": name}


def _field(name: str, kind: str, **kw) -> dict:
    return {"field": name, "type": kind, **kw}


def line_view(patterns: np.ndarray, labels: list[str], heads: list[int], position: int | None = None) -> dict:
    """BertViz's head view. patterns (nh, T, T) of one layer; heads: which heads to draw (each its own colour).
    Left column = the token reading (query), right column = the tokens it reads (keys); a line's opacity is the
    weight. Hovering a token keeps only its lines; clicking a left token selects that query (PICK_QUERY)."""
    patterns = np.asarray(patterns, dtype=np.float32)
    T = patterns.shape[-1]
    frames_of_heads = []
    for h in heads:
        q, k = np.nonzero(np.tril(patterns[h]) >= LINE_MIN_WEIGHT)
        frames_of_heads.append(pd.DataFrame({"head": f"head {h}", "query": q, "key": k,
                                             "weight": np.round(patterns[h][q, k], 3)}))
    # int32: Arrow's int64 arrives in the browser as BigInt, which Vega's selection tests do not match
    lines = pd.concat(frames_of_heads, ignore_index=True).astype({"query": "int32", "key": "int32"})
    lines["x"], lines["x2"] = 0.0, 1.0
    text = list(labels)   # Vega draws text as text: no escaping
    # one hover selection over both token columns: "tok" is p for a query on the left, -(p + 1) for a key on the
    # right. (Two selections, one per column, do not work: Vega-Lite's point selection also fires on the other
    # column's marks, storing an undefined value that hides every line.)
    left = pd.DataFrame({"query": np.arange(T, dtype=np.int32), "tok": np.arange(T, dtype=np.int32), "token": text,
                         "x": 0.0, "chosen": [j == position for j in range(T)]})
    right = pd.DataFrame({"key": np.arange(T, dtype=np.int32), "tok": -np.arange(1, T + 1, dtype=np.int32),
                          "token": text, "x": 1.0})
    # one invisible target per token of both columns carries the selections (a param lives in one view)
    targets = pd.concat([left.assign(y=left["query"], x0=-0.3, x1=0.0, side="query (reads)"),
                         right.assign(y=right["key"], x0=1.0, x1=1.3, query=-1, side="key (is read)")],
                        ignore_index=True)
    targets["y0"], targets["y1"] = targets["y"] - 0.5, targets["y"] + 0.5
    targets = targets[["x0", "x1", "y0", "y1", "y", "tok", "query", "token", "side"]]
    shown = ("!hover_token.tok || !isValid(hover_token.tok[0]) || hover_token.tok[0] == datum.query"
             " || hover_token.tok[0] == -(datum.key + 1)")
    y_scale = {"domain": [-0.5, T - 0.5], "nice": False, "reverse": True}   # position 0 on top
    x_scale = {"domain": [-0.45, 1.45], "nice": False}
    colors = {"domain": [f"head {h}" for h in heads], "range": [PALETTE[h % len(PALETTE)] for h in heads]}
    frames: dict = {}
    rules = {"data": _named(frames, lines), "mark": {"type": "rule", "strokeWidth": 1.5}, "encoding": {
        "x": _field("x", "quantitative", scale=x_scale, axis=None), "x2": {"field": "x2"},
        "y": _field("query", "quantitative", scale=y_scale, axis=None), "y2": {"field": "key"},
        "color": _field("head", "nominal", scale=colors,
                        legend={"title": None, "orient": "top"} if len(heads) > 1 else None),
        "opacity": {"condition": {"test": shown, **_field("weight", "quantitative", legend=None,
                                                          scale={"domain": [0, 1], "range": [0, 0.9]})},
                    "value": 0.0},
        "tooltip": [_field("head", "nominal"), _field("query", "quantitative"), _field("key", "quantitative"),
                    _field("weight", "quantitative", format=".3f")]}}
    left_text = {"data": _named(frames, left),
                 "mark": {"type": "text", "align": "right", "dx": -6, "fontSize": 12, "font": "monospace"},
                 "encoding": {"x": _field("x", "quantitative", scale=x_scale),
                              "y": _field("query", "quantitative", scale=y_scale), "text": _field("token", "nominal"),
                              "color": {"condition": {"test": "datum.chosen", "value": SELECT_COLOR},
                                        "value": "#222222"}}}
    right_text = {"data": _named(frames, right),
                  "mark": {"type": "text", "align": "left", "dx": 6, "fontSize": 12, "font": "monospace"},
                  "encoding": {"x": _field("x", "quantitative", scale=x_scale),
                               "y": _field("key", "quantitative", scale=y_scale), "text": _field("token", "nominal")}}
    hits = {"name": "token_targets", "data": _named(frames, targets), "mark": {"type": "rect", "opacity": 0.001},
            "encoding": {"x": _field("x0", "quantitative", scale=x_scale), "x2": {"field": "x1"},
                         "y": _field("y0", "quantitative", scale=y_scale), "y2": {"field": "y1"},
                         "tooltip": [_field("side", "nominal", title="as"),
                                     _field("y", "quantitative", title="position"), _field("token", "nominal")]}}
    params = [{"name": "hover_token", "views": ["token_targets"],
               "select": {"type": "point", "on": "pointerover", "clear": "pointerout", "fields": ["tok"]}},
              {"name": PICK_QUERY, "views": ["token_targets"],
               "select": {"type": "point", "on": "click", "fields": ["query"]}}]
    return {"layer": [rules, left_text, right_text, hits], "params": params, "width": 420,
            "height": max(160, ROW_PX * T), "config": {"view": {"stroke": None}}, "datasets": frames}


def clickable_heatmap(pattern: np.ndarray, labels: list[str], position: int | None = None, title: str = "") -> dict:
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
    positions = {"domain": list(range(T))}
    frames: dict = {}
    rects = {"name": "cells", "data": _named(frames, cells), "mark": {"type": "rect"}, "encoding": {
        "x": _field("key", "ordinal", scale=positions,
                    axis={"title": "key (attended to)", "orient": "top", "labelAngle": -90, **axis}),
        "y": _field("query", "ordinal", scale=positions, axis={"title": "query (predicting from)", **axis}),
        "color": _field("weight", "quantitative", scale={"domain": [0, 1], "range": ["#f7fbff", "#08306b"]},  # white at 0
                        legend={"title": "weight", "gradientLength": max(60, min(size - 20, 200)), "orient": "right"}),
        "tooltip": [_field("query_token", "nominal", title="query"), _field("key_token", "nominal", title="key"),
                    _field("weight", "quantitative", format=".3f")]}}
    layers = [rects]
    if position is not None and 0 <= position < T:
        row = pd.DataFrame({"query": [position], "k0": [0], "k1": [position]})
        layers.append({"data": _named(frames, row), "mark": {"type": "rect", "fill": None, "stroke": SELECT_COLOR,
                                                             "strokeWidth": 2},
                       "encoding": {"x": _field("k0", "ordinal", scale=positions), "x2": {"field": "k1"},
                                    "y": _field("query", "ordinal", scale=positions)}})
    params = [{"name": PICK_CELL, "views": ["cells"], "select": {"type": "point", "on": "click", "fields": ["query", "key"]}}]
    return {"layer": layers, "params": params, "width": size, "height": size, **({"title": title} if title else {}),
            "config": {"view": {"fill": MASK_COLOR, "stroke": None}}, "datasets": frames}


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
