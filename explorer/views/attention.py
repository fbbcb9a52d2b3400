"""Attention: every head's pattern for a prompt, one head in full, and per-head scores."""
import pandas as pd
import streamlit as st

from explorer.common import default_prompt, encode_or_explain, selected_run, visible
from explorer.figures.attention import attention_heatmap, attention_overview, head_grid
from explorer.state import bind
from gpt.interp.attention import attention_trace, head_summary, head_table, pool_pattern
from gpt.interp.capture import InterpError

THUMB = 32  # overview thumbnails are average-pooled to at most THUMB x THUMB

run = selected_run()
cfg = run.config
st.title("Attention")
if not cfg.has_attention:
    st.info("This is a **bigram** model: it predicts from the current token alone, so it has no attention to "
            "show. Train a single-head, multi-head or GPT model (Train page) to see attention.")
    st.stop()
st.caption(f"Model **{run.path.name}** at step {run.step:,}: {cfg.n_layer} layer(s) × {cfg.effective_n_head} "
           f"head(s). Each head decides, for every position, how much to read from each earlier position.")

prompt = st.text_area("Prompt", height=90, **bind("prompt", default_prompt(run, max_tokens=min(48, cfg.block_size))))
ids = encode_or_explain(run, prompt)
if ids is None:
    st.stop()
if len(ids) > cfg.block_size:
    st.warning(f"The prompt has {len(ids)} tokens; this model sees at most {cfg.block_size} (its block size), "
               f"so only the first {cfg.block_size} are shown.")
    ids = ids[:cfg.block_size]
try:
    trace = attention_trace(run.model, ids)
except InterpError as e:
    st.error(str(e))
    st.stop()
labels = [visible(run.tokenizer.token_str(i)) for i in ids]
scores = head_summary(trace.patterns)

c1, c2, c3 = st.columns([1, 1, 2])
layer = c1.selectbox("Layer", range(cfg.n_layer), format_func=lambda i: f"layer {i}",
                     **bind("layer", 0, options=range(cfg.n_layer)))
head = c2.selectbox("Head", range(cfg.effective_n_head), format_func=lambda i: f"head {i}",
                    **bind("head", 0, options=range(cfg.effective_n_head)))
view = c3.radio("Overview", ["Thumbnails", "Score grid"], horizontal=True,
                help="Thumbnails: every head's pattern, shrunk. Score grid: one number per head.")

left, right = st.columns([2, 3], gap="large")
with left:
    if view == "Thumbnails":
        pooled = pool_pattern(trace.patterns, THUMB)
        st.plotly_chart(attention_overview(pooled, selected=(layer, head)), key="attn_overview")
        shrink = f" (averaged down to {pooled.shape[-1]}×{pooled.shape[-1]})" if pooled.shape[-1] < len(ids) else ""
        st.caption(f"Rows = layers, columns = heads; each square is a head's pattern{shrink}, darker = more weight. "
                   "The orange frame marks the head shown in full; the table below scores every head.")
    else:
        metric = st.radio("Score", ["entropy", "prev_token", "first_token", "self"], horizontal=True)
        st.plotly_chart(head_grid(scores[metric], f"{metric} per head", zmax=None), key="attn_grid")
        st.caption("One cell per head. entropy: bits of spread (low = looks at few tokens); prev_token / "
                   "first_token / self: average weight put on the previous token, the first token, itself.")
with right:
    st.plotly_chart(attention_heatmap(trace.patterns[layer, head], labels,
                                      f"Layer {layer}, head {head}"), key="attn_head")
    st.caption("Row = the position doing the predicting (query), column = the position it reads (key); "
               "darker blue = more weight, each row sums to 1. The grey triangle is the causal mask: "
               "no token may look at the future.")

st.subheader("Per-head scores")
table = pd.DataFrame(head_table(trace.patterns)).rename(columns={
    "entropy": "entropy (bits)", "prev_token": "previous-token", "first_token": "first-token", "self": "self"})
share = {name: st.column_config.ProgressColumn(name, format="%.3f", min_value=0.0, max_value=1.0)
         for name in ("previous-token", "first-token", "self")}
st.dataframe(table, hide_index=True, width="stretch", column_config={
    "entropy (bits)": st.column_config.NumberColumn(format="%.3f"), **share})
st.caption(f"Averages over the {len(ids)} prompt positions. A previous-token head scores near 1 on "
           "previous-token; heads parked on the first token often mean 'nothing useful to read here'.")
