"""Attribution graphs from a cross-layer transcoder: the replacement model reproduces the model's logits, every target
is the sum of its edges and its bias, edges (cross-layer decoder paths included) equal the change when their source
is removed from the frozen linear model, and interventions write every later MLP output, as the CLT does."""
import math
import shutil
from pathlib import Path

import pytest
import torch
from model_support import assert_feature_edges_match_perturbation, circuit_model, leaf_removed

from gpt.config import GPTConfig
from gpt.interp.circuits import CircuitError, attribution_graph, intervene
from gpt.interp.circuits.replacement import freeze, load_crosslayer_transcoder, replacement_forward
from gpt.interp.features.crosslayer import CrossLayerConfig, CrossLayerTranscoder, LoadedCrossLayer, save_crosslayer
from gpt.model import GPT, Trace

VARIANTS = {
    "gpt2": {},
    "llama": {"norm": "rmsnorm", "pos_embedding": "rotary", "bias": False, "activation": "relu2"},
    "softcap-qknorm": {"qk_norm": True, "logit_softcap": 15.0, "tie_embeddings": False},
}
IDS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "shakespeare-char"


def random_clt(model, n=40, k=5, activation="topk", seed=0):
    C, L = model.config.n_embd, model.config.n_layer
    clt = CrossLayerTranscoder(CrossLayerConfig(L, activation, n, C, C, "ab" * 32, k if activation == "topk" else None))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in clt.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        clt.normalise_decoder()
        if clt.log_threshold is not None:
            for t in clt.log_threshold:
                t.fill_(math.log(0.3))
    return LoadedCrossLayer("clt", Path("."), clt.config, clt.double().eval().requires_grad_(False), None)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_replacement_model_reproduces_the_logits(variant):
    model = circuit_model(**VARIANTS[variant])
    clt = random_clt(model)
    frozen = freeze(model, IDS, clt)
    out = replacement_forward(model, frozen, clt)
    torch.testing.assert_close(out.logits, frozen.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.logits, model(torch.tensor([IDS]))[0][0], atol=1e-4, rtol=0)
    for layer in range(3):
        torch.testing.assert_close(out.pre_activations[layer], frozen.pre_activations[layer], atol=1e-4, rtol=0)
    # the error of layer 2 is what the CLT misses there with layers 0, 1 and 2's features all writing it
    m = clt.module
    trace = Trace({"blocks.2.mlp.out"})
    model(torch.tensor([IDS]), trace=trace)
    y_hat = sum(frozen.activations[i] @ m.W_dec[i][:, 2 - i] for i in range(3)) + m.b_dec[2]
    torch.testing.assert_close(frozen.errors[2], trace.acts["blocks.2.mlp.out"][0] - y_hat, atol=1e-9, rtol=0)
    assert not torch.allclose(y_hat, frozen.activations[2] @ m.W_dec[2][:, 0] + m.b_dec[2])  # cross-layer terms count


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("activation", ["topk", "jumprelu", "relu"])
def test_every_target_is_the_sum_of_its_edges_and_its_bias(variant, activation):
    model = circuit_model(**VARIANTS[variant])
    graph = attribution_graph(model, IDS, random_clt(model, activation=activation), batch_size=7)
    targets = graph.kind_mask("feature") | graph.kind_mask("logit")
    assert graph.kind_mask("feature").sum() > 20 and graph.transcoders == ["clt"]
    total = graph.adjacency.sum(1) + graph.bias
    scale = graph.target_input[targets].abs().clamp(min=1)  # relative where sums of many terms are large
    assert ((total[targets] - graph.target_input[targets]).abs() / scale).max() < 1e-4
    assert graph.adjacency[~targets].abs().sum() == 0
    t_idx, s_idx = graph.adjacency.nonzero(as_tuple=True)
    for t, s in zip(t_idx.tolist(), s_idx.tolist()):
        src, dst = graph.nodes[s], graph.nodes[t]
        assert src.position <= dst.position and src.layer < dst.layer


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_edges_match_a_perturbation_including_cross_layer_paths(variant):
    """Into the top logit: the largest edges, and the largest from a layer-0 feature (it reaches the logit only
    through its decoders to outputs 0, 1 and 2, summed); into a layer-2 feature, the largest edges."""
    model = circuit_model(**VARIANTS[variant])
    clt = random_clt(model)
    graph = attribution_graph(model, IDS, clt)
    frozen = freeze(model, IDS, clt)
    top = next(i for i, n in enumerate(graph.nodes) if n.kind == "logit" and n.index == graph.logit_ids[0])
    tok = graph.logit_ids[0]
    base = replacement_forward(model, frozen, clt, activations=frozen.activations).raw_logits[-1, tok]
    edges = graph.adjacency[top]
    layer0 = max((i for i, n in enumerate(graph.nodes) if n.kind == "feature" and n.layer == 0),
                 key=lambda i: abs(float(edges[i])))
    for s in edges.abs().topk(5).indices.tolist() + [layer0]:
        effect = base - leaf_removed(model, frozen, clt, graph.nodes[s]).raw_logits[-1, tok]
        assert abs(float(effect) - float(edges[s])) <= 1e-6 * abs(float(edges[s])) + 1e-9, graph.nodes[s]
    assert_feature_edges_match_perturbation(model, frozen, clt, graph, rel=1e-6, tol=1e-9)


