"""The field's tools open our files, checked without installing them (bench/interop.py runs the real libraries):

* SAELens 6.54: the exported folder has its documented layout (cfg.json fields, sae_weights.safetensors names,
  shapes, dtypes), and SAELens' formula computed from those files alone equals ours within 1e-5;
* circuit-tracer 0.5: per-layer files in its transcoder-set layout, its formula from them equals ours; what it cannot
  load is refused by name;
* graph JSON: to_json(schema="circuit-tracer") conforms to the schema derived from circuit-tracer's pydantic model
  (tests/data/circuit_tracer_graph_schema.json), with its node ids, cantor feature numbers, cumulative influence and
  our labels as clerp;
* circuit-tracer's two conventions (demeaned unembedding, token-only embedding nodes) keep the graph exact.
"""
import json
import math
import re
from pathlib import Path

import pytest
import torch
from interop_support import random_loaded_dictionary
from model_support import circuit_model
from safetensors.torch import load_file
from schema_check import schema_errors

from gpt.interp.circuits import CircuitError, attribution_graph
from gpt.interp.circuits.export import cantor, cumulative_share
from gpt.interp.circuits.replacement import freeze, replacement_forward
from gpt.interp.features.cli import main as features_cli
from gpt.interp.features.dictionary import DictionaryError
from gpt.interp.features.export import (
    export_circuit_tracer,
    export_saelens,
    feature_names,
    read_labels,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"
SCHEMA = json.loads((ROOT / "tests" / "data" / "circuit_tracer_graph_schema.json").read_text())
IDS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]

# SAELens 6.54's classes by `architecture` (sae_lens/__init__.py register_sae_class) and the tensors each loads
# (its initialize_weights; load_state_dict is strict): shapes in terms of d_in, d_sae (n), d_out
SAELENS_TENSORS = {
    "standard": {"W_enc": ("d_in", "n"), "b_enc": ("n",), "W_dec": ("n", "d_in"), "b_dec": ("d_in",)},
    "jumprelu": {"W_enc": ("d_in", "n"), "b_enc": ("n",), "W_dec": ("n", "d_in"), "b_dec": ("d_in",),
                 "threshold": ("n",)},
    "topk": {"W_enc": ("d_in", "n"), "b_enc": ("n",), "W_dec": ("n", "d_in"), "b_dec": ("d_in",)},
    "transcoder": {"W_enc": ("d_in", "n"), "b_enc": ("n",), "W_dec": ("n", "d_out"), "b_dec": ("d_out",)},
    "jumprelu_transcoder": {"W_enc": ("d_in", "n"), "b_enc": ("n",), "W_dec": ("n", "d_out"), "b_dec": ("d_out",),
                            "threshold": ("n",)},
    "skip_transcoder": {"W_enc": ("d_in", "n"), "b_enc": ("n",), "W_dec": ("n", "d_out"), "b_dec": ("d_out",),
                        "W_skip": ("d_out", "d_in")},
    "jumprelu_skip_transcoder": {"W_enc": ("d_in", "n"), "b_enc": ("n",), "W_dec": ("n", "d_out"),
                                 "b_dec": ("d_out",), "threshold": ("n",), "W_skip": ("d_out", "d_in")},
}
SAELENS_CONFIG_FIELDS = {"architecture", "d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input",
                         "normalize_activations", "reshape_activations", "metadata"}


def dictionary(kind="transcoder", activation="topk", layer=0, C=16, n=40, skip=False, seed=0):
    name = f"transcoder-L{layer}" if kind == "transcoder" else f"sae-L{layer}"
    return random_loaded_dictionary(kind, activation, layer, C, n, 5, skip, seed + 10 * layer, name)


