"""Generate: sample from the selected model token by token, colour each token by how expected it was."""
import time

import streamlit as st

from explorer.figures.kv_cache import cache_growth_figure, decode_step_figure
from explorer.figures.tokens import token_bars
from explorer.ui.prompts import crop_note, default_prompt, encode_or_explain
from explorer.ui.run_picker import selected_run
from explorer.ui.state import bind, remember
from explorer.ui.text import chips_html, prob_color, token_md, token_text
from gpt.generate import GenerationError, stream_text
from gpt.interp import forward_steps
from gpt.interp.next_token import next_token_distribution, top_k

run = selected_run()
tok = run.tokenizer
st.title("Generate")
st.caption(f"Model **{run.path.name}** at step {run.step:,}. The model predicts one token at a time; sampling "
           "picks from its distribution after temperature, top-k and top-p reshape it.")

prompt = st.text_area("Prompt", height=90, **bind("prompt", default_prompt(run, max_tokens=min(24, run.config.block_size))))
c1, c2, c3, c4, c5, c6 = st.columns(6)
max_new = c1.number_input("Max new tokens", 1, 2000, step=50, **bind("max_new", 200, options=range(1, 2001)))
temperature = c2.slider("Temperature", 0.1, 2.0, step=0.05, help="Below 1 sharpens, above 1 flattens.",
                        **bind("temperature", 0.8))
k = c3.number_input("Top-k (0 = off)", 0, tok.vocab_size,
                    **bind("top_k", 0 if tok.vocab_size < 100 else 50, options=range(tok.vocab_size + 1)))
top_p = c4.slider("Top-p", 0.05, 1.0, step=0.05, help="Keep the smallest set of tokens holding this much "
                                                    "probability (1 = off).", **bind("top_p", 1.0))
seed = c5.number_input("Seed", 0, 2**31 - 1, **bind("seed", 1))
greedy = c6.checkbox("Greedy", help="Always take the most likely token (ignores the sampling settings).",
                     **bind("greedy", False))

ids = encode_or_explain(run, prompt)
if ids is None:
    st.stop()
ids = crop_note(run, ids)  # stream_text crops the same way (gpt.generate.crop_prompt)

left, right = st.columns([3, 2], gap="large")
with right:
    probs = next_token_distribution(run.model, ids)
    top = top_k(probs, 15)
    st.plotly_chart(token_bars([token_text(tok, i) for i, _ in top], [p for _, p in top],
                               "Next token after the prompt"), key="next_token_chart")
    st.caption("The model's probability (temperature 1) for each candidate next token, most likely first.")

