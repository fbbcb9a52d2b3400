"""Attribution graphs: the direct linear effects between the nodes of one prompt's replacement model.

Nodes (in this order, as circuit-tracer lays them out): the active transcoder features (by layer, position,
feature; a cross-layer transcoder's feature belongs to its encoder's layer), one error node per layer and
position, one embedding node per position, and logit nodes for the most likely next tokens.
`adjacency[target, source]` is the direct effect of source on target's input: for a feature its pre-activation
`x @ W_enc + b_enc`, for a logit the logit before any soft cap. Sources are leaves with a vector they write: a
feature writes activation * W_dec[feature], an error node its error vector, an embedding node the token
(+ position) embedding. So edge = (vector written) . (gradient of the target's input with respect to the
residual slot it is written into) through the frozen attention layers only: the direct path, no other node in
between; a cross-layer transcoder's feature of layer i writes activation * W_dec_i[feature, j - i] into every MLP
output j >= i, and its edge is the sum of those direct paths. Each target's input = sum of its incoming edges +
`bias[target]` (the biases of norms, attention, transcoder decoders and encoders, carried along the same paths);
tests check both sides.

Influence and pruning follow the paper (and circuit-tracer): normalise |adjacency| so each target's incoming
weights sum to 1, weight the logit nodes by their probabilities, and sum over paths of every length
(w A + w A^2 + ...) to get each node's indirect influence on the logits.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

import torch

from gpt.interp.capture import check_ids
from gpt.interp.circuits.export import circuit_tracer_json, cumulative_share
from gpt.interp.circuits.replacement import (
    CircuitError,
    FrozenPrompt,
    check_transcoders,
    freeze,
    frozen_attention_backward,
    frozen_attention_backward_from,
    frozen_norm_backward,
    replacement_forward,
    skip_backward,
)
from gpt.model import GPT
from gpt.token_display import display_text, display_token

KINDS = ("feature", "error", "embedding", "logit")


class Node(NamedTuple):
    kind: str          # feature | error | embedding | logit
    layer: int         # the transcoder layer; -1 for embeddings, n_layer for logits
    position: int      # token position in the prompt
    index: int         # feature index, or the token id (embedding, logit); -1 for errors
    activation: float  # feature activation; error vector's norm; embedding vector's norm; logit value

    @property
    def key(self) -> str:
        """A stable name, circuit-tracer style: "{layer}_{feature}_{pos}", "{layer}_err_{pos}", "E_{token}_{pos}",
        "L_{token}_{pos}"."""
        if self.kind == "feature":
            return f"{self.layer}_{self.index}_{self.position}"
        if self.kind == "error":
            return f"{self.layer}_err_{self.position}"
        return f"{'E' if self.kind == 'embedding' else 'L'}_{self.index}_{self.position}"


@dataclass
class AttributionGraph:
    tokens: list[int]               # the prompt's ids (its last token is where the prediction is made)
    nodes: list[Node]
    adjacency: torch.Tensor         # (N, N) [target, source]
    logit_ids: list[int]
    logit_probs: torch.Tensor       # (n_logits,) the model's probabilities of those tokens
    bias: torch.Tensor              # (N,) the constant part of each target's input (0 for leaves)
    target_input: torch.Tensor      # (N,) the model's actual pre-activation / logit (0 for leaves)
    n_layer: int
    influence: torch.Tensor | None = None      # (N,) set by prune(): indirect influence on the logits
    original_index: list[int] | None = None    # after prune(): each node's index in the full graph
    thresholds: tuple[float, float] | None = None
    transcoders: list[str] = field(default_factory=list)
    conventions: dict = field(default_factory=dict)  # {"demean_unembedding": bool, "token_embeddings_only": bool}
    influence_share: torch.Tensor | None = None  # (N,) after prune(): circuit-tracer's cumulative share at each rank
    _influence_cache: torch.Tensor | None = field(default=None, repr=False)

    # ---- node groups ----
    def kind_mask(self, kind: str) -> torch.Tensor:
        return torch.tensor([n.kind == kind for n in self.nodes], dtype=torch.bool)

    def logit_weights(self) -> torch.Tensor:
        """(N,) the logit nodes' probabilities, 0 elsewhere: what influence is measured against."""
        w = torch.zeros(len(self.nodes), dtype=self.adjacency.dtype)
        probs = dict(zip(self.logit_ids, self.logit_probs.tolist()))
        for i, n in enumerate(self.nodes):
            if n.kind == "logit":
                w[i] = probs[n.index]
        return w

    def node_influence(self) -> torch.Tensor:
        """(N,) each node's influence on the logits through paths of every length (normalised |edges|). Computed
        once per graph (the page prunes the same graph at many thresholds)."""
        if self._influence_cache is None:
            self._influence_cache = _influence(self.adjacency.abs(), self.logit_weights())
        return self._influence_cache

    # ---- pruning and scores ----
    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> AttributionGraph:
        """Keep the nodes that carry node_threshold of the total influence on the logits (embeddings and logits
        always), then the edges that carry edge_threshold of the influence among those, then drop nodes left
        without an outgoing edge (or, for features, an incoming one). Returns the subgraph, its dropped edges zero,
        with `influence` (of the full graph) and `original_index` set."""
        for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
            if not 0.0 <= value <= 1.0:
                raise CircuitError(f"{name} must be between 0 and 1 (got {value})")
        influence = self.node_influence()
        always = self.kind_mask("embedding") | self.kind_mask("logit")
        # everything below lives on the nodes that pass the node threshold: dropped nodes' rows and columns are
        # zero in the paper's pruned matrix, so the submatrix gives the same scores at a fraction of the cost
        keep = ((influence >= _threshold(influence, node_threshold)) | always).nonzero().flatten()
        sub = self.adjacency[keep][:, keep]
        weights = self.logit_weights()[keep]
        is_feature = self.kind_mask("feature")[keep]
        inner = is_feature | self.kind_mask("error")[keep]
        normalised = normalise_rows(sub)
        edge_scores = normalised * (_influence(sub.abs(), weights) + weights)[:, None]
        edge_mask = edge_scores >= _threshold(edge_scores[edge_scores > 0], edge_threshold)
        node_mask = torch.ones(len(keep), dtype=torch.bool)
        while True:  # dropping a node can leave others without edges: repeat until nothing changes (<= L+2 times)
            before = node_mask.clone()
            node_mask[inner] &= edge_mask[:, inner].any(0)         # it must feed something kept
            node_mask[is_feature] &= edge_mask[is_feature].any(1)  # a feature must be fed by something kept
            edge_mask &= node_mask[:, None] & node_mask[None, :]
            if torch.equal(before, node_mask):
                break
        final = node_mask.nonzero().flatten()
        kept = keep[final]
        share = cumulative_share(influence)
        base = self.original_index or list(range(len(self.nodes)))
        return replace(self, nodes=[self.nodes[i] for i in kept.tolist()],
                       adjacency=(sub * edge_mask)[final][:, final], bias=self.bias[kept],
                       target_input=self.target_input[kept], influence=influence[kept],
                       original_index=[base[i] for i in kept.tolist()], thresholds=(node_threshold, edge_threshold),
                       influence_share=share[kept], _influence_cache=None)

    def replacement_score(self) -> float:
        """Share of the embeddings' and errors' total influence on the logits that belongs to the embeddings: 1 when
        every path from the prompt to the prediction runs through features, lower the more error nodes carry."""
        influence = self.node_influence()
        tok = influence[self.kind_mask("embedding")].sum()
        err = influence[self.kind_mask("error")].sum()
        return float(tok / (tok + err)) if tok + err > 0 else 0.0

    def completeness_score(self) -> float:
        """Influence-weighted share of every node's incoming (normalised) edges that come from features or
        embeddings rather than error nodes: partial credit for nodes mostly explained by features."""
        weights = self.logit_weights()
        output_influence = self.node_influence() + weights
        absolute = self.adjacency.abs()
        from_errors = absolute[:, self.kind_mask("error")].sum(-1) / absolute.sum(-1).clamp(min=1e-10)
        non_error = 1 - from_errors
        return float((non_error * output_influence).sum() / output_influence.sum())

    # ---- export ----
    def to_json(self, decode: Callable[[list[int]], str] | None = None, labels: dict[str, str] | None = None,
                metadata: dict | None = None, schema: str = "gpt-explorer", tokenizer=None,
                **circuit_tracer) -> dict:
        """A JSON-ready dict. schema="gpt-explorer" (ours): metadata, nodes (node_id, feature, layer, ctx_idx,
        feature_type, activation, influence, token_prob, is_target_logit, clerp = labels[node key]) and links
        (source, target, weight) for every non-zero edge. Token labels (a node's "token", "prompt_tokens") are in the
        one display form (gpt.token_display.display_token: ↵ newline, · space); "prompt" is the raw text and "token_ids"
        the exact ids. Pass the tokenizer (or a decode function). schema="circuit-tracer": a file that validates
        against circuit-tracer's graph schema and opens in its viewer (gpt.interp.circuits.export.circuit_tracer_json,
        which takes the extra keyword arguments: feature_labels, pinned, supernodes, slug, scan)."""
        if tokenizer is not None:
            decode = tokenizer.decode
        if schema == "circuit-tracer":
            return circuit_tracer_json(self, decode, labels=labels, metadata=metadata, **circuit_tracer)
        if schema != "gpt-explorer" or circuit_tracer:
            raise CircuitError(f"schema must be 'gpt-explorer' or 'circuit-tracer' (got {schema!r}"
                               + (f" with {', '.join(circuit_tracer)}" if circuit_tracer else "") + ")")
        if tokenizer is not None:
            shown = lambda i: display_token(tokenizer, i)  # noqa: E731
        else:
            decode = decode or (lambda ids: " ".join(map(str, ids)))
            shown = lambda i: display_text(decode([i]))  # noqa: E731
        probs = dict(zip(self.logit_ids, self.logit_probs.tolist()))
        influence = self.influence if self.influence is not None else self.node_influence()
        types = {"feature": "cross layer transcoder", "error": "mlp reconstruction error",
                 "embedding": "embedding", "logit": "logit"}
        nodes = []
        for i, n in enumerate(self.nodes):
            nodes.append({
                "node_id": n.key, "feature": n.index if n.kind == "feature" else None,
                "layer": "E" if n.kind == "embedding" else str(n.layer), "ctx_idx": n.position,
                "feature_type": types[n.kind], "activation": n.activation, "influence": float(influence[i]),
                "token": shown(n.index) if n.kind in ("embedding", "logit") else None,
                "token_prob": probs.get(n.index, 0.0) if n.kind == "logit" else 0.0,
                "is_target_logit": n.kind == "logit" and n.index == self.logit_ids[0],
                "clerp": (labels or {}).get(n.key, ""),
            })
        target, source = self.adjacency.nonzero(as_tuple=True)
        links = [{"source": self.nodes[s].key, "target": self.nodes[t].key, "weight": float(self.adjacency[t, s])}
                 for t, s in zip(target.tolist(), source.tolist())]
        meta = {"format": "gpt-explorer attribution graph v1 (after circuit-tracer's graph JSON)",
                "prompt_tokens": [shown(t) for t in self.tokens], "prompt": decode(self.tokens),
                "token_ids": self.tokens, "n_layers": self.n_layer, "transcoders": self.transcoders,
                "node_threshold": self.thresholds[0] if self.thresholds else None,
                "edge_threshold": self.thresholds[1] if self.thresholds else None,
                "replacement_score": self.replacement_score(), "completeness_score": self.completeness_score(),
                "conventions": self.conventions}
        meta.update(metadata or {})
        return {"metadata": meta, "nodes": nodes, "links": links}