def saelens_formula(cfg: dict, t: dict, x: torch.Tensor):
    """SAELens' encode/decode as its classes compute them (saes/standard_sae.py, jumprelu_sae.py, topk_sae.py,
    transcoder.py), from the exported files alone."""
    arch = cfg["architecture"]
    sae_in = x - t["b_dec"] * cfg["apply_b_dec_to_input"] if "transcoder" not in arch else x
    pre = sae_in @ t["W_enc"] + t["b_enc"]
    if arch == "topk":
        top = pre.topk(cfg["k"], dim=-1)
        f = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    elif arch.startswith("jumprelu"):
        f = pre.relu() * (pre > t["threshold"])
    else:
        f = pre.relu()
    y = f @ t["W_dec"] + t["b_dec"]
    out = y + x @ t["W_skip"].T if "skip" in arch else y
    return f, y, out


VARIANTS = [("sae", "topk", False), ("sae", "jumprelu", False), ("sae", "relu", False),
            ("transcoder", "topk", False), ("transcoder", "jumprelu", False), ("transcoder", "relu", False),
            ("transcoder", "relu", True), ("transcoder", "jumprelu", True)]


@pytest.mark.parametrize("kind,activation,skip", VARIANTS)
def test_saelens_export_has_its_layout_and_its_formula_gives_ours(tmp_path, kind, activation, skip):
    d = dictionary(kind, activation, layer=2, skip=skip)
    out = export_saelens(d, tmp_path / "sae", model_name="tiny")
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    cfg = json.loads((out / "cfg.json").read_text())
    assert SAELENS_CONFIG_FIELDS <= set(cfg)
    arch = cfg["architecture"]
    assert arch == {("sae", "topk"): "topk", ("sae", "jumprelu"): "jumprelu", ("sae", "relu"): "standard",
                    ("transcoder", "topk"): "topk", ("transcoder", "jumprelu"): "jumprelu_transcoder",
                    ("transcoder", "relu"): "transcoder"}[kind, activation].replace(
        "transcoder", "skip_transcoder" if skip else "transcoder")
    assert cfg["apply_b_dec_to_input"] is False and cfg["normalize_activations"] == "none"
    assert cfg["dtype"] == "float32" and (cfg["d_in"], cfg["d_sae"]) == (16, 40)
    meta = cfg["metadata"]
    assert int(meta["sae_lens_version"].split(".")[0]) >= 6  # older versions get the pre-6.0 defaulting
    assert meta["hook_name"] == ("blocks.2.ln2.hook_normalized" if kind == "transcoder" else "blocks.2.hook_resid_mid")
    if kind == "transcoder":
        assert meta["hook_name_out"] == "blocks.2.hook_mlp_out"
    if arch == "topk":
        assert cfg["k"] == 5 and cfg["rescale_acts_by_decoder_norm"] is False
    if "transcoder" in arch:
        assert cfg["d_out"] == 16
    tensors = load_file(out / "sae_weights.safetensors")
    dims = {"d_in": 16, "n": 40, "d_out": 16}
    expected = SAELENS_TENSORS[arch]
    assert set(tensors) == set(expected)
    for name, shape in expected.items():
        assert tuple(tensors[name].shape) == tuple(dims[s] for s in shape), name
        assert tensors[name].dtype == torch.float32
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(3)) * 2
    f, y, out_ = saelens_formula(cfg, tensors, x)
    torch.testing.assert_close(f, d.module.encode(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(y, d.module.decode(d.module.encode(x)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out_, d.module(x), atol=1e-5, rtol=0)
    assert (f > 0).sum(-1).float().mean() > 0  # features do fire: the comparison is not of zeros


def test_saelens_refuses_a_topk_skip_transcoder(tmp_path):
    with pytest.raises(DictionaryError, match="no TopK skip transcoder"):
        export_saelens(dictionary("transcoder", "topk", skip=True), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def circuit_tracer_formula(t: dict, x: torch.Tensor, activation: str, k: int | None):
    """circuit-tracer's SingleLayerTranscoder.encode/decode (transcoder/single_layer_transcoder.py) from one layer
    file; TopK as the README says to set it after loading."""
    pre = torch.nn.functional.linear(x, t["W_enc"], t["b_enc"])
    if "activation_function.threshold" in t:
        f = pre * (pre > t["activation_function.threshold"])
    elif activation == "topk":
        top = pre.topk(k, dim=-1)
        f = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    else:
        f = pre.relu()
    y = f @ t["W_dec"] + t["b_dec"]
    return f, y + x @ t["W_skip"].T if "W_skip" in t else y


def read_yaml(path: Path) -> dict:
    """The flat `key: <JSON value>` YAML our exporter writes (yaml.safe_load reads the same)."""
    pairs = [line.split(": ", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {k: json.loads(v) for k, v in pairs}


@pytest.mark.parametrize("activation,skip", [("jumprelu", False), ("relu", False), ("relu", True), ("topk", False)])
def test_circuit_tracer_export_has_its_layout_and_its_formula_gives_ours(tmp_path, activation, skip):
    tcs = [dictionary("transcoder", activation, layer=i, skip=skip) for i in range(3)]
    out = export_circuit_tracer(tcs, tmp_path / "ct", scan="tiny/transcoder", allow_topk=activation == "topk")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"] + [f"layer_{i}.safetensors" for i in range(3)]
    config = read_yaml(out / "config.yaml")
    assert config["model_kind"] == "transcoder_set"
    assert (config["feature_input_hook"], config["feature_output_hook"]) == ("mlp.hook_in", "mlp.hook_out")
    assert config["activation_function"] == activation
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(4)) * 2
    for i, d in enumerate(tcs):
        t = load_file(out / f"layer_{i}.safetensors")
        expected = {"W_enc": (40, 16), "W_dec": (40, 16), "b_enc": (40,), "b_dec": (16,)}
        if activation == "jumprelu":
            expected["activation_function.threshold"] = (40,)
        if skip:
            expected["W_skip"] = (16, 16)
        assert {k: tuple(v.shape) for k, v in t.items()} == expected
        assert all(v.dtype == torch.float32 for v in t.values())
        f, y = circuit_tracer_formula(t, x, activation, config.get("k"))
        torch.testing.assert_close(f, d.module.encode(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(y, d.module(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("activation", ["jumprelu", "relu", "topk"])
def test_a_narrower_layer_is_padded_with_features_that_never_fire(tmp_path, activation):
    """circuit-tracer stacks one width for every layer (the shipped set is 1,024 wide at layer 0, 4,096 above)."""
    tcs = [dictionary("transcoder", activation, layer=0, n=40), dictionary("transcoder", activation, layer=1, n=48)]
    out = export_circuit_tracer(tcs, tmp_path / "ct", scan="s", allow_topk=activation == "topk")
    t = load_file(out / "layer_0.safetensors")
    assert t["W_enc"].shape == (48, 16) and t["W_dec"].shape == (48, 16)
    assert not t["W_enc"][40:].any() and not t["W_dec"][40:].any() and not t["b_enc"][40:].any()
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(5)) * 2
    f, y = circuit_tracer_formula(t, x, activation, read_yaml(out / "config.yaml").get("k"))
    torch.testing.assert_close(f[:, :40], tcs[0].module.encode(x), atol=1e-5, rtol=0)
    assert not f[:, 40:].any()
    torch.testing.assert_close(y, tcs[0].module(x), atol=1e-5, rtol=0)


def test_circuit_tracer_export_refuses_what_it_cannot_load(tmp_path):
    topk = [dictionary("transcoder", "topk", layer=i) for i in range(2)]
    with pytest.raises(DictionaryError, match="no TopK loader.*--allow-topk"):
        export_circuit_tracer(topk, tmp_path / "a", scan="s")
    with pytest.raises(DictionaryError, match="transcoder-L0 is not a transcoder of layer 1"):
        export_circuit_tracer([topk[0], topk[0]], tmp_path / "a", scan="s", allow_topk=True)
    with pytest.raises(DictionaryError, match="no transcoders"):
        export_circuit_tracer([], tmp_path / "a", scan="s")
    assert not (tmp_path / "a").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(DictionaryError, match="not a circuit-tracer export"):
        export_circuit_tracer(topk, busy, scan="s", allow_topk=True)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    # an earlier export is replaced whole (no layer file of a longer set left behind)
    export_circuit_tracer([dictionary("transcoder", "relu", layer=i) for i in range(3)], tmp_path / "ct", scan="s")
    export_circuit_tracer([dictionary("transcoder", "relu", layer=i) for i in range(2)], tmp_path / "ct", scan="s")
    assert sorted(p.name for p in (tmp_path / "ct").iterdir()) == ["config.yaml", "layer_0.safetensors",
                                                                   "layer_1.safetensors"]


@pytest.mark.slow  # loads the shipped run (and hashes its weights) five times: ~2.5 s
def test_cli_exports_the_shipped_dictionaries(tmp_path, capsys):
    assert features_cli(["export", str(SHIPPED), "transcoder-L3", str(tmp_path / "sl"), "--format", "saelens"]) == 0
    assert (tmp_path / "sl" / "cfg.json").is_file()
    assert features_cli(["export", str(SHIPPED), "transcoder", str(tmp_path / "all"), "--format", "saelens"]) == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [f"transcoder-L{i}" for i in range(4)]
    assert features_cli(["export", str(SHIPPED), "transcoder", str(tmp_path / "ct"), "--format",
                         "circuit-tracer"]) == 2
    assert "no TopK loader" in capsys.readouterr().err and not (tmp_path / "ct").exists()
    assert features_cli(["export", str(SHIPPED), "transcoder", str(tmp_path / "ct"), "--format", "circuit-tracer",
                         "--allow-topk"]) == 0
    assert len(list((tmp_path / "ct").glob("layer_*.safetensors"))) == 4
    assert features_cli(["export", str(SHIPPED), "nothing", str(tmp_path / "n"), "--format", "saelens"]) == 2
    assert "no dictionary nothing" in capsys.readouterr().err


def write_labels(folder: Path, features: dict, fmt="gpt-explorer feature labels v1"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.json").write_text(json.dumps({"format": fmt, "weak_below": 0.5, "features": features}))


def test_labels_are_read_by_their_format(tmp_path):
    write_labels(tmp_path / "a", {"3": {"label": "an o comes next", "score": 0.83},
                                  "7": {"label": "maybe a vowel", "score": 0.2}, "x": {"label": "bad key"},
                                  "9": {"score": 0.9}})
    assert read_labels(tmp_path / "a") == {3: "an o comes next", 7: "maybe a vowel (weak)"}
    write_labels(tmp_path / "b", {"3": {"label": "x", "score": 1}}, fmt="something else")
    assert read_labels(tmp_path / "b") == {}
    assert read_labels(tmp_path / "missing") == {}
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "labels.json").write_text("{not json")
    assert read_labels(tmp_path / "c") == {}


# ---- graphs ----

def graph_transcoders(model, tmp_path=None):
    tcs = [dictionary("transcoder", "topk", layer=i, n=48) for i in range(model.config.n_layer)]
    for t in tcs:
        t.module.double()
        if tmp_path is not None:
            t.path = tmp_path / t.name
    return tcs


DECODE = (lambda ids: "".join("abcdefghij\nk"[i] for i in ids))


def test_circuit_tracer_json_conforms_and_carries_our_labels(tmp_path):
    model = circuit_model()
    tcs = graph_transcoders(model, tmp_path)
    graph = attribution_graph(model, IDS, tcs).prune()
    feature = next(n for n in graph.nodes if n.kind == "feature" and n.layer == 1)
    write_labels(tmp_path / "transcoder-L1", {str(feature.index): {"label": "a test feature", "score": 0.9}})
    other = next(n for n in graph.nodes if n.kind == "feature" and n.layer == 0)
    data = graph.to_json(decode=DECODE, schema="circuit-tracer", feature_labels=feature_names(tcs),
                         pinned=[feature.key, other.key], supernodes={"pair": [feature.key, other.key]},
                         slug="my graph/1")
    data = json.loads(json.dumps(data))  # plain JSON
    assert schema_errors(data, SCHEMA) == []
    meta = data["metadata"]
    assert meta["slug"] == "my-graph-1" and meta["schema_version"] == 1 and meta["scan"].startswith("custom-")
    assert meta["transcoder_list"] == ["transcoder-L0", "transcoder-L1", "transcoder-L2"]
    assert meta["prompt_tokens"] == [DECODE([t]) for t in IDS] and meta["prompt"] == DECODE(IDS)
    nodes = {n["node_id"]: n for n in data["nodes"]}
    assert len(nodes) == len(data["nodes"]) == len(graph.nodes)
    assert all(link["source"] in nodes and link["target"] in nodes for link in data["links"])
    assert len(data["links"]) == int((graph.adjacency != 0).sum())
    L = model.config.n_layer
    for n in graph.nodes:
        if n.kind == "feature":
            node = nodes[f"{n.layer}_{n.index}_{n.position}"]
            assert node["feature"] == cantor(n.layer, n.index) and node["layer"] == str(n.layer)
            assert node["feature_type"] == "cross layer transcoder" and node["activation"] == pytest.approx(n.activation)
        elif n.kind == "error":
            node = nodes[f"{n.layer}_-1_{n.position}"]
            assert node["feature"] == -1 and node["feature_type"] == "mlp reconstruction error"
        elif n.kind == "embedding":
            node = nodes[f"E_{n.index}_{n.position}"]
            assert node["feature"] == n.position and node["layer"] == "E"
        else:
            node = nodes[f"{L + 1}_{n.index}_{n.position}"]
            assert node["layer"] == str(L + 1) and node["feature"] == n.index and node["ctx_idx"] == len(IDS) - 1
            p = float(re.search(r"\(p=([0-9.]+)\)$", node["clerp"]).group(1))  # what the viewer parses
            assert p == pytest.approx(node["token_prob"], abs=5e-4) and node["clerp"].startswith('Output "')
    assert sum(n["is_target_logit"] for n in data["nodes"]) == 1
    assert nodes[f"1_{feature.index}_{feature.position}"]["clerp"] == "a test feature"
    assert nodes[f"0_{other.index}_{other.position}"]["clerp"] == f"transcoder-L0 #{other.index}"
    q = data["qParams"]
    ids = [f"1_{feature.index}_{feature.position}", f"0_{other.index}_{other.position}"]
    assert q["pinnedIds"] == ids and q["supernodes"] == [["pair", *ids]]
    # influence: the cumulative share at the node's rank over the full graph; the biggest node has the smallest
    share = cumulative_share(attribution_graph(model, IDS, tcs).node_influence())
    kept = [n for n in data["nodes"] if n["feature_type"] != "logit"]
    assert all(0 < n["influence"] <= 1 + 1e-9 for n in kept)
    assert sorted(n["influence"] for n in kept)[0] == pytest.approx(float(share.min()))
    top = max(range(len(graph.nodes)), key=lambda i: float(graph.influence[i]))
    assert data["nodes"][top]["influence"] == pytest.approx(float(share.min()))


def test_to_json_refuses_an_unknown_schema():
    model = circuit_model()
    graph = attribution_graph(model, IDS[:5], graph_transcoders(model))
    with pytest.raises(CircuitError, match="schema must be"):
        graph.to_json(schema="neuronpedia")
    with pytest.raises(CircuitError, match="with slug"):
        graph.to_json(slug="x")  # circuit-tracer's options with our schema: a mistake, said by name
    ours = graph.to_json(decode=DECODE)
    assert "qParams" not in ours and ours["metadata"]["conventions"] == {"demean_unembedding": False,
                                                                         "token_embeddings_only": False}


@pytest.mark.parametrize("variant", ["gpt2", "llama"])
def test_circuit_tracer_conventions_keep_the_graph_exact(variant):
    kw = {} if variant == "gpt2" else {"norm": "rmsnorm", "pos_embedding": "rotary", "bias": False}
    model = circuit_model(**kw)
    tcs = graph_transcoders(model)
    base = attribution_graph(model, IDS, tcs)
    theirs = attribution_graph(model, IDS, tcs, demean_unembedding=True, token_embeddings_only=True)
    assert theirs.conventions == {"demean_unembedding": True, "token_embeddings_only": True}
    assert [n[:4] for n in theirs.nodes] == [n[:4] for n in base.nodes]
    targets = theirs.kind_mask("feature") | theirs.kind_mask("logit")
    torch.testing.assert_close((theirs.adjacency.sum(1) + theirs.bias)[targets], theirs.target_input[targets],
                               atol=1e-6, rtol=0)
    feats, errs, emb, logit = (base.kind_mask(k) for k in ("feature", "error", "embedding", "logit"))
    # feature and error sources into features: the same edges
    torch.testing.assert_close(theirs.adjacency[feats][:, feats | errs], base.adjacency[feats][:, feats | errs])
    # logits: minus the mean logit
    frozen = freeze(model, IDS, tcs)
    raw = frozen.raw_logits[-1]
    torch.testing.assert_close(theirs.target_input[logit], raw[base.logit_ids] - raw.mean())
    if variant == "gpt2":  # a position table: embedding nodes hold the token embedding alone
        assert not torch.allclose(theirs.adjacency[feats][:, emb], base.adjacency[feats][:, emb])
        # ...and the edge from one is its direct effect: remove that token's embedding (the position stays)
        top = next(i for i, n in enumerate(theirs.nodes) if n.kind == "logit" and n.index == theirs.logit_ids[0])
        s = max((i for i, n in enumerate(theirs.nodes) if n.kind == "embedding"),
                key=lambda i: abs(float(theirs.adjacency[top, i])))
        p = theirs.nodes[s].position
        emb_vec = frozen.embeddings.clone()
        emb_vec[p] -= frozen.token_embeddings[p]
        before = replacement_forward(model, frozen, tcs, activations=frozen.activations).raw_logits[-1]
        after = replacement_forward(model, frozen, tcs, embeddings=emb_vec, activations=frozen.activations).raw_logits[-1]
        v = theirs.logit_ids[0]
        effect = float((before[v] - before.mean()) - (after[v] - after.mean()))
        assert math.isclose(effect, float(theirs.adjacency[top, s]), rel_tol=1e-6, abs_tol=1e-9)
    else:  # rotary: no position table, the embedding nodes are the same
        torch.testing.assert_close(theirs.adjacency[feats][:, emb], base.adjacency[feats][:, emb])


@pytest.mark.slow  # where they are installed, importing them takes ~20 s (transformer-lens, transformers)
def test_the_real_libraries_when_installed(tmp_path):
    """Runs only where SAELens and circuit-tracer are installed (never the project's venv: bench/interop.py says how)."""
    sae_lens = pytest.importorskip("sae_lens")
    graph_models = pytest.importorskip("circuit_tracer.frontend.graph_models")
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(5))
    for kind, activation, skip in VARIANTS:
        d = dictionary(kind, activation, skip=skip)
        sae = sae_lens.SAE.load_from_disk(str(export_saelens(d, tmp_path / f"{kind}-{activation}-{skip}")))
        with torch.no_grad():
            torch.testing.assert_close(sae.encode(x), d.module.encode(x), atol=1e-5, rtol=0)
            torch.testing.assert_close(sae(x), d.module(x), atol=1e-5, rtol=0)
    model = circuit_model()
    graph = attribution_graph(model, IDS, graph_transcoders(model)).prune()
    graph_models.Model.model_validate(json.loads(json.dumps(graph.to_json(decode=DECODE, schema="circuit-tracer"))))