with left:
    result_key = f"gen_result_{run.path.name}"
    if st.button("Generate", type="primary", icon=":material/play_arrow:"):
        out = st.empty()
        steps = []
        last_draw = 0.0
        try:
            for step in stream_text(run.model, tok, prompt, int(max_new), temperature=float(temperature),
                                    top_k=int(k) or None, top_p=float(top_p) if top_p < 1 else None,
                                    greedy=greedy, seed=int(seed), alternatives=10):
                steps.append((step.token_id, step.text, step.prob, step.alternatives))
                if time.monotonic() - last_draw > 0.05:  # redraw at most 20 times a second
                    out.markdown(chips_html([(t, f"p={p:.3f}", prob_color(p)) for _, t, p, _ in steps]),
                                 unsafe_allow_html=True)
                    last_draw = time.monotonic()
        except GenerationError as e:
            st.error(str(e))
        out.empty()
        st.session_state[result_key] = {"prompt": prompt, "steps": steps}
    result = st.session_state.get(result_key)
    if result and result["steps"]:
        steps = result["steps"]
        st.markdown(chips_html([(result["prompt"], "prompt", "#eeeeee")] +
                               [(t, f"step {n}: p={p:.3f}", prob_color(p)) for n, (_, t, p, _) in enumerate(steps)]),
                    unsafe_allow_html=True)
        st.caption("Grey: your prompt. Each generated token is coloured by the probability the model gave it: "
                   "green = expected, red = a surprising pick. Hover for the value.")
        mean_p = sum(p for _, _, p, _ in steps) / len(steps)
        st.caption(f"{len(steps)} tokens · mean probability of the chosen token {mean_p:.2f}")
        with st.expander("Plain text"):
            st.code(result["prompt"] + "".join(t for _, t, _, _ in steps), language=None, wrap_lines=True)
        n = st.slider("Inspect generated token", 0, len(steps) - 1, 0) if len(steps) > 1 else 0
        token_id, text, p, alts = steps[n]
        ids_alt = [i for i, _ in alts]
        st.plotly_chart(token_bars([token_text(tok, i) for i in ids_alt], [q for _, q in alts],
                                   f"Step {n}: picked {token_text(tok, token_id)} (p={p:.3f})",
                                   chosen=ids_alt.index(token_id) if token_id in ids_alt else None),
                        key="alternatives_chart")
        st.caption("The top alternatives the model considered at this step; orange is the token that was sampled "
                   "(absent when sampling picked something outside the top 10).")

        if st.button("Open in Attention", icon=":material/grid_on:",
                     help="Show the attention of the prompt and the generated tokens (the last "
                          f"{run.config.block_size} tokens, the model's context) on the Attention page."):
            full = encode_or_explain(run, result["prompt"]) + [t for t, _, _, _ in steps]
            remember("prompt", tok.decode(full[-run.config.block_size:]))
            remember("pos", min(len(full), run.config.block_size) - 1)
            st.switch_page("views/attention.py")

        if run.config.has_attention:
            st.subheader("Inside one decoding step: the KV cache")
            cfg = run.config
            full = encode_or_explain(run, result["prompt"]) + [t for t, _, _, _ in steps]
            t = len(full) - len(steps) + n - 1  # the position fed in at the step that produced generated token n
            window = full[max(0, t + 1 - cfg.block_size):t + 1]   # the context the model saw at that step
            k1, k2 = st.columns(2)
            layer = k1.selectbox("Layer", range(cfg.n_layer), format_func=lambda i: f"layer {i}",
                                 **bind("layer", 0, options=range(cfg.n_layer)))
            head = k2.selectbox("Head", range(cfg.effective_n_head), format_func=lambda i: f"head {i}",
                                **bind("head", 0, options=range(cfg.effective_n_head)))
            hstep = forward_steps(run.model, window, len(window) - 1).blocks[layer].attention.heads[head]
            st.markdown(f"To produce generated token {n} {token_md(tok, full[t + 1])}, the model runs "
                        f"only the newest token "
                        f"{token_md(tok, window[-1])} through each block: it computes that one token's "
                        f"q, k and v, **appends** k and v as a new row to the cache (orange), and compares the one "
                        f"query with all {len(window)} cached keys. Earlier rows are reused, never recomputed.")
            st.plotly_chart(decode_step_figure(hstep, [token_text(tok, i) for i in window]), key="kv_step")
            st.caption(f"Layer {layer}, head {head}: one row per token so far, {cfg.head_size} channels each (blue = "
                       "positive, red = negative); right: the new query's attention weights over the cache. Move "
                       "'Inspect generated token' to watch the cache grow by one row per token.")
            st.plotly_chart(cache_growth_figure(cfg.n_layer, cfg.n_embd, len(full) - len(steps), len(full), t),
                            key="kv_growth")
            st.caption(f"The cache holds K and V for every layer and token: 2 × {cfg.n_layer} layers × "
                       f"{cfg.n_embd} channels = {2 * cfg.n_layer * cfg.n_embd:,} numbers per token; orange = the "
                       f"step shown. Without it, each step would recompute all {cfg.block_size} positions.")
    else:
        st.info("Press **Generate** to continue the prompt.")
