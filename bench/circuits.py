"""Attribution graphs on the shipped model with its shipped transcoders (issue 20: a 64-token prompt in <= 5 s wall
on 2 cores and <= 2 GB; the page draws the pruned graph in <= 1 s).

For T = 16, 32, 64, 128 tokens of the validation text, each in a fresh process (so peak memory is its own):
`attribution_graph` (one batched backward per chunk of targets through the frozen attention layers), `prune()`,
the page's figure (circuit_view + circuit_figure + its JSON), the number of active features, nodes and edges, and
peak resident memory. The peer, in the same process and interleaved: the straightforward way, one autograd backward
per target through the replacement model (features as leaves), timed on 48 targets and scaled to all of them; its
edges are checked against ours on those targets.

usage: python bench/circuits.py [--rounds 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import machine, median, table

RUN = Path(__file__).resolve().parent.parent / "checkpoints" / "shakespeare-char"
NAIVE_TARGETS = 48


def naive_edges(model, frozen, transcoders, graph, rows):
    """Edges into `rows` (target node indices) by one autograd backward each: the straightforward peer."""
    from gpt.interp.circuits.replacement import replacement_forward
    forward = replacement_forward.__wrapped__  # without its no_grad
    acts = [a.clone().requires_grad_(True) for a in frozen.activations]
    emb = frozen.embeddings.clone().requires_grad_(True)
    errs = frozen.errors.clone().requires_grad_(True)
    kinds = [n.kind for n in graph.nodes]
    feat = torch.tensor([i for i, k in enumerate(kinds) if k == "feature"])
    f_layer, f_pos, f_idx = (torch.tensor([getattr(graph.nodes[i], a) for i in feat.tolist()])
                             for a in ("layer", "position", "index"))
    f_act = torch.tensor([graph.nodes[i].activation for i in feat.tolist()])
    err = torch.tensor([i for i, k in enumerate(kinds) if k == "error"])
    e_layer = torch.tensor([graph.nodes[i].layer for i in err.tolist()])
    e_pos = torch.tensor([graph.nodes[i].position for i in err.tolist()])
    emb_rows = torch.tensor([i for i, k in enumerate(kinds) if k == "embedding"])
    with torch.enable_grad():
        out = forward(model, frozen, transcoders, embeddings=emb, errors=errs, activations=acts)
        result = torch.zeros(len(rows), len(graph.nodes))
        for r, row in enumerate(rows):
            n = graph.nodes[row]
            value = (out.pre_activations[n.layer][n.position, n.index] if n.kind == "feature"
                     else out.raw_logits[-1, n.index])
            grads = torch.autograd.grad(value, [emb, errs] + acts, retain_graph=True, allow_unused=True)
            g_emb, g_err = grads[0], grads[1]
            g_acts = torch.stack([g if g is not None else torch.zeros_like(a) for g, a in zip(grads[2:], acts)])
            result[r, feat] = g_acts[f_layer, f_pos, f_idx] * f_act
            result[r, err] = (g_err[e_layer, e_pos] * errs.detach()[e_layer, e_pos]).sum(-1)
            result[r, emb_rows] = (g_emb * emb.detach()).sum(-1)
    return result


def one(T: int, rounds: int) -> dict:
    from explorer.figures.circuit import circuit_figure, circuit_view, node_label
    from gpt.evaluate import run_validation_ids
    from gpt.interp.circuits import attribution_graph, load_transcoders
    from gpt.interp.circuits.replacement import freeze
    from gpt.runs import load_run
    from gpt.token_display import display_token
    run = load_run(RUN)
    tcs = load_transcoders(RUN, run.model)
    val = run_validation_ids(run)
    ids = val[1000:1000 + T].tolist()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    graph_s, prune_s, naive_s, figure_s = [], [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        graph = attribution_graph(run.model, ids, tcs)
        t1 = time.perf_counter()
        pruned = graph.prune()
        t2 = time.perf_counter()
        graph_s.append(t1 - t0)
        prune_s.append(t2 - t1)
        tokens = [display_token(run.tokenizer, i) for i in ids]
        labels = {n.key: node_label(n, tokens[n.position]) for n in pruned.nodes}
        t3 = time.perf_counter()
        nodes, edges = circuit_view(pruned, labels)
        circuit_figure(nodes, edges, tokens, run.config.n_layer).to_json()
        figure_s.append(time.perf_counter() - t3)
        frozen = freeze(run.model, ids, tcs)
        targets = [i for i, n in enumerate(graph.nodes) if n.kind in ("feature", "logit")]
        rows = targets[-NAIVE_TARGETS:]  # the top layers' features and the logits: the longest backward paths
        t4 = time.perf_counter()
        theirs = naive_edges(run.model, frozen, tcs, graph, rows)
        naive_s.append((time.perf_counter() - t4) * len(targets) / len(rows))
        worst = float((theirs - graph.adjacency[rows]).abs().max())  # the two agree
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"T": T, "features": sum(n.kind == "feature" for n in graph.nodes), "nodes": len(graph.nodes),
            "edges": int((graph.adjacency != 0).sum()), "kept": len(pruned.nodes), "graph_s": median(graph_s),
            "prune_s": median(prune_s), "figure_s": median(figure_s), "naive_s": median(naive_s),
            "agree": worst, "rss_mb": peak, "base_mb": base_rss}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(args.one, args.rounds)))
        return
    results = []
    for T in (16, 32, 64, 128):
        out = subprocess.run([sys.executable, __file__, "--one", str(T), "--rounds", str(args.rounds), "--threads",
                              str(args.threads)], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(machine())
    rows = [[r["T"], r["features"], r["nodes"], f"{r['edges']:,}", r["kept"], r["graph_s"], r["prune_s"],
             r["graph_s"] + r["prune_s"], r["figure_s"], r["naive_s"], f"{r['naive_s'] / r['graph_s']:.0f}x",
             f"{r['agree']:.1e}", f"{r['rss_mb']:,.0f}"] for r in results]
    print(table(["T", "features", "nodes", "edges", "kept", "graph s", "prune s", "total s", "figure s",
                 "per-target autograd s", "speed-up", "max |diff|", "peak RSS MB"], rows))
    a, b = results[0], results[-1]
    print(f"from T={a['T']} to T={b['T']}: features x{b['features'] / a['features']:.1f}, graph time "
          f"x{b['graph_s'] / a['graph_s']:.1f}, edges x{b['edges'] / a['edges']:.1f}")


if __name__ == "__main__":
    main()
