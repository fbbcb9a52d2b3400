"""An attribution graph as circuit-tracer's graph file: the JSON its viewer (`circuit-tracer start-server`) opens.

The schema is circuit-tracer 0.5's pydantic model (circuit_tracer/frontend/graph_models.py: Model = metadata,
qParams, nodes, links; tests/data/circuit_tracer_graph_schema.json is derived from it). Node ids as it writes them:
features "{layer}_{feature}_{pos}", embeddings "E_{token}_{pos}", logits "{n_layer + 1}_{token}_{pos}", and error
nodes "{layer}_-1_{pos}" (0.5 wrote "0_{layer}_{pos}", which collides with layer-0 features; upstream changed it to
this form after 0.5, and the viewer treats ids as opaque). A feature's `feature` is cantor(layer, index), an
embedding's its position, a logit's the token id, an error's -1. `influence` is circuit-tracer's cumulative share:
the influence on the logits of the node and of every node ranked above it, over the total (the viewer's pruning
slider keeps nodes at or below its value). `clerp` is the label shown beside a node: our feature labels when the
dictionary has some (features/<name>/labels.json), else "<transcoder name> #<index>"; logits get circuit-tracer's
'Output "tok" (p=0.907)', which its viewer parses.

This module imports nothing from graph.py (graph.py imports it): it reads the graph's fields only.
"""
from __future__ import annotations

import re
from typing import Callable

import torch

SCHEMA_VERSION = 1  # circuit-tracer's Metadata.schema_version
FEATURE_TYPES = {"feature": "cross layer transcoder", "error": "mlp reconstruction error", "embedding": "embedding",
                 "logit": "logit"}


def cantor(x: int, y: int) -> int:
    """Cantor's pairing of two non-negative integers (circuit-tracer's `feature` of a feature node)."""
    return (x + y) * (x + y + 1) // 2 + y


def cumulative_share(influence: torch.Tensor) -> torch.Tensor:
    """(N,) each node's share of the total influence carried by it and every node ranked above it (circuit-tracer's
    `influence` in its graph files: the viewer keeps the nodes whose value is at most its pruning threshold)."""
    ordered, order = influence.sort(descending=True)
    share = torch.zeros_like(influence)
    share[order] = ordered.cumsum(0) / ordered.sum().clamp(min=1e-30)
    return share


def display_token(text: str) -> str:
    """circuit-tracer's process_token: newline, tab and carriage return as visible marks."""
    return text.replace("\n", "⏎").replace("\t", "→").replace("\r", "↵")


def node_id(node, n_layer: int) -> str:
    """circuit-tracer's node id of one of our nodes (see the module docstring)."""
    if node.kind == "feature":
        return f"{node.layer}_{node.index}_{node.position}"
    if node.kind == "error":
        return f"{node.layer}_-1_{node.position}"
    if node.kind == "embedding":
        return f"E_{node.index}_{node.position}"
    return f"{n_layer + 1}_{node.index}_{node.position}"


