"""Per-token loss: a validation passage coloured by surprise; pick a token to see why."""
import math

import pandas as pd
import streamlit as st
import torch

from explorer.figures.attention import attention_heatmap
from explorer.ui.eval_text import eval_caption, eval_text_or_stop
from explorer.ui.run_picker import selected_run
from explorer.ui.state import bind
from explorer.ui.text import chips_html, code_md, raw_token, token_md, token_text
from gpt.interp.capture import attention_patterns
from gpt.interp.lens import lens_at
from gpt.interp.token_loss import token_losses, validation_passage

run = selected_run()
cfg = run.config
st.title("Per-token loss")
st.caption(f"Model **{run.path.name}** at step {run.step:,}. Each token of a passage of the evaluation text (text "
           "the model never trained on) is coloured by its loss: −log p(token | everything before it).")

evaluation = eval_text_or_stop(run, "Per-token loss")
val = evaluation.ids
st.caption(eval_caption(evaluation))
c1, c2 = st.columns(2)
longest = min(cfg.block_size, 256)
n_tokens = c1.slider("Passage length (tokens)", 8, longest,
                     **bind("length", min(cfg.block_size, 128), options=range(8, longest + 1)))
offset = c2.number_input("Start at token", 0, max(0, len(val) - n_tokens), step=n_tokens,
                         **bind("offset", 0, options=range(max(0, len(val) - n_tokens) + 1)))
ids = validation_passage(val, n_tokens, offset)
result = token_losses(run.model, ids, k=5)
tokens = [token_text(run.tokenizer, i) for i in ids]   # for labels: a newline shows as ↵, as on every page
worst = max(3.0, float(result.losses[1:].max())) if len(ids) > 1 else 3.0


def color(loss: float) -> str:
    if math.isnan(loss):
        return "#eeeeee"
    hue = int(120 * (1 - min(loss / worst, 1.0)))  # green = expected, red = surprising
    return f"hsl({hue}, 75%, 80%)"


chips = [(raw_token(run.tokenizer, i),
          f"#{t} loss {loss:.2f}" if not math.isnan(loss) else f"#{t} (first token: nothing predicts it)", color(loss))
         for t, (i, loss) in enumerate(zip(ids, result.losses.tolist()))]
st.markdown(chips_html(chips), unsafe_allow_html=True)  # the passage keeps its line breaks
st.caption(f"Mean loss {result.mean_loss:.3f} nats/token. Hover a token for its loss; green = expected, "
           "red = surprising. The most surprising: "
           + ", ".join(f"#{p} {code_md(tokens[p])} ({float(result.losses[p]):.2f})" for p in result.worst(5)))

st.subheader("One token")
position = st.slider("Token", 1, len(ids) - 1, format="%d", help="Defaults to the most surprising token",
                     **bind("pos", result.worst(1)[0] if len(ids) > 1 else 1, options=range(1, len(ids))))
st.markdown(f"Token #{position} is {token_md(run.tokenizer, ids[position])}, loss "
            f"**{float(result.losses[position]):.3f}** (p = {math.exp(-float(result.losses[position])):.3f}).")
left, right = st.columns(2)
with left:
    st.markdown("**The model's top 5 guesses**")
    st.dataframe(pd.DataFrame({"token": [token_text(run.tokenizer, int(i)) for i in result.top_ids[position]],
                               "probability": [round(float(p), 4) for p in result.top_probs[position]]}),
                 hide_index=True, width="stretch")
    if cfg.has_attention:
        st.markdown("**Logit lens at the position before** (what each depth predicted for this token)")
        depths, probs = lens_at(run.model, ids[:position], position - 1)   # (L+1, V) at that position only
        top = torch.topk(probs, 3, dim=-1)
        st.dataframe(pd.DataFrame([{"depth": label, "top 3": "  ".join(
            f"{token_text(run.tokenizer, t)} {p:.2f}" for t, p in zip(top.indices[d].tolist(), top.values[d].tolist())),
            "p(this token)": round(float(probs[d, ids[position]]), 3)}
            for d, label in enumerate(depths)]), hide_index=True, width="stretch")
with right:
    if cfg.has_attention:
        c3, c4 = st.columns(2)
        layer = c3.selectbox("Layer", range(cfg.n_layer), **bind("layer", cfg.n_layer - 1, options=range(cfg.n_layer)))
        head = c4.selectbox("Head", range(cfg.effective_n_head),
                            **bind("head", 0, options=range(cfg.effective_n_head)))
        lo = max(0, position - 40)
        pattern = attention_patterns(run.model, ids[: position])[0, layer, head, lo:, lo:]
        st.plotly_chart(attention_heatmap(pattern, tokens[lo:position],
                                      f"L{layer}H{head}: where the prediction of #{position} looked"),
                        key="tl_attention")
        st.caption("The bottom row is the position that predicted this token; the columns are what it read.")
