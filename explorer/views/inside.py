"""Inside a prediction (the landing page): one forward pass, stage by stage, with the selected token's real numbers.

All numbers come from gpt.interp.forward_steps (the pass recomputed by hand from the weights); this page only
lays them out: one box per stage, each with a plain sentence, the formula and the tensor shapes.
"""
import streamlit as st

from explorer.figures.inside import attention_row_figure, keys_figure, logits_figure, pipeline_figure, strips, top_neurons_figure
from explorer.ui.cache import run_dictionaries
from explorer.ui.prompts import teaching_prompt_ids
from explorer.ui.run_picker import selected_run
from explorer.ui.state import bind, place
from explorer.ui.text import chips_html, code_md, raw_token, text_md, token_md, token_text
from gpt.interp import InterpError, forward_steps
from gpt.interp.forward import sampling_view

run = selected_run()
cfg, tok = run.config, run.tokenizer


def transcoder_caption(layer: int, mlp_input) -> None:
    """Neurons are polysemantic: where the run has a transcoder for this layer, name the features it reads here."""
    transcoder = next((d for d in run_dictionaries(run.path)[0]
                       if d.config.kind == "transcoder" and d.config.layer == layer), None)
    if transcoder is None:
        return
    acts = transcoder.module.encode(mlp_input.float()[None])[0]  # (n_features,)
    top = acts.topk(5)
    named = ", ".join(f"#{i} ({v:.2f})" for v, i in zip(top.values.tolist(), top.indices.tolist()) if v > 0)
    m = transcoder.metrics or {}
    recovered = f"; spliced in, it keeps {m['ce_loss_recovered']:.0%} of this layer's effect on the loss" \
        if "ce_loss_recovered" in m else ""
    st.caption(f"Read as features instead: the transcoder **{transcoder.name}** ({transcoder.config.n_features:,} "
               f"features{recovered}) has {int((acts > 0).sum())} active here, the strongest {named or 'none'}. "
               "The Features page shows each feature's card.")

st.title("Inside a prediction")
st.caption(f"Model **{run.path.name}** at step {run.step:,}. A GPT reads the tokens so far and scores every "
           "possible next token. Pick a token below and open any stage to see that token's real numbers.")

ids = teaching_prompt_ids(run)
T, C = len(ids), cfg.n_embd
texts = [token_text(tok, i) for i in ids]   # display form: ↵ for a newline, · for a space

st.plotly_chart(pipeline_figure(cfg, place("layer", 0) if cfg.has_attention else None, T), key="pipeline",
                config={"displayModeBar": False})
st.caption(f"The whole model, left to right, with this run's sizes: T = {T} tokens, C = {C} channels"
           + (f", {cfg.n_layer} blocks of {cfg.effective_n_head} heads × {cfg.head_size} channels" if cfg.has_attention
              else " (a bigram: no blocks)") + f", {cfg.vocab_size} possible next tokens. The orange frame is the "
           "block shown in detail below.")

# st.pills tells options apart by their labels: a repeated token ("R" of "Romeo" twice) would select its last
# copy, so each repeat gets invisible word joiners (U+2060) appended
pill_labels, seen = [], {}
for text in texts:
    seen[text] = seen.get(text, -1) + 1
    pill_labels.append(text_md(text) + "\u2060" * seen[text])   # pill labels are markdown
pos = st.pills("Click a token: the stages below show the prediction made at it", range(T), selection_mode="single",
               format_func=lambda j: pill_labels[j], **bind("pos", T - 1, options=range(T)))
pos = T - 1 if pos is None else pos
try:
    steps = forward_steps(run.model, ids, pos)
except InterpError as e:
    st.error(str(e))
    st.stop()
st.markdown(f"Position **{pos}**, token **{token_md(tok, ids[pos])}** (id {steps.token_id}): the model predicts the token "
            f"that comes after it, reading only positions 0..{pos}.")

