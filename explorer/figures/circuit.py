"""The Circuit page's figure: a pruned attribution graph with layers as rows and token positions as columns.

`circuit_view` turns a (pruned) AttributionGraph plus the learner's supernodes and hidden nodes into what is drawn
(nodes and summed edges); `circuit_figure` draws it. Both are pure: no Streamlit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import plotly.graph_objects as go

from explorer.figures.base import layout, safe

KIND_STYLE = {  # marker symbol, colour, what the legend calls it
    "feature": ("circle", "#4c78a8", "transcoder feature"),
    "error": ("diamond", "#9d9d9d", "error (what the transcoder misses)"),
    "embedding": ("square", "#54a24b", "token embedding"),
    "logit": ("triangle-up", "#f58518", "next-token logit"),
    "supernode": ("star", "#b279a2", "supernode (your group)"),
}
POSITIVE, NEGATIVE = "#2166ac", "#b2182b"
MAX_EDGES = 400  # the strongest edges drawn; more turn the picture into a blur
COLUMN_PER_NODE = 0.3  # column width per node of a position's busiest cell (a quiet position is 1 wide)
MAX_COLUMN = 10.0       # ... up to this, so the quiet positions' labels keep room
MAX_TAGS = 12           # the most influential labelled features numbered on the figure (every label is in the hover)
WEAK_COLOUR = "#9a9a9a"


@dataclass
class ViewNode:
    key: str
    kind: str
    layer: int          # -1 embeddings, n_layer logits
    position: float
    influence: float
    label: str          # one line for the hover and the pickers
    members: tuple[str, ...] = ()
    tag: str = ""       # a feature's label (gpt.interp.features.labels): numbered on the figure when influential
    weak: bool = False  # ... whose held-out score is low: drawn grey


def node_label(node, token: str, feature_label: str = "") -> str:
    """One line naming a node; a feature's label (plain text, quotes for code spans) follows after a colon."""
    if node.kind == "feature":
        return (f"L{node.layer} #{node.index} at {node.position} '{token}' (act {node.activation:.2f})"
                + (f": {feature_label}" if feature_label else ""))
    if node.kind == "error":
        return f"L{node.layer} error at {node.position} '{token}' (size {node.activation:.2f})"
    if node.kind == "embedding":
        return f"embedding of '{token}' at {node.position}"
    return f"logit '{token}' (value {node.activation:.2f})"


def tagged_nodes(nodes: list[ViewNode], top: int = MAX_TAGS) -> list[int]:
    """The indices of the `top` most influential labelled feature nodes, most influential first (numbered 1.. on
    the figure)."""
    return sorted((i for i, n in enumerate(nodes) if n.kind == "feature" and n.tag),
                  key=lambda i: -nodes[i].influence)[:top]


def circuit_view(graph, labels: dict[str, str], groups: dict[str, list[str]] | None = None,
                 hidden: set[str] | None = None, tags: dict[str, tuple[str, bool]] | None = None
                 ) -> tuple[list[ViewNode], list[tuple[int, int, float]]]:
    """The nodes to draw and the edges between them [(source, target, weight)]: each group (label -> member keys)
    becomes one supernode whose edges are the sums of its members' edges; hidden keys are left out. tags: node key
    -> (feature label, weak) written beside the most influential features."""
    hidden = hidden or set()
    tags = tags or {}
    owner = {}
    for label, members in (groups or {}).items():
        for key in members:
            owner.setdefault(key, label)
    nodes: list[ViewNode] = []
    index_of: dict[str, int] = {}   # display key -> index in nodes
    display_of: list[int | None] = []
    influence = graph.influence.tolist() if graph.influence is not None else [0.0] * len(graph.nodes)
    probs = dict(zip(graph.logit_ids, graph.logit_probs.tolist()))
    for i, n in enumerate(graph.nodes):  # logits are where influence is measured: size them by probability
        if n.kind == "logit":
            influence[i] = probs[n.index]
    for i, n in enumerate(graph.nodes):
        key = n.key
        if key in hidden:
            display_of.append(None)
            continue
        label = owner.get(key)
        if label is not None:
            dkey = f"group:{label}"
            if dkey not in index_of:
                index_of[dkey] = len(nodes)
                nodes.append(ViewNode(dkey, "supernode", n.layer, n.position, 0.0, label, ()))
            sn = nodes[index_of[dkey]]
            count = len(sn.members)
            sn.position = (sn.position * count + n.position) / (count + 1)
            sn.layer = max(sn.layer, n.layer)
            sn.influence += influence[i]
            sn.members = sn.members + (key,)
            display_of.append(index_of[dkey])
            continue
        index_of[key] = len(nodes)
        tag, weak = tags.get(key, ("", False))
        nodes.append(ViewNode(key, n.kind, n.layer, float(n.position), influence[i], labels.get(key, key), (), tag,
                              weak))
        display_of.append(index_of[key])
    summed: dict[tuple[int, int], float] = {}
    target, source = graph.adjacency.nonzero(as_tuple=True)
    weights = graph.adjacency[target, source].tolist()
    for t, s, w in zip(target.tolist(), source.tolist(), weights):
        dt, ds = display_of[t], display_of[s]
        if dt is None or ds is None or dt == ds:
            continue
        summed[(ds, dt)] = summed.get((ds, dt), 0.0) + w
    return nodes, [(s, t, w) for (s, t), w in summed.items() if w != 0]


