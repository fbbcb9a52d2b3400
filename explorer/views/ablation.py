"""Ablation: remove heads and see what the model loses."""
import streamlit as st

from explorer.cache import run_head_scores, run_validation_ids
from explorer.common import default_prompt, encode_or_explain, esc, selected_attention_run, visible
from explorer.figures.tokens import prob_bars
from gpt.data import CorpusError
from gpt.interp.ablation import ablate, all_heads, generate_with_ablation
from gpt.interp.detectors import strongest_head

run = selected_attention_run("Ablation", "no attention heads to remove")
cfg = run.config
st.caption(f"Model **{run.path.name}** at step {run.step:,}. Zeroing a head removes its contribution to the "
           "residual stream; if the loss rises, the model relied on it.")


names = {f"L{layer}H{head}": (layer, head) for layer, head in all_heads(run.model)}
scores = run_head_scores(run.path).scores
quick = st.radio("Start from", ["my choice", "the strongest induction head", "the strongest previous-token head",
                                "all heads"], horizontal=True)
preset = []
if quick == "all heads":
    preset = list(names)
elif quick != "my choice":
    layer, head, _ = strongest_head(scores, "induction" if "induction" in quick else "previous_token")
    preset = [f"L{layer}H{head}"]
chosen = st.multiselect("Heads to zero", list(names), default=preset, key=f"abl_heads_{run.path.name}_{quick}")
prompt = st.text_area("Prompt", default_prompt(run, max_tokens=min(64, cfg.block_size)), height=90,
                      key=f"abl_prompt_{run.path.name}")
ids = encode_or_explain(run, prompt)
if ids is None:
    st.stop()
try:
    val = run_validation_ids(run.path)
except (CorpusError, ValueError) as e:
    st.error(f"Cannot read this run's validation text: {e}")
    st.stop()
result = ablate(run.model, ids, val, [names[n] for n in chosen])
c1, c2, c3 = st.columns(3)
c1.metric("Validation loss, intact", f"{result.base_loss:.4f}")
c2.metric("With the heads removed", f"{result.ablated_loss:.4f}", f"{result.delta_loss:+.4f}", delta_color="inverse")
c3.metric("Next-token distribution moved", f"{result.total_variation:.0%}",
          help="Total variation distance between the two next-token distributions for the prompt")
label = lambda i: visible(run.tokenizer.token_str(i))  # noqa: E731
st.plotly_chart(prob_bars({"intact": [(label(t), p) for t, p in result.base_top],
                           "heads removed": [(label(t), p) for t, p in result.ablated_top]},
                          "Next token after the prompt"), key="abl_bars")
st.caption("Loss on 8 fixed windows of the validation text. Zeroing is blunt: a head that is usually quiet can "
           "still matter when its output was never zero during training.")

st.subheader("Re-generate without the heads")
n_new = st.slider("New tokens", 20, 300, 120, 20)
seed = st.number_input("Seed", 0, 10_000, 1)
if st.button("Generate both", type="primary"):
    heads = [names[n] for n in chosen]
    with st.spinner("Sampling..."):
        intact = generate_with_ablation(run.model, ids, [], n_new, seed=int(seed))
        ablated = generate_with_ablation(run.model, ids, heads, n_new, seed=int(seed))
    left, right = st.columns(2)
    for col, title, new in ((left, "Intact", intact), (right, f"Without {', '.join(chosen) or 'any head'}", ablated)):
        col.markdown(f"**{esc(title)}**")
        col.markdown(f'<pre style="white-space:pre-wrap">{esc(prompt)}<b>{esc(run.tokenizer.decode(new))}</b></pre>',
                     unsafe_allow_html=True)
    st.caption("Same seed and sampling for both, so every difference comes from the removed heads.")
