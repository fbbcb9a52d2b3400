"""Time machine: replay a run through its snapshots; watch heads form next to the loss curve."""
import streamlit as st

from explorer.figures.attention import attention_overview, detector_heatmaps
from explorer.figures.embeddings import embedding_scatter
from explorer.figures.lab import probe_curves
from explorer.figures.training import score_curves as score_curves_figure
from explorer.jobs.training import read_metrics
from explorer.ui.cache import cached_run, run_head_scores, snapshot_embedding_frames
from explorer.ui.prompts import default_prompt
from explorer.ui.run_picker import selected_run_info
from explorer.ui.text import code_md, token_text
from gpt.interp.capture import attention_patterns
from gpt.interp.detectors import DETECTORS, LABELS
from gpt.interp.timemachine import loss_curve, score_curves, snapshot_steps
from gpt.runs import RunError

st.title("Time machine")
info = selected_run_info()
if info is None:
    st.info("No trained model yet. Train one on the **Train** page.")
    st.stop()
steps = snapshot_steps(info.path)
if not steps:
    st.info(f"**{info.name}** has no snapshots yet. A run saves one at its evaluations "
            "(every `snapshot_interval` steps); come back once the first is written.")
    st.stop()
first = cached_run(info.path, steps[0])
if not first.config.has_attention:
    st.info("A **bigram** model has no attention heads to replay. Pick another model.")
    st.stop()
live = info.state == "running"
st.caption(f"**{info.name}**: {len(steps)} snapshot(s), steps {steps[0]:,}–{steps[-1]:,}"
           + (" · still training: new snapshots appear as they are written" if live else "") + ".")


def snapshot_scores(run_dir, step: int):
    return run_head_scores(run_dir, snapshot_step=step).scores  # (4, L, H)


@st.fragment(run_every=10.0 if live else None)
def curves():
    now = snapshot_steps(info.path)
    with st.spinner(f"Scoring heads at {len(now)} snapshot(s)..."):
        history = score_curves(info.path, now, score_fn=snapshot_scores)
    lines = {}
    for name in DETECTORS:
        layer, head, values = history.best_curve(name)
        lines[f"{LABELS[name]} (best: L{layer}H{head})"] = values
    loss_steps, losses = loss_curve(info.path)
    st.plotly_chart(score_curves_figure(now, lines, loss_steps, losses), key="tm_curves")
    st.caption("For each detector, the head that scores highest at the latest snapshot, followed back through "
               "training; the dotted line is validation loss. Induction heads often appear suddenly, with a "
               "bump in the loss curve at the same step.")


st.subheader("Head scores over training")
curves()
probe_rows = [r for r in read_metrics(info.path) if "icl_score" in r]
if probe_rows:  # logged by the trainer at every evaluation (gpt/lab/probes.py), not only at snapshots
    st.plotly_chart(probe_curves(probe_rows, "In-context learning and induction at every evaluation"), key="tm_probes")
    st.caption("ICL score: loss late in the context minus early (negative = the context helps); the strongest "
               "induction and previous-token heads' scores. A sudden rise of the induction score together with a "
               "drop of the ICL score is the induction-head phase change.")

st.subheader("Replay one step")
step = st.select_slider("Snapshot step", options=steps, value=steps[-1])  # the snapshot replayed below
try:
    snap = cached_run(info.path, step)
except RunError as e:
    st.warning(str(e))
    st.stop()
tab_attn, tab_emb, tab_scores = st.tabs(["Attention overview", "Embeddings", "Head detectors"])
with tab_attn:
    prompt_ids = snap.tokenizer.encode(default_prompt(snap, max_tokens=min(32, snap.config.block_size)))
    patterns = attention_patterns(snap.model, prompt_ids)[0]
    st.plotly_chart(attention_overview(patterns, max_tokens=32), key="tm_attention")
    text = "".join(token_text(snap.tokenizer, i) for i in prompt_ids)
    st.caption(f"Every head at step {step:,} on the prompt {code_md(text[:80])} (rows = layers, columns = heads).")
with tab_emb:
    points = snapshot_embedding_frames(str(info.path), tuple(steps))
    span = 1.1 * max(float(p.abs().max()) for p in points)
    labels = [token_text(snap.tokenizer, i) for i in range(snap.config.vocab_size)][:400]
    st.plotly_chart(embedding_scatter(points[steps.index(step)][:400], labels, axis_range=span,
                                      title=f"Token embeddings at step {step:,}"), key="tm_embed")
    st.caption("Each token's embedding vector projected to 2-D (PCA), with every step rotated onto the next by "
               "orthogonal Procrustes, so a point moves only when its embedding really changes. The axes stay "
               "fixed across steps: watch similar characters (vowels, digits, capitals) drift together.")
with tab_scores:
    st.plotly_chart(detector_heatmaps(snapshot_scores(info.path, step)), key="tm_scores")