with st.expander(f"1 · Tokenizer: the text becomes {T} token ids", expanded=True):
    st.markdown(chips_html([(raw_token(tok, i), f"position {j}, id {i}", "#ffd8a8" if j == pos else "#eeeeee")
                            for j, i in enumerate(ids)]), unsafe_allow_html=True)
    st.write(f"This model's tokenizer has a vocabulary of {cfg.vocab_size} tokens; {token_md(tok, ids[pos])} is token id "
             f"**{steps.token_id}**. The model never sees letters, only these numbers.")
    st.latex(r"\text{text} \;\to\; (t_0, \dots, t_{T-1}),\quad t_i \in \{0, \dots, %d\}" % (cfg.vocab_size - 1))
    st.caption(f"Shape: ({T},) token ids.")

with st.expander("2 · Embeddings: each id becomes a vector of "
                 f"{C} numbers" + (" plus its position's vector" if steps.pos_emb is not None else "")):
    rows = [(f"token row W_E[{steps.token_id}]", steps.tok_emb)]
    if steps.pos_emb is not None:
        rows += [(f"position row W_P[{pos}]", steps.pos_emb), ("sum x₀", steps.embedding)]
    st.plotly_chart(strips(rows, x_name="channel"), key="embed")
    st.caption("Each row is one vector, one cell per channel: blue = positive, red = negative, white = 0; hover "
               "a cell for its value.")
    if steps.pos_emb is not None:
        st.write("The token's row of the embedding table says *what* the token is; the position's row says "
                 "*where* it is. Their sum starts the residual stream.")
        st.latex(r"x_0 = W_E[t_p] + W_P[p]")
        st.caption(f"Shapes: W_E ({cfg.vocab_size}, {C}), W_P ({cfg.block_size}, {C}); x₀ for the prompt ({T}, {C}).")
    else:
        why = ("rotary embeddings turn each head's q and k by an angle that grows with the position"
               if cfg.uses_rotary else "a bigram predicts from the current token alone")
        st.write(f"This model has no position table: {why}.")
        st.latex(r"x_0 = W_E[t_p]")
        st.caption(f"Shapes: W_E ({cfg.vocab_size}, {C}); x₀ for the prompt ({T}, {C}).")

