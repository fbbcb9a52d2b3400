"""Patching: which activations carry the difference between a clean and a corrupted prompt (gpt.interp.patching)."""
import numpy as np
import streamlit as st

from explorer.figures.attribution import head_heatmap, mlp_patching_bars, residual_patching_heatmap
from explorer.ui.cache import known_patching_grids, patching_grids, weights_mtime
from explorer.ui.prompts import encode_or_explain
from explorer.ui.run_picker import selected_attention_run
from explorer.ui.scans import forget_stop, run_scan, was_stopped
from explorer.ui.text import code_md, token_md, token_text
from gpt.interp.capture import InterpError
from gpt.interp.detectors import STRONGEST_RULE, head_name, strongest_head
from gpt.interp.patching import (
    AUTO_PATCH,
    boundary_labels,
    fitting_example,
    patching_cost,
    patching_seconds,
    single_token_id,
)

run = selected_attention_run("Patching", "no layers to patch")
st.caption(f"Model **{run.path.name}** at step {run.step:,}. Two prompts differ in one detail. Run the corrupted "
           "one but paste in one activation from the clean run: how much of the clean answer comes back shows "
           "how much of the difference flows through that activation.")
# the worked example, with a pair of speaker names this tokenizer reads as prompts of one length
example = fitting_example(run.tokenizer, run.config.block_size)
if example is None:
    st.info("The worked example (who speaks next?) does not fit this model's tokenizer: type two prompts of the same "
            "token length that differ in one detail, and the two answers they favour.")
keys = {key: f"patch_{key}" for key in ("clean", "corrupted", "answer", "wrong")}
# another model was selected since the boxes were filled: its prompts may not fit this tokenizer, start afresh
fresh = st.session_state.get("_patch_run") != run.path.name
st.session_state["_patch_run"] = run.path.name
if example is not None and st.button("Load the worked example: who speaks next?"):
    fresh = True
for key in keys:
    if fresh or keys[key] not in st.session_state:
        st.session_state[keys[key]] = example[key] if example else ""
left, right = st.columns(2)
clean_text = left.text_area("Clean prompt", key=keys["clean"], height=160)
corrupted_text = right.text_area("Corrupted prompt (same number of tokens)", key=keys["corrupted"], height=160)
a, b = st.columns(2)
answer_text = a.text_input("Answer the clean prompt should favour", key=keys["answer"], max_chars=32)
wrong_text = b.text_input("Answer the corrupted prompt should favour", key=keys["wrong"], max_chars=32)

clean = encode_or_explain(run, clean_text)
corrupted = encode_or_explain(run, corrupted_text)
if clean is None or corrupted is None:
    st.stop()
try:
    answer = single_token_id(run.tokenizer, answer_text, "answer")
    wrong = single_token_id(run.tokenizer, wrong_text, "wrong answer")
    cost = patching_cost(run.config, len(clean))
    request = (str(run.path), tuple(clean), tuple(corrupted), answer, wrong)
    if len(clean) == len(corrupted) and cost > AUTO_PATCH and st.session_state.get("_patch_asked") != request:
        # a big model: the grids take a while, so ask first, saying how long
        seconds = max(1, round(patching_seconds(run.config, len(clean))))
        if st.button(f"Patch every layer boundary, position, head and MLP (about {seconds:,} s for this "
                     f"{len(clean)}-token pair; kept once computed)", type="primary"):
            st.session_state["_patch_asked"] = request
            st.rerun()
        st.caption("A model this size takes a while for the whole grid: shorter prompts are quicker (the cost "
                   "grows with the square of their length).")
        st.stop()
    key = (str(run.path), weights_mtime(run.path), tuple(clean), tuple(corrupted), answer, wrong)
    grids = known_patching_grids(*key)
    if grids is None and len(clean) == len(corrupted) and was_stopped("patching", request):
        st.caption("Patching was stopped; nothing of it was kept.")
        if st.button("Patch every layer boundary, position, head and MLP", type="primary"):
            forget_stop("patching")
            st.rerun()
        st.stop()
    if grids is None:
        grids = run_scan("patching", request, "Patching every layer boundary, position, head and MLP",
                         lambda progress: patching_grids(*key, progress=progress))
        if grids is None:   # stopped
            st.session_state.pop("_patch_asked", None)
            st.rerun()
except InterpError as e:
    st.error(str(e))
    st.stop()

show = lambda i: token_text(run.tokenizer, i)  # noqa: E731
metric = f"logit({token_md(run.tokenizer, answer)}) − logit({token_md(run.tokenizer, wrong)})"
st.markdown(f"Metric at the last position: {metric} = **{grids['clean']:.2f}** on the clean prompt, "
            f"**{grids['corrupted']:.2f}** on the corrupted one. Each cell below is the fraction of that gap "
            "recovered by one patch: 0 = nothing, 1 = all of it.")

# a column label shows both tokens where the prompts differ ("J→B"), so the changed positions stand out
tokens = [show(c) if c == k else f"{show(c)}→{show(k)}" for c, k in zip(clean, corrupted)]
residual = grids["residual"]
st.plotly_chart(residual_patching_heatmap(residual, tokens, boundary_labels(run.model),
                                          "Residual stream: one layer boundary at one position"), key="patch_resid")
st.caption("Rows: the residual stream entering block 0 (embed) and after each block; columns: positions, labelled "
           "with the clean token (clean→corrupted where they differ). Follow the blue from the changed tokens "
           "down to the last position: that is the path the information takes.")
heads = grids["heads"]
st.plotly_chart(head_heatmap(heads, "Each head's output, at every position", zmax=1.0), key="patch_heads")
st.caption("One cell per head: the fraction recovered by pasting in that head's clean output (all positions).")
if grids["mlps"] is not None:
    st.plotly_chart(mlp_patching_bars(grids["mlps"], "Each MLP's output, at every position"), key="patch_mlps")
    st.caption("One bar per MLP: the fraction recovered by pasting in its clean output (all positions).")

layer, pos = np.unravel_index(np.abs(residual[:-1]).argmax(), residual[:-1].shape) if len(residual) > 1 else (0, 0)
hl, hh, hv = strongest_head(heads, signed=True)
summary = (f"Strongest ({STRONGEST_RULE[True]}) residual cell before the last block: "
           f"{boundary_labels(run.model)[layer]} at position {pos} ({code_md(tokens[pos])}), {residual[layer, pos]:.2f}. "
           f"Strongest head: {head_name(hl, hh)}, {hv:.2f}.")
if grids["mlps"] is not None:
    m = int(np.abs(grids["mlps"]).argmax())
    summary += f" Strongest MLP: L{m}.mlp, {grids['mlps'][m]:.2f}."
st.markdown(summary)