def test_intervene_writes_every_later_layer():
    model = circuit_model()
    clt = random_clt(model)
    same = intervene(model, IDS, clt, {})
    torch.testing.assert_close(same.probs_model, same.probs_before, atol=1e-6, rtol=0)
    frozen = freeze(model, IDS, clt)
    pos = len(IDS) - 1
    feat = int(frozen.activations[0][pos].argmax())
    own = intervene(model, IDS, clt, {(0, pos, feat): float(frozen.activations[0][pos, feat])})
    torch.testing.assert_close(own.probs_model, own.probs_before, atol=1e-6, rtol=0)
    torch.testing.assert_close(own.probs_replacement, own.probs_before, atol=1e-6, rtol=0)
    # in the real model, a layer-0 feature set to v adds (v - a) * W_dec_0[f, j] to MLP output j = 0, 1, 2: the same
    # as running the model with those three additions by hand
    from gpt.interp.capture import run_with_cache
    delta = 3.0 - float(frozen.activations[0][pos, feat])

    def add(j):
        def fn(out):
            out = out.clone()
            out[0, pos] += delta * clt.module.W_dec[0][feat, j]
            return out
        return fn
    hooks = {f"blocks.{j}.mlp.out": add(j) for j in range(3)}
    expected = torch.softmax(run_with_cache(model, IDS, {"logits"}, hooks)["logits"][0, -1].float(), -1)
    result = intervene(model, IDS, clt, {(0, pos, feat): 3.0})
    torch.testing.assert_close(result.probs_model, expected, atol=1e-6, rtol=0)
    with pytest.raises(CircuitError, match="feature 40 does not exist: clt has 0..39"):
        intervene(model, IDS, clt, {(1, 0, 40): 0.0})


def test_refusals(tmp_path):
    model = circuit_model()
    clt = random_clt(model)
    small = GPT(GPTConfig(vocab_size=12, n_layer=2, n_head=2, n_embd=16, block_size=16)).double().eval()
    with pytest.raises(CircuitError, match="spans 3 layers, but the model has 2"):
        attribution_graph(small, IDS, clt)
    with pytest.raises(CircuitError, match="no cross-layer transcoder"):
        load_crosslayer_transcoder(tmp_path, model)
    save_crosslayer(tmp_path / "features" / "clt", clt.module.float())
    with pytest.raises(CircuitError, match="spans 3 layers, but the model has 2"):
        load_crosslayer_transcoder(tmp_path, small)
    assert load_crosslayer_transcoder(tmp_path, model).name == "clt"


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model missing")
def test_shipped_model_clt_graph_is_exact(tmp_path):
    """fp32, as the app runs it: a CLT with random weights on the shipped model (its error nodes carry the rest)."""
    from gpt.runs import load_run
    shutil.copytree(SHIPPED, tmp_path / "run", ignore=shutil.ignore_patterns("snapshots", "features", "interp"))
    run = load_run(tmp_path / "run")
    clt = random_clt(run.model, n=256, k=16)
    module = clt.module.float()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # pre-activations of a trained dictionary's size (~1), not ~100: fp32 noise stays ~1e-6
        for w in module.W_enc:
            w.copy_(torch.randn(w.shape, generator=g) / w.size(0) ** 0.5)
    clt = LoadedCrossLayer("clt", Path("."), clt.config, module, None)
    ids = run.tokenizer.encode("GONZALO:\nI have great comfort from this fellow")
    graph = attribution_graph(run.model, ids, clt)
    targets = graph.kind_mask("feature") | graph.kind_mask("logit")
    total = (graph.adjacency.sum(1) + graph.bias)[targets]
    scale = graph.target_input[targets].abs().clamp(min=1)
    assert ((total - graph.target_input[targets]).abs() / scale).max() < 1e-4
    out = replacement_forward(run.model, freeze(run.model, ids, clt), clt)
    torch.testing.assert_close(out.logits[-1], run.model(torch.tensor([ids]))[0][0, -1], atol=1e-4, rtol=0)
