"""Small models, dictionaries and graphs that several test modules build (a support module, not a test module:
tests import these instead of importing each other)."""
from __future__ import annotations

import torch

from gpt.config import GPTConfig
from gpt.interp.circuits import AttributionGraph, Node
from gpt.interp.circuits.replacement import replacement_forward
from gpt.interp.features.crosslayer import CrossLayerConfig, CrossLayerTranscoder
from gpt.interp.features.dictionary import Dictionary, DictionaryConfig
from gpt.model import GPT

V = 20          # model_for's vocabulary
DIGEST = "ab" * 32  # random_dictionary's (fake) model digest


def model_for(arch="gpt", seed=0, **options):
    """A small model with weights shaken away from their init, so every part writes something."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=16, arch=arch, **options)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def pair(T=10, seed=1):
    """A clean and a corrupted prompt for model_for that differ in one early token."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, V, (T,), generator=g)
    corrupted = clean.clone()
    corrupted[2] = (clean[2] + 5) % V  # one token differs, early, so its effect must travel to the end
    return clean, corrupted


def tiny_model(**kw):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=12, n_layer=2, n_head=2, n_embd=16, block_size=16, **kw)
    return GPT(cfg).eval()


def circuit_model(**kw):
    """A random 3-layer model in fp64 with weights scaled up (so attention and MLPs do something visible), for
    attribution graphs: random transcoders leave large error vectors that cancel against the features, and fp32
    sums of such terms carry ~1e-4 of noise; fp64 checks the algebra itself."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=12, n_layer=3, n_head=2, n_embd=16, block_size=16, **kw)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    return model.double()


def random_dictionary(activation="topk", n=40, kind="transcoder", seed=0, *, k=5, width=16, layer=1, digest=DIGEST):
    """A dictionary with random (decoder-normalised) weights; by default for tiny_model's shapes (16 wide, layer 1)."""
    site = f"blocks.{layer}"
    sites = (f"{site}.mlp.in", f"{site}.mlp.out") if kind == "transcoder" else (f"{site}.resid_mid",) * 2
    cfg = DictionaryConfig(kind, *sites, activation, n, width, width, digest, k if activation == "topk" else None)
    d = Dictionary(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (d.W_enc, d.b_enc, d.W_dec, d.b_dec):
            p.copy_(torch.randn(p.shape, generator=g))
        d.normalise_decoder()
        if d.log_threshold is not None:
            d.log_threshold.copy_(torch.randn(n, generator=g).abs().log())
    return d


def random_clt(L=3, n=24, activation="topk", k=4, seed=0, C=16):
    """A cross-layer transcoder over L layers C wide with random (decoder-normalised) weights, frozen."""
    clt = CrossLayerTranscoder(CrossLayerConfig(L, activation, n, C, C, DIGEST, k if activation == "topk" else None))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in clt.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        clt.normalise_decoder()
        if clt.log_threshold is not None:
            for t in clt.log_threshold:
                t.copy_(torch.randn(n, generator=g).abs().log())
    return clt.eval().requires_grad_(False)


def leaf_removed(model, frozen, transcoders, node):
    """The replacement model's raw logits (frozen: replacement.freeze) with the features held at their values and one
    source node removed (transcoders: per-layer ones or a cross-layer one)."""
    acts = [a.clone() for a in frozen.activations]
    emb, errs = frozen.embeddings.clone(), frozen.errors.clone()
    if node.kind == "feature":
        acts[node.layer][node.position, node.index] = 0
    elif node.kind == "error":
        errs[node.layer, node.position] = 0
    else:
        emb[node.position] = 0
    return replacement_forward(model, frozen, transcoders, embeddings=emb, errors=errs, activations=acts)


def assert_feature_edges_match_perturbation(model, frozen, transcoders, graph, rel: float, tol: float):
    """The five largest edges into the layer-2 feature with the largest edge each equal the change of its
    pre-activation when their source is removed from the frozen linear model (within rel * |edge| + tol)."""
    target = max((i for i, n in enumerate(graph.nodes) if n.kind == "feature" and n.layer == 2),
                 key=lambda i: graph.adjacency[i].abs().max())
    t = graph.nodes[target]
    base = replacement_forward(model, frozen, transcoders,
                               activations=frozen.activations).pre_activations[2][t.position, t.index]
    for s in graph.adjacency[target].abs().topk(5).indices.tolist():
        removed = leaf_removed(model, frozen, transcoders, graph.nodes[s]).pre_activations[2][t.position, t.index]
        edge = float(graph.adjacency[target, s])
        assert abs(float(base - removed) - edge) <= rel * abs(edge) + tol, graph.nodes[s]


def model_and_text(arch="gpt"):
    """A tiny untrained model and a token sequence long enough for several 8-token windows."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=8, arch=arch)).eval()
    seq = torch.randint(0, 20, (8 * 40 + 3,), generator=torch.Generator().manual_seed(1))
    return model, seq


def toy_graph():
    """embedding e -> feature a -> logit; e -> error r -> logit... built by hand so influence has known values."""
    nodes = [Node("feature", 0, 0, 5, 1.0), Node("error", 0, 0, -1, 0.5), Node("embedding", -1, 0, 1, 1.0),
             Node("logit", 1, 0, 2, 3.0), Node("logit", 1, 0, 4, 1.0)]
    A = torch.zeros(5, 5)
    A[0, 2] = 2.0                  # embedding -> feature
    A[3, 0], A[3, 1], A[3, 2] = 3.0, -1.0, 0.0   # feature, error -> logit 2
    A[4, 2] = 1.0                  # embedding -> logit 4 directly
    return AttributionGraph([1], nodes, A, [2, 4], torch.tensor([0.75, 0.25]), torch.zeros(5), torch.zeros(5), 1)