def file_slug(text: str) -> str:
    """A graph's name as circuit-tracer's viewer uses it: its file name and its metadata.slug."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "graph"


def circuit_tracer_json(graph, decode: Callable[[list[int]], str] | None = None, labels: dict[str, str] | None = None,
                        metadata: dict | None = None, feature_labels: list[dict[int, str]] | None = None,
                        pinned: list[str] | None = None, supernodes: dict[str, list[str]] | None = None,
                        slug: str | None = None, scan: str | None = None) -> dict:
    """The graph as a dict that validates against circuit-tracer's graph schema and opens in its viewer.

    labels: {our node key: clerp} (wins over the rest); feature_labels: per layer {feature index: label} (e.g.
    gpt.interp.features.export.feature_names(transcoders)); pinned: our node keys to pin; supernodes: {name: our node
    keys} (the Circuit page's groups); slug: the file's name in the viewer; scan: its scan name (default
    "custom-<first transcoder>", with the per-layer transcoder names in transcoder_list, as circuit-tracer writes a
    graph of its own transcoders)."""
    decode = decode or (lambda ids: " ".join(map(str, ids)))
    L = graph.n_layer
    probs = dict(zip(graph.logit_ids, graph.logit_probs.tolist()))
    share = graph.influence_share if graph.influence_share is not None else cumulative_share(graph.node_influence())
    names = graph.transcoders or [f"transcoder-L{layer}" for layer in range(L)]
    ids = {n.key: node_id(n, L) for n in graph.nodes}
    nodes = []
    for i, n in enumerate(graph.nodes):
        nid = ids[n.key]
        node = {"node_id": nid, "feature": -1, "layer": str(n.layer), "ctx_idx": n.position,
                "feature_type": FEATURE_TYPES[n.kind], "token_prob": 0.0, "is_target_logit": False, "run_idx": 0,
                "reverse_ctx_idx": 0, "jsNodeId": nid, "clerp": "", "influence": float(share[i]), "activation": None}
        if n.kind == "feature":
            own = (feature_labels[n.layer] if feature_labels and n.layer < len(feature_labels) else {}).get(n.index)
            node.update(feature=cantor(n.layer, n.index), jsNodeId=f"{n.layer}_{n.index}-0", activation=n.activation,
                        clerp=own or f"{names[n.layer] if n.layer < len(names) else f'L{n.layer}'} #{n.index}")
        elif n.kind == "error":
            node["jsNodeId"] = f"{n.layer}_{n.position}-0"
        elif n.kind == "embedding":
            node.update(feature=n.position, layer="E", jsNodeId=f"E_{n.index}-{n.position}")
        else:
            p = probs.get(n.index, 0.0)
            node.update(feature=n.index, layer=str(L + 1), token_prob=p, is_target_logit=n.index == graph.logit_ids[0],
                        jsNodeId=f"L_{n.index}-{n.position}", influence=None,
                        clerp=f'Output "{display_token(decode([n.index]))}" (p={p:.3f})')
        if labels and labels.get(n.key):
            node["clerp"] = labels[n.key]
        nodes.append(node)
    target, source = graph.adjacency.nonzero(as_tuple=True)
    links = [{"source": ids[graph.nodes[s].key], "target": ids[graph.nodes[t].key], "weight": float(graph.adjacency[t, s])}
             for t, s in zip(target.tolist(), source.tolist())]
    meta = {"slug": file_slug(slug or f"gpt-explorer-{len(graph.tokens)}-tokens"),
            "scan": scan or f"custom-{names[0] if names else 'gpt-explorer'}",
            "transcoder_list": list(names), "prompt_tokens": [decode([t]) for t in graph.tokens],
            "prompt": decode(graph.tokens), "node_threshold": graph.thresholds[0] if graph.thresholds else None,
            "schema_version": SCHEMA_VERSION,
            "gpt_explorer": {"format": "gpt-explorer attribution graph as circuit-tracer's graph JSON",
                             "conventions": dict(graph.conventions), "token_ids": list(graph.tokens),
                             "edge_threshold": graph.thresholds[1] if graph.thresholds else None,
                             "replacement_score": graph.replacement_score(),
                             "completeness_score": graph.completeness_score(), **(metadata or {})}}
    q_params = {"pinnedIds": [ids[k] for k in (pinned or []) if k in ids],
                "supernodes": [[name, *[ids[k] for k in keys if k in ids]] for name, keys in (supernodes or {}).items()],
                "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": meta, "qParams": q_params, "nodes": nodes, "links": links}


def graph_metadata(graph_json: dict) -> dict:
    """The entry of circuit-tracer's graph-metadata.json for one graph file (its viewer lists graphs from that
    file): {"graphs": [graph_metadata(g), ...]} beside the {slug}.json files."""
    keys = ("slug", "scan", "transcoder_list", "prompt_tokens", "prompt", "node_threshold", "schema_version")
    return {k: graph_json["metadata"][k] for k in keys}
