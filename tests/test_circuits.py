"""Attribution graphs: the replacement model is exact, every edge is a true direct effect (checked by perturbing the
source in the frozen linear model), influence, pruning and scores follow their definitions, interventions agree
between the two models where they must, and every bad input is refused by name."""
import json
import math
from pathlib import Path

import pytest
import torch
from model_support import assert_feature_edges_match_perturbation, circuit_model, leaf_removed, toy_graph

from gpt.config import GPTConfig
from gpt.interp.capture import InterpError
from gpt.interp.circuits import CircuitError, Node, attribution_graph, intervene, load_transcoders
from gpt.interp.circuits.replacement import freeze, replacement_forward
from gpt.interp.features.dictionary import Dictionary, DictionaryConfig, LoadedDictionary, save_dictionary, weights_digest
from gpt.model import GPT
from gpt.runs import WEIGHTS, atomic_save_model

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "shakespeare-char"
VARIANTS = {
    "gpt2": {},
    "llama": {"norm": "rmsnorm", "pos_embedding": "rotary", "bias": False, "activation": "relu2"},
    "softcap-qknorm": {"qk_norm": True, "logit_softcap": 15.0, "tie_embeddings": False},
}


def random_transcoders(model, n=48, k=6, activation="topk", digest="ab" * 32, seed=0, skip=False):
    C = model.config.n_embd
    out = []
    g = torch.Generator().manual_seed(seed)
    for layer in range(model.config.n_layer):
        cfg = DictionaryConfig("transcoder", f"blocks.{layer}.mlp.in", f"blocks.{layer}.mlp.out", activation, n, C, C,
                               digest, k if activation == "topk" else None, skip=skip)
        d = Dictionary(cfg)
        with torch.no_grad():
            for p in (d.W_enc, d.b_enc, d.W_dec, d.b_dec) + ((d.W_skip,) if skip else ()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            d.normalise_decoder()
            if d.log_threshold is not None:
                d.log_threshold.fill_(math.log(0.3))
        d.eval().requires_grad_(False)
        out.append(LoadedDictionary(f"transcoder-L{layer}", Path("."), cfg, d, None))
    return out


IDS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_replacement_model_reproduces_the_logits(variant, skip):
    model = circuit_model(**VARIANTS[variant])
    tcs = random_transcoders(model, skip=skip)
    frozen = freeze(model, IDS, tcs)
    out = replacement_forward(model, frozen, tcs)
    torch.testing.assert_close(out.logits, frozen.logits, atol=1e-4, rtol=0)
    for layer in range(3):  # and the transcoders see exactly what they see in the real model
        torch.testing.assert_close(out.pre_activations[layer], frozen.pre_activations[layer], atol=1e-4, rtol=0)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("activation", ["topk", "jumprelu", "relu", "topk-skip"])
def test_every_target_is_the_sum_of_its_edges_and_its_bias(variant, activation):
    model = circuit_model(**VARIANTS[variant])
    tcs = random_transcoders(model, activation=activation.split("-")[0], skip=activation.endswith("skip"))
    graph = attribution_graph(model, IDS, tcs, batch_size=7)  # small batches: several chunks per layer
    targets = graph.kind_mask("feature") | graph.kind_mask("logit")
    assert graph.kind_mask("feature").sum() > 20
    total = graph.adjacency.sum(1) + graph.bias
    torch.testing.assert_close(total[targets], graph.target_input[targets], atol=1e-4, rtol=0)
    # leaves have no incoming edges, and nothing feeds a node at an earlier layer or a later position
    assert graph.adjacency[~targets].abs().sum() == 0
    t_idx, s_idx = graph.adjacency.nonzero(as_tuple=True)
    for t, s in zip(t_idx.tolist(), s_idx.tolist()):
        src, dst = graph.nodes[s], graph.nodes[t]
        assert src.position <= dst.position and src.layer < dst.layer


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_largest_edges_into_the_top_logit_match_a_perturbation(variant, skip):
    model = circuit_model(**VARIANTS[variant])
    tcs = random_transcoders(model, skip=skip)
    graph = attribution_graph(model, IDS, tcs)
    frozen = freeze(model, IDS, tcs)
    top = next(i for i, n in enumerate(graph.nodes) if n.kind == "logit" and n.index == graph.logit_ids[0])
    base = replacement_forward(model, frozen, tcs, activations=frozen.activations).raw_logits[-1, graph.logit_ids[0]]
    edges = graph.adjacency[top]
    kinds_seen = set()
    for s in edges.abs().topk(5).indices.tolist():
        node = graph.nodes[s]
        kinds_seen.add(node.kind)
        removed = leaf_removed(model, frozen, tcs, node).raw_logits[-1, graph.logit_ids[0]]
        effect = base - removed
        assert abs(float(effect) - float(edges[s])) <= 1e-3 * abs(float(edges[s])) + 1e-6, node
    # every kind of source, checked the same way
    for kind in ("feature", "error", "embedding"):
        s = max((i for i, n in enumerate(graph.nodes) if n.kind == kind), key=lambda i: abs(float(edges[i])))
        effect = base - leaf_removed(model, frozen, tcs, graph.nodes[s]).raw_logits[-1, graph.logit_ids[0]]
        assert abs(float(effect) - float(edges[s])) <= 1e-3 * abs(float(edges[s])) + 1e-6


@pytest.mark.parametrize("skip", [False, True])
def test_feature_edges_match_a_perturbation_of_the_source(skip):
    model = circuit_model()
    tcs = random_transcoders(model, skip=skip)
    graph = attribution_graph(model, IDS, tcs)
    frozen = freeze(model, IDS, tcs)
    assert_feature_edges_match_perturbation(model, frozen, tcs, graph, rel=1e-3, tol=1e-6)


def test_nodes_and_logits():
    model = circuit_model()
    tcs = random_transcoders(model)
    graph = attribution_graph(model, IDS, tcs, position=7, max_logits=3, prob_mass=0.99)
    assert graph.tokens == IDS[:8]  # the prompt is cut at the position explained
    kinds = [n.kind for n in graph.nodes]
    assert kinds == sorted(kinds, key=["feature", "error", "embedding", "logit"].index)  # circuit-tracer's order
    assert kinds.count("error") == 3 * 8 and kinds.count("embedding") == 8
    assert len(graph.logit_ids) <= 3 and kinds.count("logit") == len(graph.logit_ids)
    probs = torch.softmax(model(torch.tensor([IDS[:8]]))[0][0, -1], -1)
    assert graph.logit_ids[0] == int(probs.argmax())
    torch.testing.assert_close(graph.logit_probs, probs[graph.logit_ids].float(), atol=1e-5, rtol=0)
    one = attribution_graph(model, IDS, tcs, prob_mass=0.0)
    assert len(one.logit_ids) == 1
    acts = freeze(model, IDS[:8], tcs).activations
    for n in graph.nodes:
        if n.kind == "feature":
            assert n.activation > 0 and n.activation == pytest.approx(float(acts[n.layer][n.position, n.index]))
    with pytest.raises(CircuitError, match="outside the prompt"):
        attribution_graph(model, IDS, tcs, position=40)


def test_influence_and_scores_follow_the_definitions():
    g = toy_graph()
    # logit 2 (weight .75) splits 3/4 to the feature, 1/4 to the error; logit 4 (.25) all to the embedding;
    # the feature passes its .5625 on to the embedding
    torch.testing.assert_close(g.node_influence(), torch.tensor([0.5625, 0.1875, 0.8125, 0.0, 0.0]))
    assert g.replacement_score() == pytest.approx(0.8125 / (0.8125 + 0.1875))
    # completeness: the logit 2 row is 3/4 non-error (weight .75), the feature row 1 (weight .5625), logit 4 row 1
    # error and embedding rows are empty: 1 - 0 = 1 non-error share, weighted by their influence
    expected = (0.75 * 0.75 + 0.5625 + 0.25 + 0.1875 + 0.8125) / (0.75 + 0.5625 + 0.25 + 0.1875 + 0.8125)
    assert g.completeness_score() == pytest.approx(expected)


def test_prune_keeps_what_carries_the_influence():
    model = circuit_model()
    tcs = random_transcoders(model)
    graph = attribution_graph(model, IDS, tcs)
    everything = graph.prune(1.0, 1.0)
    kept = graph.prune(0.8, 0.98)
    small = graph.prune(0.3, 0.5)
    assert len(small.nodes) <= len(kept.nodes) <= len(everything.nodes) <= len(graph.nodes)
    for g in (everything, kept, small):  # embeddings and logits always stay
        assert sum(n.kind == "embedding" for n in g.nodes) == len(IDS)
        assert sum(n.kind == "logit" for n in g.nodes) == len(graph.logit_ids)
        for i, n in zip(g.original_index, g.nodes):
            assert graph.nodes[i] == n
        # kept edges are the full graph's edges, unchanged
        sub = graph.adjacency[g.original_index][:, g.original_index]
        nz = g.adjacency != 0
        torch.testing.assert_close(g.adjacency[nz], sub[nz])
        # every kept feature is fed and feeds; every kept error feeds
        for i, n in enumerate(g.nodes):
            if n.kind == "feature":
                assert (g.adjacency[i] != 0).any() and (g.adjacency[:, i] != 0).any()
            if n.kind == "error":
                assert (g.adjacency[:, i] != 0).any()
    inf = graph.node_influence()
    dropped = set(range(len(graph.nodes))) - set(kept.original_index)
    top_feature = max((i for i, n in enumerate(graph.nodes) if n.kind == "feature"), key=lambda i: inf[i])
    assert top_feature not in dropped
    with pytest.raises(CircuitError, match="between 0 and 1"):
        graph.prune(1.5)


def test_json_export_is_close_to_circuit_tracer():
    model = circuit_model()
    tcs = random_transcoders(model)
    graph = attribution_graph(model, IDS, tcs).prune()
    data = json.loads(json.dumps(graph.to_json(decode=lambda ids: "".join("abcdefghijkl"[i] for i in ids))))
    assert data["metadata"]["prompt"] == "".join("abcdefghijkl"[i] for i in IDS)
    ids = [n["node_id"] for n in data["nodes"]]
    assert len(set(ids)) == len(ids)
    assert len(data["links"]) == int((graph.adjacency != 0).sum())
    assert {n["feature_type"] for n in data["nodes"]} <= {"cross layer transcoder", "mlp reconstruction error",
                                                         "embedding", "logit"}
    assert sum(n["is_target_logit"] for n in data["nodes"]) == 1
    assert all(link["source"] in ids and link["target"] in ids for link in data["links"])


def test_intervene_nothing_changes_nothing_and_off_moves_the_prediction():
    model = circuit_model()
    tcs = random_transcoders(model)
    same = intervene(model, IDS, tcs, {})
    torch.testing.assert_close(same.probs_replacement, same.probs_before, atol=1e-5, rtol=0)
    torch.testing.assert_close(same.probs_model, same.probs_before, atol=1e-5, rtol=0)
    frozen = freeze(model, IDS, tcs)
    # setting a feature to its own value changes nothing in either model
    layer, pos, feat = 1, len(IDS) - 1, int(frozen.activations[1][-1].argmax())
    own = intervene(model, IDS, tcs, {(layer, pos, feat): float(frozen.activations[1][-1, feat])})
    torch.testing.assert_close(own.probs_model, own.probs_before, atol=1e-5, rtol=0)
    torch.testing.assert_close(own.probs_replacement, own.probs_before, atol=1e-5, rtol=0)
    # the feature with the largest direct effect on the top logit, switched off, lowers that token in both models
    graph = attribution_graph(model, IDS, tcs)
    top = next(i for i, n in enumerate(graph.nodes) if n.kind == "logit")
    feats = [i for i, n in enumerate(graph.nodes) if n.kind == "feature" and n.layer == 2]
    best = max(feats, key=lambda i: float(graph.adjacency[top, i]))
    off = intervene(model, IDS, tcs, {graph.nodes[best]: 0.0})
    tok = graph.logit_ids[0]
    assert off.probs_replacement[tok] < off.probs_before[tok]
    assert off.probs_model[tok] < off.probs_before[tok]
    rows = off.top(4)
    assert len(rows) == 4 and all(len(r) == 4 for r in rows)


def test_intervene_refuses_what_is_not_a_feature():
    model = circuit_model()
    tcs = random_transcoders(model)
    with pytest.raises(CircuitError, match="only features"):
        intervene(model, IDS, tcs, {Node("error", 0, 0, -1, 1.0): 0.0})
    with pytest.raises(CircuitError, match="does not exist"):
        intervene(model, IDS, tcs, {(0, 0, 999): 0.0})
    with pytest.raises(CircuitError, match="outside the prompt"):
        intervene(model, IDS, tcs, {(0, 99, 1): 0.0})
    with pytest.raises(CircuitError, match="finite"):
        intervene(model, IDS, tcs, {(0, 0, 1): float("nan")})


def _run_folder(tmp_path, model):
    run = tmp_path / "run"
    run.mkdir()
    atomic_save_model(model, run / WEIGHTS)
    return run


def test_load_transcoders_refuses_by_name(tmp_path):
    model = circuit_model()
    run = _run_folder(tmp_path, model)
    digest = weights_digest(run / WEIGHTS)
    with pytest.raises(CircuitError, match="no transcoders"):
        load_transcoders(run, model)
    tcs = random_transcoders(model, digest=digest)
    for t in tcs[:2]:
        save_dictionary(run / "features" / t.name, t.module)
    with pytest.raises(CircuitError, match="no transcoder for layer 2"):
        load_transcoders(run, model)
    other = random_transcoders(model, digest="cd" * 32)[2]
    save_dictionary(run / "features" / other.name, other.module)
    with pytest.raises(CircuitError, match="transcoder-L2.*other weights"):
        load_transcoders(run, model)
    save_dictionary(run / "features" / "transcoder-L2", tcs[2].module)
    loaded = load_transcoders(run, model)
    assert [t.name for t in loaded] == ["transcoder-L0", "transcoder-L1", "transcoder-L2"]
    # a transcoder of the wrong width is refused by name too
    wide = GPT(GPTConfig(vocab_size=12, n_layer=3, n_head=2, n_embd=24, block_size=16))
    wrong = random_transcoders(wide, digest=digest)[1]
    save_dictionary(run / "features" / "transcoder-L1", wrong.module)
    with pytest.raises(CircuitError, match="transcoder-L1.*24"):
        load_transcoders(run, model)


def test_models_without_mlps_are_explained():
    for arch, words in (("bigram", "bigram"), ("multi_head", "attention only")):
        model = GPT(GPTConfig(vocab_size=12, n_layer=2, n_head=2, n_embd=16, block_size=16, arch=arch))
        with pytest.raises(CircuitError, match=words):
            load_transcoders("/nonexistent", model)


def test_prompt_longer_than_the_context():
    model = circuit_model()
    tcs = random_transcoders(model)
    with pytest.raises(InterpError, match="longer than"):
        attribution_graph(model, list(range(12)) * 2, tcs)


@pytest.mark.slow
@pytest.mark.skipif(not (SHIPPED / "features" / "transcoder-L3").is_dir(), reason="shipped transcoders missing")
def test_shipped_model_graph_is_exact():
    from gpt.runs import load_run
    run = load_run(SHIPPED)
    tcs = load_transcoders(SHIPPED, run.model)
    ids = run.tokenizer.encode("GONZALO:\nI have great comfort from this fellow")
    graph = attribution_graph(run.model, ids, tcs)
    targets = graph.kind_mask("feature") | graph.kind_mask("logit")
    # fp32 sums of many O(1) edges and logits of a trained model: relative as well, so it holds on AVX2 and AVX-512
    torch.testing.assert_close((graph.adjacency.sum(1) + graph.bias)[targets], graph.target_input[targets],
                               atol=1e-4, rtol=1e-5)
    out = replacement_forward(run.model, freeze(run.model, ids, tcs), tcs)
    torch.testing.assert_close(out.logits[-1], run.model(torch.tensor([ids]))[0][0, -1], atol=1e-4, rtol=1e-5)
    pruned = graph.prune()
    assert 0.5 < pruned.replacement_score() <= 1 and 0.5 < graph.completeness_score() <= 1
