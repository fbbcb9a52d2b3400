"""Time machine: replay a run through its snapshots; watch heads form next to the loss curve."""
import streamlit as st

from explorer.charts_insight import attention_overview, detector_heatmaps, embedding_scatter, score_curves_figure
from explorer.common import cached_run, default_prompt, selected_run_info, visible
from explorer.figures.lab import probe_curves
from explorer.jobs import read_metrics
from gpt.interp.detectors import DETECTORS, LABELS, attention_patterns, head_scores
from gpt.interp.timemachine import aligned_projections, loss_curve, snapshot_steps
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


@st.cache_data(max_entries=256, show_spinner=False)
def scores_at(path: str, step: int):
    return head_scores(cached_run(path, step).model).scores  # (4, L, H)


@st.cache_data(max_entries=32, show_spinner="Aligning embeddings across snapshots...")
def frames(path: str, all_steps: tuple[int, ...]):
    weights = [cached_run(path, s).model.wte.weight.detach().float() for s in all_steps]
    return aligned_projections(weights)


@st.fragment(run_every=10.0 if live else None)
def curves():
    now = snapshot_steps(info.path)
    with st.spinner(f"Scoring heads at {len(now)} snapshot(s)..."):
        per_step = [scores_at(str(info.path), s) for s in now]
    final = per_step[-1]
    lines = {}
    for d, name in enumerate(DETECTORS):
        layer, head = divmod(int(final[d].argmax()), final.shape[2])
        lines[f"{LABELS[name]} (best: L{layer}H{head})"] = [float(s[d, layer, head]) for s in per_step]
    loss_steps, losses = loss_curve(info.path)
    st.plotly_chart(score_curves_figure(now, lines, loss_steps, losses), key="tm_curves")
    st.caption("For each detector, the head that scores highest at the latest snapshot, followed back through "
               "training; the dotted line is validation loss. Induction heads often appear suddenly, with a "
               "bump in the loss curve at the same step.")


st.subheader("Head scores over training")
curves()
probe_rows = [r for r in read_metrics(info.path) if "icl_score" in r]
if probe_rows:  # logged by the trainer at every evaluation (gpt/lab/induction.py), not only at snapshots
    st.plotly_chart(probe_curves(probe_rows, "In-context learning and induction at every evaluation"), key="tm_probes")
    st.caption("ICL score: loss late in the context minus early (negative = the context helps); the strongest "
               "induction and previous-token heads' scores. A sudden rise of the induction score together with a "
               "drop of the ICL score is the induction-head phase change.")

st.subheader("Replay one step")
step = st.select_slider("Snapshot step", options=steps, value=steps[-1])
try:
    snap = cached_run(info.path, step)
except RunError as e:
    st.warning(str(e))
    st.stop()
tab_attn, tab_emb, tab_scores = st.tabs(["Attention overview", "Embeddings", "Head detectors"])
with tab_attn:
    prompt_ids = snap.tokenizer.encode(default_prompt(snap, max_tokens=min(32, snap.config.block_size)))
    patterns = attention_patterns(snap.model, prompt_ids)[0]
    st.plotly_chart(attention_overview(patterns), key="tm_attention")
    text = "".join(visible(snap.tokenizer.token_str(i)) for i in prompt_ids)
    st.caption(f"Every head at step {step:,} on the prompt `{text[:80]}` (rows = layers, columns = heads).")
with tab_emb:
    points = frames(str(info.path), tuple(steps))
    span = 1.1 * max(float(p.abs().max()) for p in points)
    labels = [visible(snap.tokenizer.token_str(i)) for i in range(snap.config.vocab_size)][:400]
    st.plotly_chart(embedding_scatter(points[steps.index(step)][:400], labels, span,
                                      f"Token embeddings at step {step:,}"), key="tm_embed")
    st.caption("Each token's embedding vector projected to 2-D (PCA), with every step rotated onto the next by "
               "orthogonal Procrustes, so a point moves only when its embedding really changes. The axes stay "
               "fixed across steps: watch similar characters (vowels, digits, capitals) drift together.")
with tab_scores:
    st.plotly_chart(detector_heatmaps(scores_at(str(info.path), step)), key="tm_scores")
