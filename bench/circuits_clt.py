"""Per-layer transcoders (PLTs) against a cross-layer transcoder (CLT) on the same model: the attribution graph of the
README's worked example and of a few validation windows from each, side by side (issue 29 item 3).

For every prompt and both dictionaries: active features, the pruned graph's node count (the page's thresholds,
0.8 / 0.98), its replacement score, the full graph's completeness score, the most influential feature, the seconds
to build the graph, and the two exactness checks (the replacement model's logits against the model's, edges +
bias against every target's input, relative where the input is large; the logits with the features held at their
activations, as the graph's linear model has them, and recomputed, as interventions run). Then each dictionary's CE loss recovered
with every MLP replaced at once, from its metrics.json (`gpt-features eval` writes it).

usage: python bench/circuits_clt.py RUN_DIR [--clt NAME] [--windows 4] [--tokens 64] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

PROMPT = "JULIET:\nO Romeo, Romeo! wherefore art thou Rome"


def measure(model, ids, dictionaries) -> dict:
    from gpt.interp.circuits import attribution_graph
    from gpt.interp.circuits.replacement import freeze, replacement_forward
    t0 = time.perf_counter()
    graph = attribution_graph(model, ids, dictionaries)
    seconds = time.perf_counter() - t0
    pruned = graph.prune(0.8, 0.98)
    targets = graph.kind_mask("feature") | graph.kind_mask("logit")
    total = (graph.adjacency.sum(1) + graph.bias)[targets]
    exact = float(((total - graph.target_input[targets]).abs() / graph.target_input[targets].abs().clamp(min=1)).max())
    frozen = freeze(model, ids, dictionaries)
    with torch.no_grad():
        real = model(torch.tensor([ids]))[0][0, -1]
    # the graph's model (features held at their activations), and the replacement model recomputing its features
    # (what interventions run): TopK can swap the k-th and (k+1)-th feature where their pre-activations tie within
    # fp32 noise, which moves the output by that feature's size
    held = replacement_forward(model, frozen, dictionaries, activations=frozen.activations).logits[-1]
    recomputed = replacement_forward(model, frozen, dictionaries).logits[-1]
    logit_diff = float((held - real).abs().max())
    recomputed_diff = float((recomputed - real).abs().max())
    feats = [(float(v), n) for n, v in zip(pruned.nodes, pruned.influence) if n.kind == "feature"]
    top = max(feats, key=lambda x: x[0]) if feats else (0.0, None)
    return {"features": int(graph.kind_mask("feature").sum()), "nodes": len(pruned.nodes),
            "kept_features": int(pruned.kind_mask("feature").sum()), "replacement": pruned.replacement_score(),
            "completeness": graph.completeness_score(), "seconds": seconds, "edges_bias_rel": exact,
            "logit_diff": logit_diff, "recomputed_diff": recomputed_diff, "top": (f"L{top[1].layer} #{top[1].index} @{top[1].position} ({top[0]:.2f})"
                                              if top[1] else "-"),
            "p_top": float(graph.logit_probs[0]), "token": graph.logit_ids[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--clt", default=None, help="the CLT's folder name (default: the first)")
    p.add_argument("--windows", type=int, default=4, help="validation windows besides the worked example")
    p.add_argument("--tokens", type=int, default=64, help="tokens per validation window")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from gpt.interp.circuits.replacement import load_crosslayer_transcoder, load_transcoders
    from gpt.interp.features.cli import training_splits
    from gpt.runs import load_run
    run = load_run(args.run_dir)
    plts = load_transcoders(run.path, run.model)
    clt = load_crosslayer_transcoder(run.path, run.model, args.clt)
    val = training_splits(run, None).val
    prompts = [("worked example", run.tokenizer.encode(PROMPT))]
    step = max(1, (len(val) - args.tokens) // max(1, args.windows))
    prompts += [(f"validation @{i * step}", val[i * step:i * step + args.tokens].tolist()) for i in range(args.windows)]
    print("| prompt | dictionary | active features | pruned nodes (features) | replacement score | completeness | "
          "top feature (influence) | graph s | max rel. edges+bias err | max logit err, held | "
          "recomputed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    sums = {"PLTs": [], clt.name: []}
    for label, ids in prompts:
        for name, dictionaries in (("PLTs", plts), (clt.name, clt)):
            m = measure(run.model, ids, dictionaries)
            sums[name].append(m)
            print(f"| {label} | {name} | {m['features']:,} | {m['nodes']} ({m['kept_features']}) | "
                  f"{m['replacement']:.3f} | {m['completeness']:.3f} | {m['top']} | {m['seconds']:.2f} | "
                  f"{m['edges_bias_rel']:.1e} | {m['logit_diff']:.1e} | {m['recomputed_diff']:.1e} |", flush=True)
    for name, ms in sums.items():
        mean = {k: sum(m[k] for m in ms) / len(ms) for k in ("nodes", "replacement", "completeness", "features")}
        print(f"mean over {len(ms)} prompts, {name}: nodes {mean['nodes']:.0f}, replacement {mean['replacement']:.3f}, "
              f"completeness {mean['completeness']:.3f}, active features {mean['features']:.0f}")
    for name, path in (("PLTs", plts[0].path), (clt.name, clt.path)):
        try:
            m = json.loads((path / "metrics.json").read_text())
            print(f"{name}: CE loss recovered with every MLP replaced {m['ce_loss_recovered_all']:.3f} "
                  f"(clean {m['loss_clean']:.3f}, replaced {m['loss_spliced_all']:.3f}, zero {m['loss_zero_all']:.3f})")
        except (OSError, KeyError, ValueError):
            print(f"{name}: no every-MLP-replaced metrics yet (gpt-features eval {run.path})")


if __name__ == "__main__":
    main()