if cfg.has_attention:
    st.subheader(f"3 · The {cfg.n_layer} blocks (one shown in detail)")
    c1, c2 = st.columns(2)
    layer = c1.selectbox("Block shown in detail", range(cfg.n_layer), format_func=lambda i: f"block {i}",
                         **bind("layer", 0, options=range(cfg.n_layer)))
    nh, hs = cfg.effective_n_head, cfg.head_size
    head = c2.selectbox("Head", range(nh), format_func=lambda i: f"head {i}", **bind("head", 0, options=range(nh)))
    block = steps.blocks[layer]
    hstep = block.attention.heads[head]
    norm_name = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm", "none": "no norm"}[cfg.norm]

    def norm_box(norm, label: str, key: str) -> None:
        if norm.kind == "none":
            st.write("This model has no normalisation: the vector passes unchanged.")
            return
        rows = [("before", norm.before), ("normalised", norm.normalised), ("after gain (+ bias)", norm.after)]
        st.plotly_chart(strips(rows), key=key)
        if norm.kind == "layernorm":
            st.write(f"{label}: subtract the mean (**{norm.mean:+.3f}**), divide by the standard deviation "
                     f"(√(variance {norm.var:.3f} + ε) = **{(norm.var + norm.eps) ** 0.5:.3f}**), then apply the "
                     "learned gain γ and bias β per channel. Every block reads a vector of a steady size.")
            st.latex(r"\mathrm{LN}(x) = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} \odot \gamma + \beta")
        else:
            st.write(f"{label}: divide by the root mean square (√(mean square {norm.var:.3f} + ε) = "
                     f"**{(norm.var + norm.eps) ** 0.5:.3f}**; no mean is removed, no bias), then the learned gain γ.")
            st.latex(r"\mathrm{RMSNorm}(x) = \frac{x}{\sqrt{\overline{x^2} + \epsilon}} \odot \gamma")
        st.caption(f"Shape: ({T}, {C}) in, ({T}, {C}) out; γ, β: ({C},).")

    with st.expander(f"3a · {norm_name} before attention (block {layer})"):
        norm_box(block.norm1, "Before attention", "norm1")
    with st.expander(f"3b · Query and keys (head {head})"):
        st.write(f"Each token makes a query (*what am I looking for?*) and a key (*what do I contain?*), "
                 f"{hs} numbers each per head. Position {pos}'s query is compared with the keys of positions "
                 f"0..{pos}; later tokens are not visible.")
        extra = (" Then q and k are RMS-normalised (QK-norm)." if cfg.qk_norm else "") + \
                (" Then both are rotated by an angle proportional to their position (rotary)." if cfg.uses_rotary else "")
        if extra:
            st.write(extra.strip())
        st.plotly_chart(keys_figure(hstep, texts), key="keys")
        st.latex(r"q = h_p W_Q^{(h)},\qquad k_j = h_j W_K^{(h)},\qquad v_j = h_j W_V^{(h)}")
        st.caption(f"Shapes: h ({T}, {C}) × W_QKV ({C}, {3 * C}) → q, k, v ({nh} heads, {T}, {hs}); shown: q ({hs},) "
                   f"and keys ({pos + 1}, {hs}). Blue = positive, red = negative; hover for values.")
    with st.expander(f"3c · Scores, causal mask, softmax (head {head})"):
        st.write(f"The dot product q·k says how well each key matches; dividing by √{hs} keeps the scores in a "
                 "range where softmax does not saturate. Future positions are masked to −∞ so the model cannot "
                 "peek at the token it must predict. Softmax turns scores into weights that sum to 1.")
        st.plotly_chart(attention_row_figure(hstep, texts, pos), key="scores")
        st.latex(r"w_j = \mathrm{softmax}_j\!\left(\frac{q \cdot k_j}{\sqrt{%d}} + m_j\right),\quad "
                 r"m_j = \begin{cases} 0 & j \le %d \\ -\infty & j > %d \end{cases}" % (hs, pos, pos))
        best = int(hstep.weights.argmax())
        st.caption(f"One column per token (darker = larger within its row, the value written in the cell). Grey "
                   f"= future, masked. Head {head} puts {float(hstep.weights[best]):.0%} of its attention on "
                   f"position {best} {code_md(texts[best])}. Shapes: scores and weights ({pos + 1},) here, "
                   f"({nh}, {T}, {T}) for the whole prompt.")
    with st.expander("3d · Weighted sum of values, all heads concatenated, W_O, residual add"):
        top = sorted(range(pos + 1), key=lambda j: -float(hstep.weights[j]))[:3]
        rows = [(f"v {j}:{texts[j]} × {float(hstep.weights[j]):.2f}", hstep.values[j]) for j in top]
        rows.append((f"head {head} output Σ w·v", hstep.out))
        st.plotly_chart(strips(rows, x_name="head channel"), key="values")
        st.write(f"Head {head} returns the weighted average of the values (the rows above are the three it weighs "
                 f"most). The {nh} heads' outputs are laid side by side ({nh} × {hs} = {C}), mixed by W_O, and "
                 "*added* to the residual stream: attention writes into the stream, it does not replace it.")
        rows2 = [("heads concatenated", block.attention.concat), ("× W_O (attention output)", block.attention.out),
                 ("residual before", block.resid_in), ("residual after (+)", block.resid_mid)]
        st.plotly_chart(strips(rows2), key="concat")
        st.latex(r"z = \textstyle\sum_j w_j v_j,\qquad x \leftarrow x + [z^{(0)}, \dots, z^{(%d)}]\, W_O"
                 % (nh - 1))
        st.caption(f"Shapes: each head ({T}, {hs}); concatenated ({T}, {C}); W_O ({C}, {C}); residual ({T}, {C}).")
    if block.mlp is not None:
        mlp = block.mlp
        act = {"gelu": "GELU", "gelu_tanh": "GELU (tanh)", "relu": "ReLU", "relu2": "ReLU²"}[mlp.activation]
        with st.expander(f"3e · {norm_name} and the feed-forward layer (MLP, {4 * C} neurons, {act})"):
            norm_box(mlp.norm, "Before the MLP", "norm2")
            st.write(f"The MLP works on each position alone: it expands to {4 * C} hidden neurons, bends them "
                     f"with {act} (negative inputs mostly silenced), and projects back to {C} channels, again added "
                     "to the residual stream.")
            st.plotly_chart(strips([("before " + act, mlp.pre), ("after " + act, mlp.post)], x_name="neuron"),
                            key="mlp")
            st.plotly_chart(top_neurons_figure(mlp.top_neurons), key="top_neurons")
            names = ", ".join(f"n{i} ({v:.2f})" for i, v in mlp.top_neurons[:5])
            st.caption(f"The most active neurons here: {names}. The MLP neurons page shows where each fires most "
                       "over the validation text.")
            transcoder_caption(layer, mlp.norm.after)
            st.plotly_chart(strips([("MLP output", mlp.out), ("residual after (+)", block.resid_out)]), key="mlp_out")
            st.latex(r"x \leftarrow x + \mathrm{%s}(h\, W_{in} + b_{in})\, W_{out} + b_{out}"
                     % act.replace("²", "^2").replace(" (tanh)", ""))
            st.caption(f"Shapes: h ({T}, {C}) × W_in ({C}, {4 * C}) → ({T}, {4 * C}) × W_out ({4 * C}, {C}) → "
                       f"({T}, {C}).")
    with st.expander("The residual stream at this token, block by block"):
        rows = [("embedding x₀", steps.embedding)] + [(f"after block {b.layer}", b.resid_out) for b in steps.blocks]
        st.plotly_chart(strips(rows), key="stream")
        st.caption("Each block adds to this vector; nothing else carries information from block to block.")

