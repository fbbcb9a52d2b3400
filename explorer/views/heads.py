"""Heads & detectors: which heads are previous-token, sink, duplicate-token or induction heads."""
import streamlit as st

from explorer.figures.attention import attention_heatmap, detector_heatmaps
from explorer.ui.cache import run_eval_text, run_head_scores
from explorer.ui.eval_text import chosen_source, eval_caption, eval_key
from explorer.ui.run_picker import selected_attention_run
from explorer.ui.state import bind, remember
from explorer.ui.text import token_text
from gpt.data import CorpusError
from gpt.evaltext import RUN_SPLIT
from gpt.interp.capture import InterpError, attention_patterns
from gpt.interp.detectors import (
    DETECTORS,
    LABELS,
    PROBES,
    STRONGEST_RULE,
    build_probe,
    describe_heads,
    detector_grid,
    repeated_passage,
    strongest_head,
)

run = selected_attention_run("Heads & detectors", "no attention heads")
cfg = run.config
st.caption(f"Model **{run.path.name}** at step {run.step:,}: {cfg.n_layer} layer(s) × {cfg.effective_n_head} "
           "head(s). Each score is the share of a head's attention that lands where a known circuit would look.")


c1, c2 = st.columns([3, 1])
# a run trained here is probed on its own held-out text by default (text like what it learned from); a model that
# records no corpus (GPT-2) on TransformerLens' standard probe, repeated random tokens, which needs no text at all
default_probe = PROBES[1] if chosen_source(run) == RUN_SPLIT else PROBES[0]
kind = c1.radio("Probe", PROBES, horizontal=True, **bind("probe", default_probe, options=PROBES),
                help="Repeated validation text: passages of the evaluation text (the sidebar's choice), each followed "
                     "by itself, text like what the model learned from. Random tokens are the papers' probe (nothing "
                     "but copying can predict them), but a small model may hardly attend on them at all.")
seed = c2.number_input("Probe seed", 0, 10_000, help="Which random sequence (or passage) the detectors use",
                       **bind("probe_seed", 0, options=range(10_001)))
try:
    result = run_head_scores(run.path, probe_kind=kind, probe_seed=int(seed), eval_key=eval_key(run))
    scores, gain = result.scores, result.in_context_gain
    val = run_eval_text(run.path, *eval_key(run)) if kind == PROBES[1] else None
except (CorpusError, InterpError, OSError) as e:
    st.info(f"Cannot build the text probe: {e}. Choose another evaluation text in the sidebar, or the random-token "
            "probe, which needs no text.")
    st.stop()
threshold = st.slider("Name a head when its score is at least", 0.1, 0.9, 0.4, 0.05)
found = describe_heads(scores, threshold)
if found:
    st.markdown("**Found:** " + "; ".join(found[:12]) + ("" if len(found) <= 12 else f"; and {len(found) - 12} more"))
else:
    st.markdown(f"**No head scores {threshold:.2f} or more on any detector** (early in training that is normal).")
st.plotly_chart(detector_heatmaps(scores), key="detector_grid")
st.caption(
    f"Probe: {kind} (a sequence followed by itself), filling the context. **previous-token**: weight on the "
    "token just before. **first-token (sink)**: weight on position 0 (often a head's way of doing nothing). "
    "**duplicate-token**: weight on earlier copies of the current token. **induction**: in the second copy, the "
    "weight each token puts on the token that *followed* its earlier copy (TransformerLens' induction pattern) — "
    f"the move that lets a model continue a pattern it has seen once. In-context gain on the probe: loss falls by **{gain:.2f} nats/token** in the second copy "
    "(a model with induction heads predicts the repeat)." + (" " + eval_caption(val) if val is not None else ""))

st.subheader("Look at one head on the probe")
c1, c2, c3 = st.columns([2, 2, 3], vertical_alignment="bottom")
layer = c1.selectbox("Layer", range(cfg.n_layer), format_func=lambda i: f"layer {i}",
                     **bind("layer", 0, options=range(cfg.n_layer)))
head = c2.selectbox("Head", range(cfg.effective_n_head), format_func=lambda i: f"head {i}",
                    **bind("head", 0, options=range(cfg.effective_n_head)))
ind_layer, ind_head, ind_score = strongest_head(detector_grid(scores, "induction"))
if (layer, head) != (ind_layer, ind_head) and c3.button(
        f"Show the strongest induction head, L{ind_layer}H{ind_head} ({ind_score:.2f})", key="heads_show_induction",
        help=f"The strongest head is the one with {STRONGEST_RULE[False]} on that detector."):
    remember("layer", ind_layer)
    remember("head", ind_head)
    st.rerun()
half = max(2, min(24, cfg.block_size // 2))  # short enough to read, with the repeat in view
# the probe the scores above used, cut to a readable length: its first half-length tokens and their repeat
full = build_probe(run.model, kind, int(seed), val.ids if val is not None else None)[:1]
probe = repeated_passage(full[0, :half], half)
pattern = attention_patterns(run.model, probe)[0, layer, head]
labels = [token_text(run.tokenizer, i) for i in probe[0].tolist()]
st.plotly_chart(attention_heatmap(pattern, labels, f"L{layer}H{head} on a {half}-token sequence and its repeat"),
                key="probe_map")
row = {LABELS[d]: f"{float(scores[i, layer, head]):.2f}" for i, d in enumerate(DETECTORS)}
st.caption("Scores of this head: " + ", ".join(f"{k} {v}" for k, v in row.items()) + ". An induction head "
           "lights up an off-diagonal stripe in the second half, one step right of the copy of each token.")
