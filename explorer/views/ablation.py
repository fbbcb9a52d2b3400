"""Ablation: remove heads and see what the model loses."""
import streamlit as st

from explorer.figures.tokens import prob_bars
from explorer.ui.cache import run_ablation, run_head_scores
from explorer.ui.eval_text import eval_caption, eval_key, eval_text_or_stop
from explorer.ui.prompts import crop_note, default_prompt, encode_or_explain
from explorer.ui.run_picker import selected_attention_run
from explorer.ui.state import bind
from explorer.ui.text import esc, text_md, token_text
from gpt.interp.ablation import all_heads, generate_with_ablation, loss_windows
from gpt.interp.capture import InterpError
from gpt.interp.detectors import detector_grid, strongest_head

run = selected_attention_run("Ablation", "no attention heads to remove")
cfg = run.config
st.caption(f"Model **{run.path.name}** at step {run.step:,}. Zeroing a head removes its contribution to the "
           "residual stream; if the loss rises, the model relied on it.")


names = {f"L{layer}H{head}": (layer, head) for layer, head in all_heads(run.model)}
quick = st.radio("Start from", ["my choice", "the strongest induction head", "the strongest previous-token head",
                                "all heads"], horizontal=True)
preset = []
if quick == "all heads":
    preset = list(names)
elif quick != "my choice":   # the head scores are computed only when asked for (GPT-2 small: seconds)
    scores = run_head_scores(run.path).scores
    layer, head, _ = strongest_head(detector_grid(scores, "induction" if "induction" in quick else "previous_token"))
    preset = [f"L{layer}H{head}"]
chosen = st.multiselect("Heads to zero", list(names), default=preset, key=f"abl_heads_{run.path.name}_{quick}")
prompt = st.text_area("Prompt", height=90, **bind("prompt", default_prompt(run, max_tokens=min(64, cfg.block_size))))
ids = encode_or_explain(run, prompt)
if ids is None:
    st.stop()
ids = crop_note(run, ids)
evaluation = eval_text_or_stop(run, "Ablation's loss")
try:
    result = run_ablation(run.path, eval_key(run), tuple(names[n] for n in chosen), tuple(ids))
except InterpError as e:   # e.g. an evaluation text shorter than one window: the message says how long it must be
    st.info(f"{e}. Choose a longer evaluation text in the sidebar.")
    st.stop()
c1, c2, c3 = st.columns(3)
c1.metric("Validation loss, intact", f"{result.base_loss:.4f}")
c2.metric("With the heads removed", f"{result.ablated_loss:.4f}", f"{result.delta_loss:+.4f}", delta_color="inverse")
c3.metric("Next-token distribution moved", f"{result.total_variation:.0%}",
          help="Total variation distance between the two next-token distributions for the prompt")
label = lambda i: token_text(run.tokenizer, i)  # noqa: E731
st.plotly_chart(prob_bars({"intact": [(label(t), p) for t, p in result.base_top],
                           "heads removed": [(label(t), p) for t, p in result.ablated_top]},
                          "Next token after the prompt"), key="abl_bars")
window, n_windows = loss_windows(cfg)
st.caption(f"Loss on {n_windows} windows of {window} tokens spread evenly over the evaluation text (fewer for a big model, so "
           "the page stays quick). Zeroing is blunt: a head that is usually quiet can still matter when its output was never zero during training. "
           + eval_caption(evaluation))

st.subheader("Re-generate without the heads")
n_new = st.slider("New tokens", 20, 300, step=20, **bind("max_new", 120, options=range(20, 301, 20)))
seed = st.number_input("Seed", 0, 10_000, **bind("seed", 1, options=range(10_001)))
if st.button("Generate both", type="primary"):
    heads = [names[n] for n in chosen]
    with st.spinner("Sampling..."):
        intact = generate_with_ablation(run.model, ids, [], n_new, temperature=0.8, seed=int(seed))
        ablated = generate_with_ablation(run.model, ids, heads, n_new, temperature=0.8, seed=int(seed))
    left, right = st.columns(2)
    for col, title, new in ((left, "Intact", intact), (right, f"Without {', '.join(chosen) or 'any head'}", ablated)):
        col.markdown(f"**{text_md(title)}**")
        # <br> rather than raw newlines: markdown would end the HTML block at a blank line and lose the breaks
        html_text = f"{esc(prompt)}<b>{esc(run.tokenizer.decode(new))}</b>".replace("\n", "<br>")
        col.markdown(f'<div style="font-family:monospace;white-space:pre-wrap">{html_text}</div>',
                     unsafe_allow_html=True)
    st.caption("Same seed and sampling (temperature 0.8) for both, so every difference comes from the removed heads; "
               "the intact column is exactly what the Generate page writes with this seed, temperature 0.8 and no "
               "top-k or top-p.")
