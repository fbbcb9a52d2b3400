"""Steering: add a direction to the residual stream while the model writes (gpt.interp.steering)."""
import streamlit as st

from explorer.ui.cache import feature_labels, run_dictionaries
from explorer.ui.feature_labels import label_markdown, score_markdown
from explorer.ui.prompts import crop_note, default_prompt, encode_or_explain
from explorer.ui.run_picker import selected_attention_run
from explorer.ui.state import place
from explorer.ui.text import esc
from gpt.interp.capture import InterpError
from gpt.interp.features.cards import feature_activations, feature_direction
from gpt.interp.patching import boundary_labels
from gpt.interp.steering import (
    default_coefficients,
    generate_clamped_side_by_side,
    generate_side_by_side,
    head_direction,
    mean_difference,
    neuron_direction,
    typical_residual_norm,
)

SET_A = "I love thee, sweet, my love, my dear heart.\nO gentle love, kiss me, my sweet love."
SET_B = "Villain, I will kill thee, thou damned traitor!\nDie, wretch! I hate thee, slave and villain."
KINDS = ["difference of two prompt sets", "one neuron's output", "one head's output", "one feature's direction"]



def draw_clamp(run, dic, feature: int, prompt: str, ids: list[int]) -> None:
    """Clamping a dictionary feature: one column per value (the feature as it is, then the values asked for)."""
    peak = float(feature_activations(run.model, dic, ids)[:, feature].max())
    st.caption(f"Feature #{feature} of {dic.name} fires up to **{peak:.2f}** on this prompt. Each column holds it at "
               "one value at every position (0 = off), reading its activation where it is computed; the first "
               f"column leaves it as it is. A clamp acts where the dictionary sits ({dic.config.output}), so the "
               "residual-stream choice above does not apply.")
    scale = peak if peak > 0 else 5.0
    c1, c2, c3 = st.columns(3)
    text = c1.text_input("Clamp values (comma-separated)", f"0, {2 * scale:.3g}, {5 * scale:.3g}",
                         key=f"steer_clamps_{dic.name}_{feature}")
    n_new = c2.slider("New tokens", 20, 300, 120, 20, key="steer_clamp_new")
    seed = c3.number_input("Seed", 0, 10_000, 1, key="steer_clamp_seed")
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()][:5]
    except ValueError:
        st.error("Clamp values are numbers separated by commas, e.g. 0, 10, 25.")
        return
    if not st.button("Generate side by side", type="primary", key="steer_clamp_go"):
        return
    try:
        with st.spinner("Generating..."):
            columns = generate_clamped_side_by_side(run.model, ids, dic, feature, [None] + values,
                                                    max_new_tokens=n_new, temperature=0.8, seed=int(seed))
    except InterpError as e:
        st.error(str(e))
        return
    for col, v, new in zip(st.columns(len(columns)), [None] + values, columns):
        col.markdown("**as it is** (unsteered)" if v is None else f"**clamped to {v:g}**")
        col.markdown(f'<pre style="white-space:pre-wrap">{esc(prompt)}<b>{esc(run.tokenizer.decode(new))}</b></pre>',
                     unsafe_allow_html=True)
    st.caption("Same seed and sampling (temperature 0.8) in every column, so differences come from the clamp alone; "
               "the first column is exactly what the Generate page writes with this seed.")


run = selected_attention_run("Steering", "no layers to steer")
cfg = run.config
st.caption(f"Model **{run.path.name}** at step {run.step:,}. A steering vector is added to the residual stream at "
           "one layer, at every position, while the model writes. Coefficient 0 is the model untouched.")
dictionaries = run_dictionaries(run.path)[0]
kinds = [k for k in KINDS if (cfg.has_mlp or "neuron" not in k) and (dictionaries or "feature" not in k)]
kind = st.radio("Steering vector", kinds, horizontal=True,
                help="A feature direction needs a dictionary of this run (the Features page trains them)")
boundaries = boundary_labels(run.model)
boundary = st.selectbox("Add it to the residual stream", range(len(boundaries)), index=min(2, len(boundaries) - 1),
                        format_func=lambda b: boundaries[b],
                        help="Earlier layers change more of the computation; later ones mostly the next token")
prompt = st.text_area("Prompt to continue", default_prompt(run, max_tokens=min(32, cfg.block_size)), height=70,
                      key=f"steer_prompt_{run.path.name}",
                      help="Starts as a line of the evaluation text chosen in the sidebar")
ids = encode_or_explain(run, prompt)
if ids is None:
    st.stop()
ids = crop_note(run, ids)

