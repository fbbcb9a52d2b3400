"""Attention: every head at a glance (click one), one head in full (click a cell), lines between tokens as in
BertViz, the query-key product behind one weight, and per-head scores."""
import pandas as pd
import streamlit as st

from explorer.figures.attention import attention_overview, contrast_normalise
from explorer.figures.attention_views import PICK_CELL, PICK_QUERY, clickable_heatmap, line_view, query_key_figure, softmax_row_figure
from explorer.ui.prompts import teaching_prompt_ids
from explorer.ui.run_picker import selected_run
from explorer.ui.state import bind, fresh_click, place, remember
from explorer.ui.text import code_md, token_text
from gpt.interp import InterpError, forward_steps
from gpt.interp.attention import attention_trace, head_table, pool_pattern

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

ids = teaching_prompt_ids(run)
try:
    trace = attention_trace(run.model, ids)
except InterpError as e:
    st.error(str(e))
    st.stop()
T = len(ids)
labels = [token_text(run.tokenizer, i) for i in ids]
nh = cfg.effective_n_head

c1, c2, c3 = st.columns([1, 1, 2])
layer = c1.selectbox("Layer", range(cfg.n_layer), format_func=lambda i: f"layer {i}",
                     **bind("layer", 0, options=range(cfg.n_layer)))
head = c2.selectbox("Head", range(nh), format_func=lambda i: f"head {i}", **bind("head", 0, options=range(nh)))
pos = place("pos", T - 1)
pos = pos if isinstance(pos, int) and 0 <= pos < T else T - 1
c3.markdown(f"Query position **{pos}** {code_md(labels[pos])} (click a heatmap row or a token on the left of the line "
            "view to change it).")

left, right = st.columns([2, 3], gap="large")
with left:
    pooled = contrast_normalise(pool_pattern(trace.patterns, THUMB))
    event = st.plotly_chart(attention_overview(pooled, selected=(layer, head), clickable=True), key="attn_overview",
                            on_select="rerun", selection_mode="points", config={"displayModeBar": False})
    points = event.selection.points if event and event.selection else []
    picked = tuple(points[0]["customdata"]) if points and points[0].get("customdata") else None
    if fresh_click("attn_overview", picked) and picked != (layer, head):
        remember("layer", int(picked[0]))
        remember("head", int(picked[1]))
        st.rerun()
    shrink = f", averaged down to {pooled.shape[-1]}×{pooled.shape[-1]}" if pooled.shape[-1] < T else ""
    st.caption(f"Rows = layers, columns = heads; each square is one head's pattern{shrink}, each shaded to its own "
               "strongest weight so faint patterns show. **Click a square** to show that head; orange = shown.")
with right:
    event = st.vega_lite_chart(clickable_heatmap(trace.patterns[layer, head], labels, pos, f"Layer {layer}, head {head}"),
                               key="attn_heatmap", on_select="rerun", selection_mode=[PICK_CELL])
    cells = (event.selection.get(PICK_CELL) if event and event.selection else None) or []
    cell = (int(cells[0]["query"]), int(cells[0]["key"])) if cells else None
    if fresh_click("attn_heatmap", cell):
        remember("pos", cell[0])
        st.session_state["attn_qk_key"] = cell[1]
        st.rerun()
    st.caption("Row = the position predicting (query), column = the position it reads (key); darker = more "
               "weight, each row sums to 1. Grey = the future, hidden by the causal mask. Hover for tokens and "
               "values; **click a cell** to make its row the query position (orange outline).")


@st.fragment
def lines_between_tokens(patterns, labels: list[str], layer: int, head: int, pos: int) -> None:
    """The line view. A fragment: choosing its heads reruns this tab alone; a click on a token moves the query
    position, which the whole page follows (an app rerun)."""
    which = st.radio("Heads", [f"head {head} only", f"all {nh} heads of layer {layer}"], horizontal=True,
                     key="attn_line_heads")
    heads = [head] if which.startswith("head") else list(range(nh))
    st.caption("Left: each token as the one reading (query); right: the tokens it reads (keys). A line's "
               "strength is the attention weight" + (", one colour per head" if len(heads) > 1 else "") +
               ". **Hover** a token to keep only its lines; **click** a left token to make it the query position.")
    event = st.vega_lite_chart(line_view(patterns, labels, heads, pos), key="attn_lines", on_select="rerun",
                               selection_mode=[PICK_QUERY])
    chosen = (event.selection.get(PICK_QUERY) if event and event.selection else None) or []
    query = int(chosen[0]["query"]) if chosen and chosen[0].get("query", -1) >= 0 else None  # -1: a key
    if fresh_click("attn_lines", query) and query != pos:
        remember("pos", query)
        st.rerun()


@st.fragment
def query_key(ids: list[int], labels: list[str], layer: int, head: int, pos: int) -> None:
    """One weight taken apart channel by channel. A fragment: picking another key reruns this tab alone."""
    steps = forward_steps(run.model, ids, pos)
    hstep = steps.blocks[layer].attention.heads[head]
    default_key = st.session_state.get("attn_qk_key")
    if not isinstance(default_key, int) or default_key > pos:
        default_key = int(hstep.weights.argmax())
    key = st.selectbox("Key position", range(pos + 1), index=default_key,
                       format_func=lambda j: f"{j}: {labels[j]}  (weight {float(hstep.weights[j]):.3f})")
    score = float(hstep.dots[key])
    st.markdown(f"Query **{pos}** {code_md(labels[pos])} → key **{key}** {code_md(labels[key])} in layer {layer}, "
                f"head {head}: the sum of the bars is q·k = **{score:.3f}**; × 1/√{len(hstep.q)} = score **"
                f"{float(hstep.scores[key]):.3f}**; softmax over the row gives weight **"
                f"{float(hstep.weights[key]):.3f}**.")
    q1, q2 = st.columns([3, 2])
    q1.plotly_chart(query_key_figure(hstep, labels, key), key="qk_bars")
    q1.caption("Dots: the query's and the key's value in each channel of this head; bars: their product "
               "(blue adds to the match, red subtracts).")
    q2.plotly_chart(softmax_row_figure(hstep, labels, key), key="qk_row")
    q2.caption("Where that score lands: the query's whole row after softmax; orange = the chosen key.")


# only the open tab runs (on_change="rerun"): the others would cost a forward pass, figures and a table per click
tab_lines, tab_qk, tab_table = st.tabs(["Lines between tokens", "Query · key, channel by channel", "Per-head scores"],
                                       key="attn_tab", on_change="rerun")
if tab_lines.open:
    with tab_lines:
        lines_between_tokens(trace.patterns[layer], labels, layer, head, pos)
if tab_qk.open:
    with tab_qk:
        query_key(ids, labels, layer, head, pos)
if tab_table.open:
    with tab_table:
        table = pd.DataFrame(head_table(trace.patterns)).rename(columns={
            "entropy": "entropy (bits)", "prev_token": "previous-token", "first_token": "first-token", "self": "self"})
        share = {name: st.column_config.ProgressColumn(name, format="%.3f", min_value=0.0, max_value=1.0)
                 for name in ("previous-token", "first-token", "self")}
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            "entropy (bits)": st.column_config.NumberColumn(format="%.3f"), **share})
        st.caption(f"Averages over the {T} prompt positions. A previous-token head scores near 1 on previous-token; "
                   "heads parked on the first token often mean 'nothing useful to read here'.")
