"""A self-contained static HTML report of one run: opens with no network (plotly's JS is embedded, no CDN).

    gpt-report RUN_DIR --out report.html     (or: python -m explorer.report ..., gpt-explorer report ...)

Sections: the configuration, loss curves, an attention overview (every layer x head on one short text),
head-detector scores (gpt.interp.detectors), why this token, the circuit of that prediction (where the run has
transcoders; its graph's JSON embedded) and the samples written at evaluations. The figures are the app's
own builders (explorer/figures), so the report shows what the pages show. Text from the run is
HTML-escaped; the figures are plotly JSON rendered by the embedded plotly.js.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

import torch

from explorer.figures.attention import attention_overview, detector_heatmaps
from explorer.figures.training import loss_curves
from explorer.ui.text import display_text, esc, token_html, token_text
from gpt import runs
from gpt.config import GPTConfig
from gpt.generate import crop_prompt
from gpt.interp.capture import attention_patterns
from gpt.interp.detectors import head_scores
from gpt.sizing import count_params

MAX_ATTENTION_TOKENS = 32  # the overview is L x H small multiples: keep each one small


def attention_text(run_dir: Path, tokenizer, block_size: int) -> str:
    """A short text to show attention on: the latest sample cropped to its last tokens (the one crop policy,
    gpt.generate.crop_prompt), else a fixed phrase."""
    samples = runs.read_jsonl(run_dir / runs.SAMPLES)
    text = next((s["text"] for s in reversed(samples) if isinstance(s.get("text"), str) and s["text"]), "")
    if not text or tokenizer.unknown_chars(text):
        text = "".join(c for c in "To be, or not to be: that is the question." if not tokenizer.unknown_chars(c))
    ids, _ = crop_prompt(tokenizer.encode(text), min(MAX_ATTENTION_TOKENS, block_size))
    return tokenizer.decode(ids)


def attention_figure(model, tokenizer, text: str):
    """Layer x head small multiples of attention weights on `text` (the Attention page's mosaic)."""
    ids = tokenizer.encode(text)
    patterns = attention_patterns(model, torch.tensor([ids]))[0]  # (L, H, T, T)
    return attention_overview(patterns.numpy(), title=f"Attention on {len(ids)} tokens "
                                                     "(rows: layers, columns: heads)", tile_names=True)


def head_score_figure(model):
    scores = head_scores(model)
    fig = detector_heatmaps(scores.scores)
    fig.update_layout(title=f"Head scores on repeated random tokens (in-context gain "
                            f"{scores.in_context_gain:.2f} nats/token)", margin=dict(l=50, r=20, t=80, b=40))
    return fig


def _config_table(cfg: GPTConfig, extra: dict, step: int) -> str:
    rows = {"step": step, "parameters": f"{count_params(cfg):,}", **cfg.to_dict(),
            "tokenizer": extra.get("tokenizer"), "corpus": extra.get("corpus")}
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def dla_html(model, tokenizer, text: str, k: int = 8) -> str:
    """Direct logit attribution of the model's next-token guess after `text` (gpt/interp/attribution.py), as a
    table of the k largest parts: the report's "why this token" for its sample prompt."""
    from gpt.interp.attribution import describe_top_heads, direct_logit_attribution, predicted_token
    ids = tokenizer.encode(text)
    target = predicted_token(model, ids, -1)
    result = direct_logit_attribution(model, ids, -1, target)
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{value:+.3f}</td></tr>" for name, value in result.top(k))
    shown = token_html(tokenizer, target)
    cap = f" (before the soft cap {result.softcap:g})" if result.softcap else ""
    return (f"<h2>Why this token</h2><p>After <code>{esc(display_text(text[-40:]))}</code> the model's first guess is "
            f"<code>{shown}</code>, logit {result.total:.2f}{cap}. The parts that wrote it most directly (through the "
            f"final norm with its scale frozen; all parts sum to the logit):</p>"
            f"<table><tr><th>part</th><th>contribution</th></tr>{rows}</table>"
            f"<p>{html.escape(describe_top_heads(result))}</p>")


def circuit_section(run_dir: Path, model, tokenizer, text: str):
    """(figure or None, HTML) of the attribution graph of the next token after `text` (gpt.interp.circuits), with
    the pruned graph's JSON embedded (circuit-tracer-like, see AttributionGraph.to_json), where the run has a
    transcoder per layer; else a line saying why there is none."""
    from explorer.figures.circuit import circuit_figure, circuit_view, node_label
    from gpt.interp.circuits import CircuitError, attribution_graph, load_transcoders
    try:
        transcoders = load_transcoders(run_dir, model)
    except CircuitError as e:
        return None, f"<h2>Circuit</h2><p><em>{html.escape(str(e))}</em></p>"
    ids = tokenizer.encode(text)
    graph = attribution_graph(model, ids, transcoders).prune()
    tokens = [token_text(tokenizer, i) for i in ids]
    labels = {n.key: node_label(n, token_text(tokenizer, n.index) if n.kind == "logit" else tokens[n.position])
              for n in graph.nodes}
    nodes, edges = circuit_view(graph, labels)
    data = json.dumps(graph.to_json(tokenizer=tokenizer, metadata={"model": run_dir.resolve().name}))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return circuit_figure(nodes, edges, tokens, model.config.n_layer), (
        f"<h2>Circuit</h2><p>The attribution graph of the guess after <code>{esc(display_text(text[-40:]))}</code>: "
        f"{sum(n.kind == 'feature' for n in graph.nodes)} transcoder features kept (replacement score "
        f"{graph.replacement_score():.2f}). The figure is above; the graph itself is embedded as JSON in the "
        f"element <code>#circuit-graph</code> of this file.</p>"
        f'<script type="application/json" id="circuit-graph">{data}</script>')


def script_json(fig) -> str:
    """Figure JSON safe inside <script>: token text such as '</script>' cannot end the element."""
    return fig.to_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def report_html(run_dir: str | Path, max_samples: int = 5, include_dla: bool = True) -> str:
    """The whole report as one HTML string (several MB: plotly.js is inside). include_dla adds the direct logit
    attribution of the next token after the attention text (the sample prompt)."""
    import plotly.offline
    run_dir = Path(run_dir)
    run = runs.load_run(run_dir)
    metrics = runs.read_jsonl(run_dir / runs.METRICS)
    samples = runs.read_jsonl(run_dir / runs.SAMPLES)[-max_samples:]
    figures = [loss_curves({run_dir.name: metrics}, "Loss")]
    notes = []
    text = attention_text(run_dir, run.tokenizer, run.config.block_size)
    why_html = dla_html(run.model, run.tokenizer, text) if include_dla and text else ""
    if run.config.has_attention:
        if text:
            figures.append(attention_figure(run.model, run.tokenizer, text))
        try:
            figures.append(head_score_figure(run.model))
        except ValueError as e:  # e.g. a vocabulary too small for the probe
            notes.append(f"head scores unavailable: {e}")
    else:
        notes.append("a bigram model has no attention heads")
    circuit_html = ""
    if include_dla and text and run.config.has_mlp and run.config.has_attention:
        circuit_fig, circuit_html = circuit_section(run_dir, run.model, run.tokenizer, text)
        if circuit_fig is not None:
            figures.append(circuit_fig)
    divs = "\n".join(f'<div class="fig" id="fig{i}"></div>' for i in range(len(figures)))
    plots = "\n".join(f"var f{i} = {script_json(fig)}; Plotly.newPlot('fig{i}', f{i}.data, f{i}.layout);"
                      for i, fig in enumerate(figures))
    sample_html = "".join(f"<h3>step {html.escape(str(s.get('step')))}</h3><pre>{html.escape(str(s.get('text')))}</pre>"
                          for s in samples) or "<p>No samples were written.</p>"
    note_html = "".join(f"<p><em>{html.escape(n)}</em></p>" for n in notes)
    title = html.escape(run_dir.resolve().name)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>GPT Explorer report: {title}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:">
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse}}th,td{{border:1px solid #ccc;padding:2px 8px;text-align:left}}
pre{{white-space:pre-wrap;background:#f6f6f6;padding:8px}}</style>
<script>{plotly.offline.get_plotlyjs()}</script></head>
<body><h1>{title}</h1><h2>Configuration</h2>{_config_table(run.config, run.extra, run.step)}
<h2>Figures</h2>{note_html}{divs}{why_html}{circuit_html}<h2>Samples</h2>{sample_html}
<script>{plots}</script></body></html>
"""


def write_report(run_dir: str | Path, out: str | Path) -> Path:
    out = Path(out)
    runs.atomic_write_text(out, report_html(run_dir))
    return out


def main(argv: list[str] | None = None) -> int:
    """The report's command. It lives on the app's side because its figures are the app's: the library (gpt/)
    never imports explorer (tests/test_layering.py), so `gpt.runs.bundle export` no longer writes it."""
    p = argparse.ArgumentParser(prog="gpt-report", description="Write a run's self-contained, offline HTML report "
                                "(config, loss curves, attention, head scores, why this token, samples).")
    p.add_argument("run", help="the run folder, e.g. checkpoints/shakespeare-char")
    p.add_argument("--out", required=True, help="the HTML file to write")
    args = p.parse_args(argv)
    try:
        print(write_report(args.run, args.out))
    except runs.RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