try:
    if kind == KINDS[0]:
        known = not run.tokenizer.unknown_chars(SET_A + SET_B)
        a, b = st.columns(2)
        text_a = a.text_area("Towards these lines (one prompt per line)", SET_A if known else "", height=100)
        text_b = b.text_area("Away from these lines", SET_B if known else "", height=100)
        sets = []
        for text in (text_a, text_b):
            lines = [line for line in text.splitlines() if line.strip()]
            encoded = [encode_or_explain(run, line) for line in lines]
            if not lines or any(e is None for e in encoded):
                st.info("Type at least one line on each side.")
                st.stop()
            sets.append(encoded)
        vector = mean_difference(run.model, sets[0], sets[1], boundary)
        what = "the mean residual of the first lines minus that of the second"
    elif kind == KINDS[1]:
        a, b = st.columns(2)
        layer = a.number_input("Layer", 0, cfg.n_layer - 1, 0)
        neuron = b.number_input("Neuron", 0, 4 * cfg.n_embd - 1, 0)
        vector = neuron_direction(run.model, int(layer), int(neuron))
        what = f"what neuron {neuron} of layer {layer}'s MLP writes per unit of activation"
    elif kind == KINDS[3]:
        a, b = st.columns(2)
        names = [d.name for d in dictionaries]
        picked = place("feature", None) or ""
        name = a.selectbox("Dictionary", names, index=names.index(picked.split("#")[0]) if picked.split("#")[0] in
                           names else 0)
        dic = dictionaries[names.index(name)]
        default = int(picked.split("#")[1]) if picked.startswith(name + "#") else 0
        feature = b.number_input("Feature", 0, dic.config.n_features - 1, min(default, dic.config.n_features - 1))
        its_labels = feature_labels(dic)[0]
        if its_labels is not None and its_labels.entry(feature) is not None:
            st.caption(f"#{feature}: {label_markdown(its_labels, feature)} · {score_markdown(its_labels, feature)}")
        vector = feature_direction(dic, int(feature))
        clamp = st.toggle("Clamp its activation instead (hold it at a value wherever the model runs)",
                          key="steer_clamp", help="Adding pushes along the direction whatever the feature does; "
                          "clamping sets the feature's own activation (0 = off where it fires) and leaves the rest")
        writes = dic.config.output.split(".")
        what = (f"feature #{feature} of {name}'s decoder row (it writes into {dic.config.output}; its natural "
                f"boundary is after block {writes[1]})")
    else:
        a, b = st.columns(2)
        layer = a.number_input("Layer", 0, cfg.n_layer - 1, 0)
        head = b.number_input("Head", 0, cfg.effective_n_head - 1, 0)
        vector = head_direction(run.model, ids, int(layer), int(head))
        what = f"head L{layer}H{head}'s mean output over the prompt"
    norm = typical_residual_norm(run.model, ids, boundary)
    suggested = default_coefficients(vector, norm)
except InterpError as e:
    st.error(str(e))
    st.stop()
if kind == KINDS[3] and clamp:
    draw_clamp(run, dic, int(feature), prompt, ids)
    st.stop()
st.caption(f"Vector: {what}; length {float(vector.norm()):.2f}, against a residual stream of typical length "
           f"{norm:.1f} here. The suggested coefficients go up to a push as long as the residual stream itself.")
c1, c2, c3 = st.columns(3)
coef_text = c1.text_input("Coefficients (comma-separated)", ", ".join(f"{c:g}" for c in suggested),
                          key=f"steer_coefs_{kind}_{boundary}")
n_new = c2.slider("New tokens", 20, 300, 120, 20)
seed = c3.number_input("Seed", 0, 10_000, 1)
try:
    coefficients = [float(c) for c in coef_text.replace(";", ",").split(",") if c.strip()][:6]
except ValueError:
    st.error("Coefficients are numbers separated by commas, e.g. 0, 2, -2.")
    st.stop()
if st.button("Generate side by side", type="primary"):
    try:
        with st.spinner("Generating..."):
            columns = generate_side_by_side(run.model, ids, vector, boundary, coefficients,
                                            max_new_tokens=n_new, temperature=0.8, seed=int(seed))
    except InterpError as e:
        st.error(str(e))
        st.stop()
    for col, c, new in zip(st.columns(len(coefficients)), coefficients, columns):
        col.markdown(f"**coefficient {c:g}**" + (" (unsteered)" if c == 0 else ""))
        col.markdown(f'<pre style="white-space:pre-wrap">{esc(prompt)}<b>{esc(run.tokenizer.decode(new))}</b></pre>',
                     unsafe_allow_html=True)
    st.caption("Same seed and sampling (temperature 0.8) in every column, so differences come from the vector "
               "alone; the unsteered column is exactly what the Generate page writes with this seed.")
