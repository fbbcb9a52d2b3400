"""The field's tools open our files (issue 29 item 4), checked with the real libraries: SAELens and circuit-tracer.

They are not project dependencies (they pull transformer-lens, transformers, nnsight...): install them into a scratch
venv and run this file with its python from the repository root, with the repository and tests/ (its random
dictionaries and schema check) on PYTHONPATH:

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install torch==2.13.0
    /tmp/peers/bin/pip install sae-lens==6.54.12 circuit-tracer==0.5.0
    PYTHONPATH=.:tests /tmp/peers/bin/python bench/interop.py [--threads 1]

1. SAELens: every dictionary of the shipped model, and random ones of each other kind (JumpReLU/ReLU SAEs and
   transcoders, skip transcoders), written with `gpt-features export --format saelens`, loaded with
   `SAE.load_from_disk`; max |diff| of encode, decode and the full output against ours (shipped dictionaries on the
   model's own activations over 2,048 validation tokens, random ones on random inputs).
2. circuit-tracer: the shipped transcoders (TopK, activation set after loading as the README says) and random
   JumpReLU / ReLU / skip sets, written with `--format circuit-tracer`, loaded with `load_transcoders_from_cache`;
   max |diff| of encode and decode.
3. The graph JSON: the README's worked example as `to_json(schema="circuit-tracer")`, validated by circuit-tracer's
   own pydantic Model and by the schema the tests use (tests/data/circuit_tracer_graph_schema.json); written with
   graph-metadata.json into a folder `circuit-tracer start-server --graph_file_dir` serves.
4. Edges: circuit-tracer's own `attribute()` on the shipped model (exported with `python -m gpt.hf export`, loaded
   into its TransformerLens replacement model unfolded) with the exported transcoders, against our
   `attribution_graph` with our conventions and with circuit-tracer's; max |diff| per kind of edge, over sources
   after position 0 (circuit-tracer treats position 0 as BOS and drops its features and error nodes).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from common import ROOT
from interop_support import random_loaded_dictionary

from gpt.interp.features.export import export_circuit_tracer, export_saelens

RUN = ROOT / "checkpoints" / "shakespeare-char"
PROMPT = "JULIET:\nO Romeo, Romeo! wherefore art thou Rome"


class TopKReLU(torch.nn.Module):
    """Our TopK (the k largest pre-activations, then ReLU) as a circuit-tracer activation function."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        top = x.topk(self.k, dim=-1)
        return torch.zeros_like(x).scatter(-1, top.indices, top.values.relu())


def random_dictionary(kind, activation, layer=0, C=32, n=64, skip=False, seed=0):
    name = f"{kind}-{activation}{'-skip' if skip else ''}-L{layer}"
    return random_loaded_dictionary(kind, activation, layer, C, n, 8, skip, seed + layer, name)


