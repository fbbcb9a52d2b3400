"""Run diff: two runs, or two snapshots of one run, on one prompt."""
import pandas as pd
import streamlit as st

from explorer.figures.attention import attention_heatmap, head_grid
from explorer.figures.tokens import delta_bars
from explorer.ui.cache import cached_run
from explorer.ui.prompts import default_prompt
from explorer.ui.run_picker import all_runs, selected_run_info
from explorer.ui.text import token_text
from gpt.interp.rundiff import diff_runs
from gpt.interp.timemachine import snapshot_steps
from gpt.runs import RunError

st.title("Run diff")


def for_people(value) -> str:
    """A setting as a person writes it: 0.0003, not 0.00030000000000000003 (floats to 6 significant digits)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)



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
        # a run picked here starts at its latest weights; the default step applies to the default run only
        wanted = default_step if name == default_name else "latest"
        step = st.selectbox(f"{label}: weights", steps, index=steps.index(wanted) if wanted in steps else 0,
                            key=f"diff_{label}_step_{name}")
        try:
            return cached_run(path, None if step == "latest" else int(step))
        except RunError as e:
            st.warning(str(e))
            st.stop()


# Both sides start at their latest weights (snapshot 0 is an untrained model, a misleading default). With two
# or more runs sharing a tokenizer: the sidebar's run against the most recent other one; else one run half-way
# against its end.
base = current.name if current else names[0]


def same_tokenizer(name: str) -> bool:
    """Two runs compare token by token only when they share a tokenizer (the same tokenizer.json)."""
    def read(n):
        return (runs[names.index(n)].path / "tokenizer.json").read_bytes()
    try:
        return read(name) == read(base)
    except OSError:
        return False


others = [n for n in names if n != base and same_tokenizer(n)]
snaps = [str(s) for s in snapshot_steps(runs[names.index(base)].path)]
a_name, a_step = (others[0], "latest") if others else (base, snaps[len(snaps) // 2] if snaps else "latest")
left, right = st.columns(2)
run_a = pick(left, "A", a_name, a_step if a_name == base else "latest")
run_b = pick(right, "B", base, "latest")
prompt = st.text_area("Prompt", default_prompt(run_b, max_tokens=min(48, run_b.config.block_size)), height=90)
try:
    diff = diff_runs(run_a, run_b, prompt)
except Exception as e:  # unknown characters, different tokenizers, too short: all explained in the message
    st.error(str(e))
    st.stop()
tokens = [token_text(run_b.tokenizer, i) for i in diff.ids]
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
    st.dataframe(pd.DataFrame([{"setting": k, "A": for_people(a), "B": for_people(b)} for k, a, b in diff.config]),
                 hide_index=True, width="stretch")
else:
    st.caption("None: the two are the same run at the same step.")
