"""Logit lens: what the model would predict if it stopped after each layer."""
import pandas as pd
import streamlit as st

from explorer.figures.tokens import lens_heatmap
from explorer.ui.prompts import crop_note, default_prompt, encode_or_explain
from explorer.ui.run_picker import selected_attention_run
from explorer.ui.state import bind
from explorer.ui.text import code_md, token_text
from gpt.interp.lens import lens_column, logit_lens

MAX_SHOWN = 48

run = selected_attention_run("Logit lens", "no layers to look through")
cfg = run.config
st.caption(f"Model **{run.path.name}** at step {run.step:,}. The residual stream after each layer is passed "
           "through the model's final LayerNorm and unembedding, as if the remaining layers were skipped.")
prompt = st.text_area("Prompt", height=90,
                      **bind("prompt", default_prompt(run, max_tokens=min(MAX_SHOWN, cfg.block_size))))
ids = encode_or_explain(run, prompt)
if ids is None:
    st.stop()
ids = crop_note(run, ids, MAX_SHOWN, reason="this page shows")
lens = logit_lens(run.model, ids)
tokens = [token_text(run.tokenizer, i) for i in ids]
top_tokens = [[token_text(run.tokenizer, int(i)) for i in row] for row in lens.top_ids]
st.plotly_chart(lens_heatmap(lens.labels, tokens, top_tokens, lens.top_probs), key="lens_map")
st.caption("Columns: prompt positions (the token written there). Rows: depth, from the raw embedding to the "
           "last block (the last row is the model's real prediction). Each cell shows the most likely *next* "
           "token at that depth, coloured by its probability. The embeddings row usually just repeats the current "
           "token: the unembedding shares its weights with the embedding, so an untouched embedding points at "
           "itself. Watch where each column first turns into its final answer.")

position = st.slider("Position", 0, max(1, len(ids) - 1), format="%d", disabled=len(ids) < 2,
                     help="Inspect one column: the top 5 at every depth",
                     **bind("pos", len(ids) - 1, options=range(len(ids))))
column = lens_column(lens, position, k=5)
st.dataframe(pd.DataFrame(
    [{"depth": label, **{f"#{r + 1}": f"{token_text(run.tokenizer, t)} {p:.2f}" for r, (t, p) in enumerate(row)},
      "p(actual next)": None if position == len(ids) - 1 else round(float(lens.target_probs[d, position]), 3)}
     for d, (label, row) in enumerate(zip(lens.labels, column))]), hide_index=True, width="stretch")
st.caption(f"Position {position} holds {code_md(tokens[position])}"
           + ("" if position == len(ids) - 1 else f"; the token that really follows is {code_md(tokens[position + 1])}."))