def shipped_inputs(run, n_tokens=2048):
    from gpt.data import load_corpus, split_ids
    from gpt.interp.capture import run_with_cache
    text, _ = load_corpus(str(run.extra.get("corpus")))
    val = split_ids(run.tokenizer.encode(text), run.config.block_size).val
    T = run.config.block_size
    ids = torch.as_tensor(val[: (n_tokens // T) * T]).view(-1, T)
    names = {f"blocks.{i}.{s}" for i in range(run.config.n_layer) for s in ("mlp.in", "resid_mid")}
    return {k: v.reshape(-1, v.size(-1)) for k, v in run_with_cache(run.model, ids, names).acts.items()}


def ours(d, x):
    f = d.module.encode(x)
    return f, d.module.decode(f), d.module(x)


def check_saelens(dictionaries, inputs, tmp: Path) -> list[tuple]:
    from sae_lens import SAE
    rows = []
    for d in dictionaries:
        folder = export_saelens(d, tmp / "saelens" / d.name)
        sae = SAE.load_from_disk(str(folder))
        x = inputs(d)
        f, y, full = ours(d, x)
        with torch.no_grad():
            f2 = sae.encode(x)
            y2 = sae.decode(f2)
            full2 = sae(x)
        rows.append((d.name, type(sae).__name__, float((f - f2).abs().max()), float((y - y2).abs().max()),
                     float((full - full2).abs().max()), float(full.abs().max())))
    return rows


def check_circuit_tracer(sets, inputs, tmp: Path) -> list[tuple]:
    from circuit_tracer.utils.caching import load_transcoders_from_cache
    rows = []
    for label, transcoders in sets:
        out = tmp / "ct" / label
        export_circuit_tracer(transcoders, out, scan=label, allow_topk=True)
        tset, _ = load_transcoders_from_cache(out.name, cache_dir=out.parent, device=torch.device("cpu"),
                                              dtype=torch.float32, lazy_decoder=False)
        worst_f = worst_y = scale = 0.0
        for layer, d in enumerate(transcoders):
            t = tset[layer]
            if d.config.activation == "topk":  # circuit-tracer 0.5 reads TopK files as ReLU: set it (README)
                t.activation_function = TopKReLU(d.config.k)
            x = inputs(d)
            f, y, _ = ours(d, x)
            with torch.no_grad():
                f2 = t.encode(x)
                y2 = t.decode(f2, x)
            worst_f = max(worst_f, float((f - f2).abs().max()))
            worst_y = max(worst_y, float((d.module(x) - y2).abs().max()))
            scale = max(scale, float(y.abs().max()))
        rows.append((label, type(tset).__name__, type(tset[0].activation_function).__name__, worst_f, worst_y, scale))
    return rows


def check_graph(tmp: Path):
    from circuit_tracer.frontend.graph_models import Model
    from schema_check import schema_errors  # the tests' validator of the derived schema

    from gpt.interp.circuits import attribution_graph, load_transcoders
    from gpt.interp.circuits.export import graph_metadata
    from gpt.interp.features.export import feature_names
    from gpt.runs import load_run
    run = load_run(RUN)
    tcs = load_transcoders(run.path, run.model)
    ids = run.tokenizer.encode(PROMPT)
    results = {}
    for label, opts in (("ours", {}), ("circuit-tracer conventions",
                                       {"demean_unembedding": True, "token_embeddings_only": True})):
        graph = attribution_graph(run.model, ids, tcs, **opts).prune()
        data = json.loads(json.dumps(graph.to_json(decode=run.tokenizer.decode, schema="circuit-tracer",
                                                   feature_labels=feature_names(tcs), slug=f"romeo-{label[:4]}")))
        model = Model.model_validate(data)
        schema = json.loads((ROOT / "tests" / "data" / "circuit_tracer_graph_schema.json").read_text())
        results[label] = (len(model.nodes), len(model.links), len(schema_errors(data, schema)))
        folder = tmp / "graphs"
        folder.mkdir(exist_ok=True)
        (folder / f"{data['metadata']['slug']}.json").write_text(json.dumps(data))
        meta = folder / "graph-metadata.json"
        listing = json.loads(meta.read_text()) if meta.exists() else {"graphs": []}
        listing["graphs"].append(graph_metadata(data))
        meta.write_text(json.dumps(listing, indent=1))
    return results, tmp / "graphs"


def check_edges(tmp: Path, ct_folder: Path, prompt: str = PROMPT) -> tuple[float, dict]:
    import time

    from circuit_tracer import attribute
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.utils.caching import load_transcoders_from_cache
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights
    from transformers import GPT2LMHeadModel

    from gpt.hf.gpt2 import export_gpt2
    from gpt.interp.circuits import attribution_graph, load_transcoders
    from gpt.runs import load_run
    run = load_run(RUN)
    c = run.config
    hf = GPT2LMHeadModel.from_pretrained(str(export_gpt2(RUN, tmp / "hf"))).eval()
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_heads=c.n_head, d_head=c.n_embd // c.n_head, d_mlp=4 * c.n_embd,
        n_ctx=c.block_size, d_vocab=c.vocab_size, act_fn="gelu", normalization_type="LN", eps=c.layer_norm_eps,
        positional_embedding_type="standard", original_architecture="GPT2LMHeadModel", default_prepend_bos=False,
        model_name=RUN.name, device="cpu", dtype=torch.float32)
    tset, _ = load_transcoders_from_cache(ct_folder.name, cache_dir=ct_folder.parent, device=torch.device("cpu"),
                                          dtype=torch.float32, lazy_decoder=False)
    tcs = load_transcoders(run.path, run.model)
    for t, d in zip(tset, tcs):
        t.activation_function = TopKReLU(d.config.k)
    model = TransformerLensReplacementModel(cfg)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    model._configure_replacement_model(tset)

    class Tokenizer:  # what attribute() asks of a tokenizer: our char tokenizer behind it
        vocab_size, padding_side = c.vocab_size, "right"

        def decode(self, ids):
            return run.tokenizer.decode([ids] if isinstance(ids, int) else list(ids))

    ids = run.tokenizer.encode(prompt)
    model.tokenizer = Tokenizer()
    # circuit-tracer prepends a BOS (pad, eos) to a prompt whose first token is not special; a char model has none,
    # so the first character counts as special: the prompt stays as is (its position 0 is dropped, as a BOS's)
    model.tokenizer.all_special_ids = [ids[0]]
    t0 = time.perf_counter()
    g = attribute(torch.tensor(ids), model, max_n_logits=10, desired_logit_prob=0.95, batch_size=256)
    seconds = time.perf_counter() - t0
    T, L = len(ids), c.n_layer
    keys = [f"{layer}_{f}_{p}" for layer, p, f in (g.active_features[g.selected_features[i]].tolist()
                                                   for i in range(len(g.selected_features)))]
    keys += [f"{layer}_err_{p}" for layer in range(L) for p in range(T)] + [f"E_{ids[p]}_{p}" for p in range(T)]
    keys += [f"L_{t.vocab_idx}_{T - 1}" for t in g.logit_targets]
    results = {}
    t0 = time.perf_counter()
    attribution_graph(run.model, ids, tcs)
    results["ours_seconds"] = time.perf_counter() - t0
    for label, opts in (("ours", {}), ("ct", {"demean_unembedding": True, "token_embeddings_only": True})):
        graph = attribution_graph(run.model, ids, tcs, **opts)
        index = {n.key: i for i, n in enumerate(graph.nodes)}
        mine = torch.tensor([index[k] for k in keys])  # KeyError = a node of theirs we do not have
        theirs_a, ours_a = g.adjacency_matrix.double(), graph.adjacency[mine][:, mine].double()
        kind = [graph.nodes[i].kind for i in mine.tolist()]
        after0 = torch.tensor([graph.nodes[i].position > 0 for i in mine.tolist()])
        for tk in ("feature", "logit"):
            for sk in ("feature", "error", "embedding"):
                tm = torch.tensor([k == tk for k in kind])
                sm = torch.tensor([k == sk for k in kind]) & after0
                diff = float((theirs_a[tm][:, sm] - ours_a[tm][:, sm]).abs().max())
                results[label, f"{sk} -> {tk}"] = (diff, float(ours_a[tm][:, sm].abs().max()))
    return seconds, results, len(keys)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep", default=None, help="write the exports here instead of a temporary folder")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import circuit_tracer
    import sae_lens

    from gpt.interp.features.dictionary import list_dictionaries
    from gpt.runs import load_run
    print(f"sae_lens {sae_lens.__version__}, circuit-tracer "
          f"{getattr(circuit_tracer, '__version__', '?')}, torch {torch.__version__}")
    run = load_run(RUN)
    shipped, _ = list_dictionaries(run.path, run.config)
    acts = shipped_inputs(run)
    g = torch.Generator().manual_seed(1)
    rand = torch.randn(4096, 32, generator=g)

    def inputs(d):
        return acts[d.config.input] if d.path != Path(".") else rand

    synthetic = [random_dictionary(k, a, skip=s) for k, a, s in
                 (("sae", "jumprelu", False), ("sae", "relu", False), ("sae", "topk", False),
                  ("transcoder", "jumprelu", False), ("transcoder", "relu", False),
                  ("transcoder", "relu", True), ("transcoder", "jumprelu", True), ("transcoder", "topk", False))]
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(args.keep or t)
        print("\nSAELens SAE.load_from_disk (max |ours - theirs|; scale = max |output|)")
        print("| dictionary | SAELens class | encode | decode | output | scale |\n| --- | --- | --- | --- | --- | --- |")
        for r in check_saelens(shipped + synthetic, inputs, tmp):
            print(f"| {r[0]} | {r[1]} | {r[2]:.1e} | {r[3]:.1e} | {r[4]:.1e} | {r[5]:.1f} |")
        sets = [("shipped-topk", [d for d in shipped if d.config.kind == "transcoder"])]
        for act, skip in (("jumprelu", False), ("relu", False), ("relu", True), ("jumprelu", True)):
            sets.append((f"random-{act}{'-skip' if skip else ''}",
                         [random_dictionary("transcoder", act, layer=i, skip=skip) for i in range(3)]))
        print("\ncircuit-tracer load_transcoders_from_cache (max over layers of |ours - theirs|)")
        print("| set | class | activation | encode | decode | scale |\n| --- | --- | --- | --- | --- | --- |")
        for r in check_circuit_tracer(sets, inputs, tmp):
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1e} | {r[4]:.1e} | {r[5]:.1f} |")
        results, folder = check_graph(tmp)
        print("\ngraph JSON of the worked example: circuit-tracer's pydantic Model.model_validate passes")
        for label, (n, e, errors) in results.items():
            print(f"  {label}: {n} nodes, {e} links; derived-schema errors: {errors}")
        seconds, edges, n = check_edges(tmp, tmp / "ct" / "shipped-topk")
        print(f"\ncircuit-tracer attribute() on the worked example: {n} nodes in {seconds:.1f} s, ours "
              f"{edges.pop('ours_seconds'):.2f} s (1 thread); "
              "max |theirs - ours| per kind of edge (sources after position 0), largest edge beside it")
        print("| edges | our conventions | circuit-tracer's conventions | largest edge |\n| --- | --- | --- | --- |")
        for kind in dict.fromkeys(k for _, k in edges):
            print(f"| {kind} | {edges['ours', kind][0]:.1e} | {edges['ct', kind][0]:.1e} "
                  f"| {edges['ours', kind][1]:.2f} |")
        print(f"  viewer: circuit-tracer start-server --graph_file_dir {folder} ({'kept' if args.keep else 'removed at exit: pass --keep DIR to view it'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
