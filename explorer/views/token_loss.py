"""Per-token loss: a validation passage coloured by surprise; pick a token to see why."""
import math

import pandas as pd
import streamlit as st

from explorer.cache import run_validation_ids
from explorer.common import CHIP_STYLE, esc, selected_run, visible
from explorer.figures.attention import attention_heatmap
from gpt.data import CorpusError
from gpt.interp.capture import attention_patterns
from gpt.interp.lens import lens_column, logit_lens
from gpt.interp.token_loss import token_losses, validation_passage

run = selected_run()
cfg = run.config
st.title("Per-token loss")
st.caption(f"Model **{run.path.name}** at step {run.step:,}. Each token of a validation passage (text the model "
           "never trained on) is coloured by its loss: −log p(token | everything before it).")


try:
    val = run_validation_ids(run.path)
except (CorpusError, ValueError) as e:
    st.error(f"Cannot read this run's validation text: {e}")
    st.stop()
c1, c2 = st.columns(2)
n_tokens = c1.slider("Passage length (tokens)", 8, min(cfg.block_size, 256), min(cfg.block_size, 128))
offset = c2.number_input("Start at token", 0, max(0, len(val) - n_tokens), 0, step=n_tokens)
ids = validation_passage(val, n_tokens, offset)
result = token_losses(run.model, ids, k=5)
tokens = [run.tokenizer.token_str(i) for i in ids]
worst = max(3.0, float(result.losses[1:].max())) if len(ids) > 1 else 3.0


def color(loss: float) -> str:
    if math.isnan(loss):
        return "#eeeeee"
    hue = int(120 * (1 - min(loss / worst, 1.0)))  # green = expected, red = surprising
    return f"hsl({hue}, 75%, 80%)"


spans = []
for t, (text, loss) in enumerate(zip(tokens, result.losses.tolist())):
    title = f"#{t} loss {loss:.2f}" if not math.isnan(loss) else f"#{t} (first token: nothing predicts it)"
    spans.append(f'<span title="{esc(title)}" style="{CHIP_STYLE}background:{color(loss)}">{esc(visible(text))}</span>')
st.markdown('<div style="line-height:1.9">' + "".join(spans) + "</div>", unsafe_allow_html=True)
st.caption(f"Mean loss {result.mean_loss:.3f} nats/token. Hover a token for its loss; green = expected, "
           "red = surprising. The most surprising: "
           + ", ".join(f"#{p} `{visible(tokens[p])}` ({float(result.losses[p]):.2f})" for p in result.worst(5)))

st.subheader("One token")
position = st.slider("Token", 1, len(ids) - 1, result.worst(1)[0] if len(ids) > 1 else 1,
                     format="%d", help="Defaults to the most surprising token")
st.markdown(f"Token #{position} is `{esc(visible(tokens[position]))}`, loss "
            f"**{float(result.losses[position]):.3f}** (p = {math.exp(-float(result.losses[position])):.3f}).")
left, right = st.columns(2)
with left:
    st.markdown("**The model's top 5 guesses**")
    st.dataframe(pd.DataFrame({"token": [visible(run.tokenizer.token_str(int(i))) for i in result.top_ids[position]],
                               "probability": [round(float(p), 4) for p in result.top_probs[position]]}),
                 hide_index=True, width="stretch")
    if cfg.has_attention:
        st.markdown("**Logit lens at the position before** (what each depth predicted for this token)")
        lens = logit_lens(run.model, ids[:position])
        column = lens_column(lens, position - 1, k=3)
        st.dataframe(pd.DataFrame([{"depth": label, "top 3": "  ".join(
            f"{visible(run.tokenizer.token_str(t))} {p:.2f}" for t, p in row),
            "p(this token)": round(float(lens.probs[d, position - 1, ids[position]]), 3)}
            for d, (label, row) in enumerate(zip(lens.labels, column))]), hide_index=True, width="stretch")
with right:
    if cfg.has_attention:
        c3, c4 = st.columns(2)
        layer = c3.selectbox("Layer", range(cfg.n_layer), index=cfg.n_layer - 1)
        head = c4.selectbox("Head", range(cfg.effective_n_head))
        lo = max(0, position - 40)
        pattern = attention_patterns(run.model, ids[: position])[0, layer, head, lo:, lo:]
        st.plotly_chart(attention_heatmap(pattern, [visible(t) for t in tokens[lo:position]],
                                      f"L{layer}H{head}: where the prediction of #{position} looked"),
                        key="tl_attention")
        st.caption("The bottom row is the position that predicted this token; the columns are what it read.")
