"""Embeddings: the token table projected to 2D/3D, nearest neighbours, and the learned positions."""
import numpy as np
import pandas as pd
import streamlit as st

from explorer.cache import run_embedding_projection, run_token_labels
from explorer.common import selected_run
from explorer.figures.embeddings import embedding_scatter, matrix_heatmap
from explorer.state import bind, place, remember
from gpt.interp.embeddings import cosine_matrix, nearest_neighbours, position_embeddings, token_embeddings

MAX_LABELS = 400     # beyond this many points the labels turn into noise
MAX_PICKER = 5_000   # a vocabulary larger than this is searched, not listed
SAMPLE = 2_000       # points drawn for a large vocabulary
MAX_POSITIONS = 256  # rows of the position heatmaps (GPT-2 has 1,024)


def search_tokens(labels: list[str], query: str, limit: int = 50) -> list[int]:
    """Token ids whose text equals the query, then starts with it, then contains it (at most `limit`)."""
    q = query.replace(" ", "·")
    if not q:
        return []
    exact = [i for i, s in enumerate(labels) if s == q or s == "·" + q]
    starts = [i for i, s in enumerate(labels) if s.lstrip("·").startswith(q.lstrip("·")) and i not in exact]
    contains = [i for i, s in enumerate(labels) if q in s and i not in exact and i not in starts]
    return (exact + starts + contains)[:limit]

run = selected_run()
tok = run.tokenizer
st.title("Embeddings")
st.caption(f"**{run.path.name}** at step {run.step:,}: every token id maps to a vector of {run.config.n_embd} "
           "numbers, learned in training. Tokens used alike end up near each other.")

emb = token_embeddings(run.model)  # (vocab, n_embd)
labels = run_token_labels(run.path)
V = len(labels)
c1, c2 = st.columns([1, 3])
dims = c1.radio("Projection", ["2D", "3D"], horizontal=True, **bind("dims", "2D", options=["2D", "3D"]))
default = next((i for i, s in enumerate(labels) if s in ("e", "·e", "the", "·the")), 0)
if V <= MAX_PICKER:
    options = list(range(V))
    chosen = c2.selectbox("Nearest neighbours of", options, format_func=lambda i: f"{labels[i]!r} (id {i})",
                          **bind("token", default, options=options))
else:  # tens of thousands of options would be sent to the browser: search, then pick among the matches
    query = c2.text_input("Find a token (its text; · is a space)", value=labels[place("token", default)]
                          if 0 <= place("token", default) < V else labels[default], key="emb_query", max_chars=40)
    matches = search_tokens(labels, query)
    if not matches:
        c2.info(f"No token contains {query!r}.")
        st.stop()
    chosen = c2.selectbox(f"Nearest neighbours of ({len(matches)} match{'es' if len(matches) > 1 else ''})", matches,
                          format_func=lambda i: f"{labels[i]!r} (id {i})", key=f"emb_match_{hash(query)}")
    remember("token", chosen)

neighbours = nearest_neighbours(emb, chosen, k=10)
points, explained = run_embedding_projection(run.path)
highlight = [chosen] + [i for i, _ in neighbours]
if V <= MAX_LABELS:
    shown = list(range(V))
else:  # a fixed, even sample of the vocabulary plus the tokens in question
    shown = sorted(set(np.linspace(0, V - 1, SAMPLE).astype(int).tolist()) | set(highlight))
left, right = st.columns([3, 1], gap="large")
with left:
    k = 3 if dims == "3D" else 2
    st.plotly_chart(embedding_scatter(points[shown, :k], [labels[i] if V <= MAX_LABELS or i in highlight else ""
                                                          for i in shown], shown, explained[:k], highlight=highlight),
                    key="emb_scatter")
    extra = (f" ({len(shown):,} of the {V:,} tokens, evenly spread over the ids; hover a point for its token)"
             if V > MAX_LABELS else "")
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
    st.info("A bigram model has no positional embeddings: it only ever looks at one token." if not
            run.config.uses_rotary else "This model has no position table: positions enter as rotations of each "
            "head's queries and keys (rotary embeddings).")
    st.stop()
if len(pos) > MAX_POSITIONS:
    st.caption(f"The first {MAX_POSITIONS} of its {len(pos):,} positions.")
    pos = pos[:MAX_POSITIONS]
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
