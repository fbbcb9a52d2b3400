"""Circuits: attribution graphs of one prediction, built from a run's per-layer transcoders or its cross-layer
transcoder (gpt.interp.features).

    replacement  the local replacement model: transcoders + error vectors for MLPs, norms and attention frozen
    graph        attribution_graph(), AttributionGraph (nodes, adjacency, prune, scores, JSON export)
    export       the graph as circuit-tracer's graph JSON (its viewer opens it): AttributionGraph.to_json(schema=...)
    intervene    set features in the replacement model and in the real one, and see the next token change
"""
from gpt.interp.circuits.graph import AttributionGraph, Node, attribution_graph
from gpt.interp.circuits.intervene import intervene
from gpt.interp.circuits.replacement import CircuitError, load_crosslayer_transcoder, load_transcoders

__all__ = ["AttributionGraph", "CircuitError", "Node", "attribution_graph", "intervene", "load_crosslayer_transcoder",
           "load_transcoders"]