# ---- influence helpers ----

def normalise_rows(matrix: torch.Tensor) -> torch.Tensor:
    """|matrix| with each row divided by its sum (rows of zeros stay zero)."""
    a = matrix.abs()
    return a / a.sum(1, keepdim=True).clamp(min=1e-10)


def _influence(absolute: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """weights @ (A + A^2 + ...) where A = |adjacency| with rows normalised to sum 1, passed as |adjacency|: v @ A
    = (v / row sums) @ |adjacency|, so the normalised matrix is never built. A is nilpotent (edges only go up the
    layers), so the sum ends."""
    row_sums = absolute.sum(1).clamp(min=1e-10)
    current = (weights / row_sums) @ absolute
    total = current.clone()
    for _ in range(absolute.size(0)):
        if not current.any():
            return total
        current = (current / row_sums) @ absolute
        total += current
    raise CircuitError("influence did not converge: the graph has a cycle")


def _threshold(scores: torch.Tensor, share: float) -> torch.Tensor:
    """The smallest score among the largest ones that together carry `share` of the total."""
    if scores.numel() == 0:
        return torch.tensor(float("inf"))
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum().clamp(min=1e-30)
    i = min(int(torch.searchsorted(cumulative, torch.tensor(share, dtype=cumulative.dtype))), len(ordered) - 1)
    return ordered[i]


# ---- building the graph ----

def select_logits(logits: torch.Tensor, max_logits: int, prob_mass: float) -> tuple[list[int], torch.Tensor]:
    """The most likely tokens, fewest first that together reach prob_mass, at most max_logits."""
    probs = torch.softmax(logits.float(), -1)
    top = probs.topk(min(max_logits, probs.numel()))
    n = int(torch.searchsorted(top.values.cumsum(0), torch.tensor(prob_mass))) + 1
    n = max(1, min(n, len(top.values)))
    return top.indices[:n].tolist(), top.values[:n]


@torch.no_grad()
def attribution_graph(model: GPT, ids, transcoders, position: int = -1,
                      max_logits: int = 10, prob_mass: float = 0.95, batch_size: int = 256,
                      demean_unembedding: bool = False, token_embeddings_only: bool = False) -> AttributionGraph:
    """The attribution graph of the prediction after `position` of ids (the prompt is cut there). transcoders: one
    per layer (a list of LoadedDictionary), a cross-layer transcoder (LoadedCrossLayer), or Transcoders.

    Two conventions of circuit-tracer, off by default (ours: a logit node is the logit itself, an embedding node is
    everything that enters the first block): demean_unembedding attributes each logit minus the mean of all logits
    (its edges read the unembedding row minus the mean row); token_embeddings_only makes embedding nodes the token
    embedding alone, the position embedding becoming part of each target's constant term. With both on, the edges
    equal circuit-tracer's for the same prompt and transcoders (circuit-tracer also drops position 0's features
    and error nodes, treating it as a BOS token: edges between the remaining nodes are unchanged)."""
    tc = check_transcoders(model, transcoders)
    ids = check_ids(model, ids)[0]
    T_full = ids.numel()
    pos = position + T_full if position < 0 else position
    if not 0 <= pos < T_full:
        raise CircuitError(f"position {position} is outside the prompt of {T_full} tokens")
    ids = ids[:pos + 1]
    frozen = freeze(model, ids, tc)
    T, L = ids.numel(), model.config.n_layer
    logit_ids, logit_probs = select_logits(frozen.logits[-1], max_logits, prob_mass)

    # nodes, in circuit-tracer's order: features, errors, embeddings, logits
    nodes: list[Node] = []
    feature_rows = []  # per layer: (positions, features, node indices)
    for layer, act in enumerate(frozen.activations):
        nz = act.nonzero()  # (k, 2) by position, then feature
        start = len(nodes)
        nodes += [Node("feature", layer, p, f, float(act[p, f])) for p, f in nz.tolist()]
        feature_rows.append((nz[:, 0], nz[:, 1], torch.arange(start, len(nodes))))
    error_start = len(nodes)
    nodes += [Node("error", layer, p, -1, float(frozen.errors[layer, p].norm())) for layer in range(L) for p in range(T)]
    embed_start = len(nodes)
    embed_vectors = frozen.token_embeddings if token_embeddings_only else frozen.embeddings
    nodes += [Node("embedding", -1, p, int(ids[p]), float(embed_vectors[p].norm())) for p in range(T)]
    logit_start = len(nodes)
    nodes += [Node("logit", L, T - 1, v, float(frozen.raw_logits[-1, v])) for v in logit_ids]
    N = len(nodes)
    dt = frozen.embeddings.dtype
    adjacency = torch.zeros(N, N, dtype=dt)

    # what each residual slot receives: slot 0 the embeddings, slot l+1 layer l's MLP output: the features that
    # write it (layer l's; with a CLT every layer's up to l) and layer l's error vectors
    slots = [(embed_vectors[:, None], torch.arange(embed_start, embed_start + T)[:, None])]
    for layer in range(L):
        slots.append(_feature_slot(tc, frozen, layer, feature_rows, error_start + layer * T, T))

    def collect(grad: torch.Tensor, slot: int, target_rows: torch.Tensor) -> None:
        """grad (B, T', C) of B targets' inputs at residual slot `slot` -> their edges from every slot below."""
        Tp = grad.size(1)
        for s in range(slot, -1, -1):
            vectors, cols = slots[s]
            edges = torch.einsum("btc,tsc->bts", grad, vectors[:Tp])  # (B, T', S)
            valid = cols[:Tp] >= 0
            # += : a CLT feature writes several slots, and its edge is the sum of those direct paths
            adjacency[target_rows[:, None], cols[:Tp][valid][None, :]] += edges[:, valid]
            if s > 0:  # slot s -> resid_mid of layer s-1 (residual + any skip path) -> slot s-1 (+ attention)
                w_skip = tc.W_skip(s - 1)
                if w_skip is not None:
                    grad = grad + skip_backward(model, frozen, s - 1, w_skip, grad)
                grad = grad + frozen_attention_backward(model, frozen, s - 1, grad)

    for layer in range(L):  # feature targets read resid_mid of their layer through ln_2
        positions, feats, rows = feature_rows[layer]
        for chunk in torch.arange(len(rows)).split(batch_size):
            p, f = positions[chunk], feats[chunk]
            Tp = int(p.max()) + 1
            w_enc = tc.W_enc(layer).to(dt)[:, f].T  # (B, C)
            at_mid = frozen_norm_backward(model.blocks[layer].ln_2, w_enc, frozen.mlp_scales[layer, p])  # (B, C)
            # resid_mid -> slot `layer`: the residual path plus the layer's attention, from one position each
            grad = frozen_attention_backward_from(model, frozen, layer, at_mid, p, Tp)
            grad[torch.arange(len(chunk)), p] += at_mid
            collect(grad, layer, rows[chunk])
    w_u = model.lm_head.weight[logit_ids].to(dt)  # (n_logits, C): logits read the final residual through ln_f
    if demean_unembedding:
        w_u = w_u - model.lm_head.weight.to(dt).mean(0)
    grad = torch.zeros(len(logit_ids), T, model.config.n_embd, dtype=dt)
    grad[:, T - 1] = frozen_norm_backward(model.ln_f, w_u, frozen.final_scales[T - 1].expand(len(logit_ids)))
    collect(grad, L, torch.arange(logit_start, N))

    bias, target_input = _constant_terms(model, frozen, tc, nodes, logit_start,
                                         frozen.embeddings - embed_vectors, demean_unembedding)
    return AttributionGraph(tokens=ids.tolist(), nodes=nodes, adjacency=adjacency, logit_ids=logit_ids,
                            logit_probs=logit_probs, bias=bias, target_input=target_input, n_layer=L,
                            transcoders=sorted(set(tc.names), key=tc.names.index),
                            conventions={"demean_unembedding": demean_unembedding,
                                         "token_embeddings_only": token_embeddings_only})


def _feature_slot(tc, frozen: FrozenPrompt, layer: int, feature_rows, error_row0: int,
                  T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot layer+1's sources per position: (T, S, C) vectors (activation * the decoder row to this layer's MLP
    output, for the active features of every layer that writes it; then the error vector) and (T, S) node indices
    (-1 where a position has fewer active features than the widest)."""
    C = frozen.errors.size(-1)
    sources = list(tc.sources(layer))
    positions = torch.cat([feature_rows[i][0] for i in sources])
    feats = [feature_rows[i][1] for i in sources]
    rows = torch.cat([feature_rows[i][2] for i in sources])
    written = torch.cat([frozen.activations[i][feature_rows[i][0], f][:, None]
                         * tc.decoder(i, layer).to(frozen.errors.dtype)[f] for i, f in zip(sources, feats)])
    order = torch.sort(positions, stable=True).indices  # by position, as the slot offsets below assume
    positions, rows, written = positions[order], rows[order], written[order]
    counts = torch.bincount(positions, minlength=T)
    S = int(counts.max()) + 1 if len(positions) else 1
    vectors = torch.zeros(T, S, C, dtype=frozen.errors.dtype)
    cols = torch.full((T, S), -1, dtype=torch.long)
    slot_in_pos = torch.arange(len(positions)) - torch.cumsum(counts, 0)[positions] + counts[positions]
    vectors[positions, slot_in_pos] = written
    cols[positions, slot_in_pos] = rows
    vectors[:, S - 1] = frozen.errors[layer]
    cols[:, S - 1] = error_row0 + torch.arange(T)
    return vectors, cols


def _constant_terms(model, frozen, transcoders, nodes, logit_start, embedding_rest, demean):
    """Each target's constant term (the replacement model with every node zeroed: only biases and the part of the
    embedding that is no node remain) and its actual input in the real model (a logit minus the mean logit when
    demean)."""
    T = frozen.embeddings.size(0)
    zeros = replacement_forward(model, frozen, transcoders, embeddings=embedding_rest,
                                errors=torch.zeros_like(frozen.errors),
                                activations=[torch.zeros_like(a) for a in frozen.activations])
    bias = torch.zeros(len(nodes), dtype=frozen.embeddings.dtype)
    actual = torch.zeros_like(bias)
    for i, n in enumerate(nodes[:logit_start]):
        if n.kind == "feature":
            bias[i] = zeros.pre_activations[n.layer][n.position, n.index]
            actual[i] = frozen.pre_activations[n.layer][n.position, n.index]
    zero_logits, real_logits = zeros.raw_logits[T - 1], frozen.raw_logits[T - 1]
    if demean:
        zero_logits, real_logits = zero_logits - zero_logits.mean(), real_logits - real_logits.mean()
    for i in range(logit_start, len(nodes)):
        v = nodes[i].index
        bias[i] = zero_logits[v]
        actual[i] = real_logits[v]
    return bias, actual