st.subheader("4 · Output")


@st.fragment
def output_stage() -> None:
    """Its own fragment: moving the temperature reruns only this part of the page."""
    with st.expander("4a · Final norm and the logits", expanded=False):
        if steps.final_norm.kind != "none":
            st.plotly_chart(strips([("before", steps.final_norm.before), ("after", steps.final_norm.after)]),
                            key="final_norm")
        tied = ("W_U is the token embedding table W_E, transposed (tied weights)" if cfg.ties_embeddings
                else "W_U is a matrix of its own (not tied to the token embedding)")
        st.write(f"The last vector is normalised once more and multiplied by the unembedding W_U: one score "
                 f"(logit) per token of the vocabulary, {cfg.vocab_size} in all. {tied}."
                 + (f" Then the soft cap squeezes them into ±{steps.softcap:g}." if steps.softcap else ""))
        st.latex(r"\ell = \mathrm{norm}(x_L)\, W_U" + (r",\quad \ell \leftarrow c \tanh(\ell / c)" if steps.softcap else ""))
        st.caption(f"Shapes: ({T}, {C}) × W_U ({C}, {cfg.vocab_size}) → logits ({T}, {cfg.vocab_size}); here ({cfg.vocab_size},).")
    with st.expander("4b · Softmax, temperature, top-k / top-p, and the next token", expanded=True):
        c1, c2, c3, c4 = st.columns(4)
        temperature = c1.slider("Temperature", 0.1, 2.0, step=0.05, **bind("temperature", 0.8),
                                help="Divides the logits: below 1 sharpens the distribution, above 1 flattens it.")
        top_k = c2.number_input("Top-k (0 = off)", 0, cfg.vocab_size, **bind("top_k", 0, options=range(cfg.vocab_size + 1)))
        top_p = c3.slider("Top-p", 0.05, 1.0, step=0.05, **bind("top_p", 1.0),
                          help="Keep the smallest set of tokens holding this much probability (1 = off).")
        seed = c4.number_input("Seed", 0, 2**31 - 1, **bind("seed", 1))
        try:
            view = sampling_view(steps.logits, float(temperature), int(top_k), float(top_p), int(seed))
        except InterpError as e:
            st.error(str(e))
            return
        names = [token_text(tok, i) for i in range(cfg.vocab_size)]
        st.plotly_chart(logits_figure(view, names), key="logits")
        st.markdown(f"Sampling with seed {seed} picks **{code_md(names[view.pick])}** (probability "
                    f"{float(view.final[view.pick]):.1%} after the cut-offs). "
                    + (f"The actual next token in the prompt is {token_md(tok, ids[pos + 1])}."
                       if pos + 1 < T else ""))
        st.latex(r"p_i = \frac{e^{\ell_i / \tau}}{\sum_j e^{\ell_j / \tau}},\quad \tau = %.2f" % temperature)
        st.caption(f"Bars: the 20 most likely tokens after temperature; blue = kept by top-k/top-p, grey = cut, "
                   f"orange = the token sampling picked. Shape: ({cfg.vocab_size},) probabilities summing to 1.")


output_stage()