def _row(node: ViewNode, n_layer: int) -> float:
    if node.kind == "embedding":
        return 0
    if node.kind == "logit":
        return n_layer + 1
    return node.layer + 1


def circuit_figure(nodes: list[ViewNode], edges: list[tuple[int, int, float]], tokens: list[str], n_layer: int,
                   selected: str | None = None, max_edges: int = MAX_EDGES) -> go.Figure:
    """Rows: embeddings (bottom), layers 0..L-1, logits (top). Columns: positions. Node size ~ sqrt(influence);
    edge width ~ |weight|, blue where the source raises its target, red where it lowers it."""
    # each position gets a column as wide as its busiest cell needs, so a position with forty active features
    # spreads them out while a quiet one stays narrow; nodes in a cell sit side by side, strongest first
    cells: dict[tuple[float, int], list[int]] = {}
    for i, n in enumerate(nodes):
        cells.setdefault((_row(n, n_layer), round(n.position)), []).append(i)
    T = len(tokens)
    widths = [1.0] * T
    for (_, pos), members in cells.items():
        widths[pos] = min(MAX_COLUMN, max(widths[pos], COLUMN_PER_NODE * len(members)))
    starts = [sum(widths[:p]) for p in range(T)]
    centers = [starts[p] + widths[p] / 2 for p in range(T)]
    xy = [(0.0, 0.0)] * len(nodes)
    for (row, pos), members in cells.items():
        members.sort(key=lambda i: -nodes[i].influence)
        step = widths[pos] / len(members)
        for j, i in enumerate(members):
            xy[i] = (starts[pos] + step * (j + 0.5), row)
    fig = go.Figure()
    strongest = sorted(edges, key=lambda e: -abs(e[2]))[:max_edges]
    top = max((abs(w) for _, _, w in strongest), default=1.0) or 1.0
    for sign, colour in ((1, POSITIVE), (-1, NEGATIVE)):
        for lo, hi, width in ((0.5, 1.01, 4.0), (0.2, 0.5, 2.0), (0.0, 0.2, 0.8)):
            xs, ys = [], []
            for s, t, w in strongest:
                if (w > 0) == (sign > 0) and lo <= abs(w) / top < hi:
                    xs += [xy[s][0], xy[t][0], None]
                    ys += [xy[s][1], xy[t][1], None]
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                         line=dict(color=colour, width=width), opacity=0.35 if width < 1 else 0.55))
    peak = max((n.influence for n in nodes), default=1.0) or 1.0
    for kind, (symbol, colour, name) in KIND_STYLE.items():
        idx = [i for i, n in enumerate(nodes) if n.kind == kind]
        if not idx:
            continue
        sizes = [9 + 26 * math.sqrt(max(nodes[i].influence, 0.0) / peak) for i in idx]
        fig.add_trace(go.Scatter(
            x=[xy[i][0] for i in idx], y=[xy[i][1] for i in idx], mode="markers+text" if kind == "supernode"
            else "markers", name=name, customdata=[nodes[i].key for i in idx],
            text=[safe(nodes[i].label) if kind == "supernode" else "" for i in idx], textposition="top center",
            hovertext=[safe(nodes[i].label) + (f"<br>probability {nodes[i].influence:.1%}" if kind == "logit" else
                                               f"<br>influence on the prediction {nodes[i].influence:.3f}")
                       for i in idx], hoverinfo="text",
            marker=dict(symbol=symbol, color=colour, size=sizes,
                        line=dict(width=[3 if nodes[i].key == selected else 0.5 for i in idx],
                                  color=["#000000" if nodes[i].key == selected else "#ffffff" for i in idx]))))
    # the most influential labelled features carry a number; the page lists their labels under that number (the
    # busiest column holds dozens of nodes, too close together for text beside each)
    tagged = tagged_nodes(nodes)
    if tagged:
        fig.add_trace(go.Scatter(
            x=[xy[i][0] for i in tagged], y=[xy[i][1] for i in tagged], mode="text", showlegend=False,
            hoverinfo="skip", cliponaxis=False,   # above and below in turn: neighbours in a busy cell stay apart
            textposition=["top center" if rank % 2 else "bottom center" for rank in range(1, len(tagged) + 1)],
            text=[f"<b>{rank}</b>" for rank, _ in enumerate(tagged, 1)],
            textfont=dict(size=12, color=[WEAK_COLOUR if nodes[i].weak else "#1f2d3d" for i in tagged])))
    # a numeric axis never merges equal labels, so the token alone is enough (its position is in the hover)
    short = max((len(t) for t in tokens), default=1) <= 2
    fig.update_xaxes(tickmode="array", tickvals=centers, ticktext=[safe(t) for t in tokens],
                     tickangle=0 if short else -60, tickfont=dict(size=12 if short else 10),
                     range=[-0.3, sum(widths) + 0.3], showgrid=False, zeroline=False,
                     title=dict(text="token position (the prediction is made after the last one)", font=dict(size=12)))
    fig.update_yaxes(tickmode="array", tickvals=list(range(n_layer + 2)),
                     ticktext=["embeddings"] + [f"block {i} MLP" for i in range(n_layer)] + ["logits"],
                     range=[-0.5, n_layer + 1.6], showgrid=True, gridcolor="#f0f0f0", zeroline=False)
    return layout(fig, "Attribution graph (pruned)", height=170 + 95 * (n_layer + 2),
                  legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0.25), clickmode="event+select",
                  dragmode="pan")
