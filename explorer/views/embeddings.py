"""Embeddings: the token table projected to 2D/3D, nearest neighbours, and the learned positions."""
import numpy as np
import pandas as pd
import streamlit as st

from explorer.figures.embeddings import embedding_scatter, matrix_heatmap
from explorer.ui.cache import vocab_map
from explorer.ui.run_picker import selected_run
from explorer.ui.state import bind, place
from explorer.ui.text import code_md, display_text
from gpt.interp.embeddings import cosine_matrix, nearest_neighbours, position_embeddings, sample_ids, search_tokens, token_embeddings

MAX_POINTS = 5000      # a bigger vocabulary is drawn as an even sample of its ids (plus the chosen token's circle)
MAX_OPTIONS = 1000     # a bigger vocabulary is picked from by search, not from one list of every token
MAX_POSITIONS = 256    # rows of the position heatmaps (a longer context is shown at every n-th position)

run = selected_run()
tok = run.tokenizer
st.title("Embeddings")
st.caption(f"**{run.path.name}** at step {run.step:,}: every token id maps to a vector of {run.config.n_embd} "
           "numbers, learned in training. Tokens used alike end up near each other.")

vocab = vocab_map(run.path)   # projection and labels of the whole vocabulary, once per weights
labels, V = vocab.labels, len(vocab.labels)
c1, c2, c3 = st.columns([1, 2, 2])
dims = c1.radio("Projection", ["2D", "3D"], horizontal=True, **bind("dims", "2D", options=["2D", "3D"]))
default = next((i for i, s in enumerate(labels) if s in ("e", "·e", "the", "·the")), 0)
if V <= MAX_OPTIONS:
    options = list(range(V))
else:
    query = c2.text_input("Find a token", placeholder="e.g. ·the  (· is a space)",
                          help="Tokens whose text is, starts with, or contains this; a space matches ·")
    found = search_tokens(labels, display_text(query) if query else "")
    if query and not found:
        c2.caption(f"No token contains {code_md(query)}.")
    remembered = place("token", default)   # the token chosen before (or in a link) stays on offer
    kept = [remembered] if isinstance(remembered, int) and 0 <= remembered < V else []
    options = list(dict.fromkeys(found + kept + [default]))
chosen = (c3 if V > MAX_OPTIONS else c2).selectbox(
    "Nearest neighbours of", options, format_func=lambda i: f"{labels[i]} (id {i})",
    **bind("token", default, options=options))

emb = token_embeddings(run.model)  # (vocab, n_embd): a view of the weights, not a copy
neighbours = nearest_neighbours(emb, chosen, k=10, norms=vocab.norms)
circle = [chosen] + [i for i, _ in neighbours]
shown = sample_ids(V, MAX_POINTS, always=circle)
points = vocab.points[shown, :3 if dims == "3D" else 2]
left, right = st.columns([3, 1], gap="large")
with left:
    st.plotly_chart(embedding_scatter(points, [labels[i] for i in shown], shown, vocab.explained[:points.shape[1]],
                                      highlight=circle), key="emb_scatter")
    extra = (f" ({len(shown):,} of {V:,} tokens: about one id in {V / MAX_POINTS:.0f}, plus the chosen token and "
             "its neighbours, labelled; hover a point for its token)" if V > MAX_POINTS else "")
    st.caption(f"Token embeddings squashed onto their main directions of variation (PCA){extra}. Red: the chosen "
               f"token and its 10 nearest neighbours. Axis titles say how much of the spread each axis keeps.")
with right:
    st.dataframe(pd.DataFrame([{"token": labels[i], "id": i, "cosine": s} for i, s in neighbours]),
                 hide_index=True, width="stretch",
                 column_config={"cosine": st.column_config.NumberColumn(format="%.3f")})
    st.caption(f"The tokens whose vectors point most nearly the same way as {code_md(labels[chosen])} "
               "(cosine similarity: 1 = same direction, 0 = unrelated).")

st.subheader("Positions")
pos = position_embeddings(run.model)
if pos is None:
    st.info("A bigram model has no positional embeddings: it only ever looks at one token.")
    st.stop()
stride = -(-len(pos) // MAX_POSITIONS)   # ceil: GPT-2's 1,024 positions are shown at every 4th
every = f" (positions 0, {stride}, {2 * stride}, ... of {len(pos):,})" if stride > 1 else ""
pos = pos[::stride]
axis_name = "position row" if stride > 1 else "position"
a, b = st.columns(2, gap="large")
with a:
    st.plotly_chart(matrix_heatmap(pos, f"Positional embedding vectors{every}", "dimension", axis_name),
                    key="pos_emb")
    st.caption("Row p is the vector added to the token at position p; blue = positive, red = negative (as the colour "
               "bar)." + (f" Row r is position {stride}·r." if stride > 1 else ""))
with b:
    sim = cosine_matrix(pos)
    st.plotly_chart(matrix_heatmap(sim, f"Position × position cosine similarity{every}", axis_name, axis_name),
                    key="pos_sim")
    near = float(np.mean(np.diag(sim, 1))) if len(sim) > 1 else 1.0
    st.caption(f"How alike two positions' vectors are. A bright band along the diagonal means neighbouring "
               f"positions look alike (here: mean similarity of adjacent rows {near:.2f}).")
