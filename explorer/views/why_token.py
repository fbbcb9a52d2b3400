"""Why this token: direct logit attribution of one prediction (computed by gpt.interp.attribution)."""
import streamlit as st
import torch

from explorer.figures.attribution import dla_waterfall, head_heatmap
from explorer.ui.prompts import crop_note, default_prompt, encode_or_explain
from explorer.ui.run_picker import selected_run
from explorer.ui.state import bind
from explorer.ui.text import chips_html, raw_token, token_md, token_text
from gpt.interp.attribution import describe_top_heads, direct_logit_attribution
from gpt.interp.capture import InterpError, run_with_cache

N_CHOICES = 10

run = selected_run()
st.title("Why this token")
st.caption(f"Model **{run.path.name}** at step {run.step:,}. Pick a position in the prompt: the model's guess for "
           "the *next* token there is split into what each part of the model wrote towards it.")
prompt = st.text_area("Prompt", height=90, **bind("prompt", default_prompt(run, max_tokens=min(64, run.config.block_size))))
ids = encode_or_explain(run, prompt)
if ids is None:
    st.stop()
ids = crop_note(run, ids)
T = len(ids)
# the query position is shared with the other pages that pick one (a new or shorter prompt: its last token)
position = st.slider("Position", 0, max(T - 1, 1), disabled=T == 1,
                     help="The prediction made after this token (0 = the first token)",
                     **bind("pos", T - 1, options=range(T)))
position = min(position, T - 1)
st.markdown(chips_html([(raw_token(run.tokenizer, t), f"position {i}", "#ffd54f" if i == position else "#eceff1")
                        for i, t in enumerate(ids)]), unsafe_allow_html=True)

logits = run_with_cache(run.model, ids, names=set()).logits[0, position].float()
probs = torch.softmax(logits, -1)
top = torch.topk(probs, min(N_CHOICES, probs.numel()))
choices = top.indices.tolist()
label = lambda i: f"{token_text(run.tokenizer, i)}  ({float(probs[i]):.1%})"  # noqa: E731
left, right = st.columns(2)
target = left.selectbox("Explain the logit of", choices, format_func=label, key="why_target",
                        help="The model's top guesses after this position, most likely first")
contrast = right.selectbox("Against (optional)", [None] + [c for c in choices if c != target], key="why_contrast",
                           format_func=lambda i: "nothing: the logit itself" if i is None else label(i),
                           help="With a second token, every number is for the logit difference: why this "
                                "token rather than that one")
try:
    result = direct_logit_attribution(run.model, ids, position, target, contrast)
except InterpError as e:
    st.error(str(e))
    st.stop()

what = (f"logit of {token_md(run.tokenizer, target)}" if contrast is None else
        f"logit difference {token_md(run.tokenizer, target)} − {token_md(run.tokenizer, contrast)}")
cap = f" before the soft cap ({result.softcap:g}); the model outputs {result.model_logit:.2f}" if result.softcap else ""
st.markdown(f"After position {position} ({token_md(run.tokenizer, ids[position])}), the {what} is "
            f"**{result.total:.2f}**{cap}.")
st.plotly_chart(dla_waterfall(result.parts, result.total, title="What wrote this logit: the largest parts"),
                key="why_waterfall")
st.caption("Read left to right: each bar adds (green) or subtracts (red) its part, and the blue bar is the sum, "
           "the model's own logit. LxHy = head y of layer x; Lx.mlp = the MLP of layer x; embed = token + position "
           "embeddings; ln_f.bias = the final LayerNorm's bias. The final norm's scale is frozen at this forward "
           "pass, so the parts add up exactly.")
if result.n_head:
    st.plotly_chart(head_heatmap(result.heads, title="Every head's direct contribution"), key="why_heads")
    st.caption("One cell per head: blue pushed towards the token, red away from it. \"Direct\" means straight to "
               "the logits; a head that only feeds later heads shows up in theirs (the Patching page measures that).")
    st.markdown(describe_top_heads(result))  # names and numbers only: nothing to escape
