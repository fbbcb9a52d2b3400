"""Run diff: two runs, or two snapshots of one run, on one prompt."""
import pandas as pd
import streamlit as st

from explorer.cache import cached_run
from explorer.common import all_runs, default_prompt, selected_run_info, visible
from explorer.figures.attention import attention_heatmap, head_grid
from explorer.figures.tokens import delta_bars
from gpt.interp.rundiff import diff_runs
from gpt.interp.timemachine import snapshot_steps
from gpt.runs import RunError

st.title("Run diff")
runs = all_runs()
if not runs:
    st.info("No trained model yet. Train one on the **Train** page.")
    st.stop()
names = [r.name for r in runs]
current = selected_run_info()
st.caption("Compare what two models predict and where they look, token by token. Two snapshots of one run "
           "show what training changed.")


def pick(col, label: str, default_name: str, default_step: str):
    with col:
        name = st.selectbox(f"{label}: run", names, index=names.index(default_name), key=f"diff_{label}_run")
        path = runs[names.index(name)].path
        steps = ["latest"] + [str(s) for s in snapshot_steps(path)]
        step = st.selectbox(f"{label}: weights", steps, index=steps.index(default_step) if default_step in steps
                            else 0, key=f"diff_{label}_step_{name}")
        try:
            return cached_run(path, None if step == "latest" else int(step))
        except RunError as e:
            st.warning(str(e))
            st.stop()


base = current.name if current else names[0]
first_snap = next((str(s) for s in snapshot_steps(runs[names.index(base)].path)), "latest")
left, right = st.columns(2)
run_a = pick(left, "A", base, first_snap)
run_b = pick(right, "B", base, "latest")
prompt = st.text_area("Prompt", default_prompt(run_b, max_tokens=min(48, run_b.config.block_size)), height=90)
try:
    diff = diff_runs(run_a, run_b, prompt)
except Exception as e:  # unknown characters, different tokenizers, too short: all explained in the message
    st.error(str(e))
    st.stop()
tokens = [visible(run_b.tokenizer.token_str(i)) for i in diff.ids]
st.subheader("Per-token log-probability, B − A")
st.plotly_chart(delta_bars(tokens[1:], diff.logprob_delta.tolist()), key="diff_lp")
st.caption(f"Mean log-prob: A {float(diff.logprob_a.mean()):.3f}, B {float(diff.logprob_b.mean()):.3f}. "
           "Green bars: B expects that token more than A does.")

st.subheader("Attention difference")
if diff.attention_delta is None:
    st.info(f"No attention comparison: {diff.attention_note}.")
else:
    c1, c2 = st.columns([1, 2])
    with c1:
        change = diff.head_change()
        st.plotly_chart(head_grid(change, "How much each head changed (0..1)"), key="diff_heads")
        flat = int(change.argmax())
        L, H = change.shape
        layer = st.selectbox("Layer", range(L), index=flat // H)
        head = st.selectbox("Head", range(H), index=flat % H)
    with c2:
        st.plotly_chart(attention_heatmap(diff.attention_delta[layer, head], tokens, f"L{layer}H{head}: B − A",
                                      diverging=True), key="diff_map")
        st.caption("Blue: B attends more there; red: A did.")

st.subheader("Hyperparameters that differ")
if diff.config:
    st.dataframe(pd.DataFrame([{"setting": k, "A": str(a), "B": str(b)} for k, a, b in diff.config]),
                 hide_index=True, width="stretch")
else:
    st.caption("None: the two are the same run at the same step.")
