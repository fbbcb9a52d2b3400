"""Embeddings: the token table projected to 2D/3D, nearest neighbours, and the learned positions."""
import numpy as np
import pandas as pd
import streamlit as st

from explorer.common import selected_run, token_label
from explorer.figures.embeddings import embedding_scatter, matrix_heatmap
from explorer.state import bind
from gpt.interp.embeddings import cosine_matrix, nearest_neighbours, pca, position_embeddings, token_embeddings

MAX_LABELS = 400  # beyond this many points the labels turn into noise

run = selected_run()
tok = run.tokenizer
st.title("Embeddings")
st.caption(f"**{run.path.name}** at step {run.step:,}: every token id maps to a vector of {run.config.n_embd} "
           "numbers, learned in training. Tokens used alike end up near each other.")

emb = token_embeddings(run.model)  # (vocab, n_embd)
labels = [token_label(tok, i) for i in range(tok.vocab_size)]
c1, c2 = st.columns([1, 3])
dims = c1.radio("Projection", ["2D", "3D"], horizontal=True, **bind("dims", "2D", options=["2D", "3D"]))
options = list(range(tok.vocab_size))
default = next((i for i, s in enumerate(labels) if s in ("e", "·e", "the", "·the")), 0)
chosen = c2.selectbox("Nearest neighbours of", options, format_func=lambda i: f"{labels[i]!r} (id {i})",
                      **bind("token", default, options=options))

neighbours = nearest_neighbours(emb, chosen, k=10)
proj = pca(emb, 3 if dims == "3D" else 2)
shown = list(range(min(len(labels), MAX_LABELS)))
left, right = st.columns([3, 1], gap="large")
with left:
    st.plotly_chart(embedding_scatter(proj.points[shown], [labels[i] for i in shown], shown, proj.explained,
                                      highlight=[chosen] + [i for i, _ in neighbours]), key="emb_scatter")
    extra = f" (the first {MAX_LABELS} of {len(labels)} tokens)" if len(labels) > MAX_LABELS else ""
    st.caption(f"Token embeddings squashed onto their main directions of variation (PCA){extra}. Red: the chosen "
               f"token and its 10 nearest neighbours. Axis titles say how much of the spread each axis keeps.")
with right:
    st.dataframe(pd.DataFrame([{"token": labels[i], "id": i, "cosine": s} for i, s in neighbours]),
                 hide_index=True, width="stretch",
                 column_config={"cosine": st.column_config.NumberColumn(format="%.3f")})
    st.caption(f"The tokens whose vectors point most nearly the same way as {labels[chosen]!r} "
               "(cosine similarity: 1 = same direction, 0 = unrelated).")

st.subheader("Positions")
pos = position_embeddings(run.model)
if pos is None:
    st.info("A bigram model has no positional embeddings: it only ever looks at one token.")
    st.stop()
a, b = st.columns(2, gap="large")
with a:
    st.plotly_chart(matrix_heatmap(pos, "Positional embedding vectors", "dimension", "position"), key="pos_emb")
    st.caption("Row p is the vector added to the token at position p; blue = positive, red = negative (as the colour bar).")
with b:
    sim = cosine_matrix(pos)
    st.plotly_chart(matrix_heatmap(sim, "Position × position cosine similarity", "position", "position"),
                    key="pos_sim")
    near = float(np.mean(np.diag(sim, 1))) if len(sim) > 1 else 1.0
    st.caption(f"How alike two positions' vectors are. A bright band along the diagonal means neighbouring "
               f"positions look alike (here: mean similarity of adjacent positions {near:.2f}).")
