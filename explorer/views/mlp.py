"""MLP neurons: which hidden units of a feed-forward layer fire on the prompt, where one neuron fires most over
the validation text, and which next tokens it pushes up or down."""
import streamlit as st

from explorer.figures.inside import effect_bars, neuron_heatmap
from explorer.ui.cache import run_top_contexts
from explorer.ui.eval_text import eval_caption, eval_key, eval_text_or_note
from explorer.ui.prompts import teaching_prompt_ids
from explorer.ui.run_picker import selected_run
from explorer.ui.scans import forget_stop, run_scan, was_stopped
from explorer.ui.state import bind, fresh_click, remember
from explorer.ui.text import chips_html, code_md, raw_token, token_text
from gpt.interp import InterpError
from gpt.interp.neurons import (
    AUTO_SCAN,
    cached_top_contexts,
    is_scanned,
    neuron_activations,
    neuron_logit_effect,
    scan_length,
    scan_seconds,
)
from gpt.sizing import count_params

SHOWN_NEURONS = 40   # rows of the heatmap: the neurons most active somewhere in the prompt

run = selected_run()
cfg, tok = run.config, run.tokenizer
st.title("MLP neurons")
if not cfg.has_mlp:
    st.info(f"This **{cfg.arch.replace('_', '-')}** model has no feed-forward (MLP) layers: only the GPT rung of the "
            "ladder has them. Pick a GPT model in the sidebar.")
    st.stop()
N = 4 * cfg.n_embd
st.caption(f"Model **{run.path.name}** at step {run.step:,}. Each block's MLP has {N} hidden neurons; each one "
           "reads the residual stream at one position, fires (or not), and writes a direction back.")

ids = teaching_prompt_ids(run)
labels = [token_text(tok, i) for i in ids]
c1, c2 = st.columns([1, 3])
layer = c1.selectbox("Layer", range(cfg.n_layer), format_func=lambda i: f"layer {i}",
                     **bind("layer", 0, options=range(cfg.n_layer)))
try:
    acts = neuron_activations(run.model, ids, layer)          # (T, N)
except InterpError as e:
    st.error(str(e))
    st.stop()
strongest = acts.max(0).values.argsort(descending=True)[:SHOWN_NEURONS].tolist()
neuron = c2.number_input(f"Neuron (0..{N - 1})", 0, N - 1, **bind("neuron", strongest[0], options=range(N)),
                         help="Type any neuron's number; the heatmap lists the ones most active on this prompt.")
neuron = int(neuron)

event = st.plotly_chart(neuron_heatmap(acts, strongest, labels, neuron), key="neuron_heatmap", on_select="rerun",
                        selection_mode="points", config={"displayModeBar": False})
points = event.selection.points if event and event.selection else []
picked = points[0].get("customdata") if points else None
picked = int(picked[0] if isinstance(picked, list) else picked) if picked is not None else None
if fresh_click("neuron_heatmap", picked) and picked != neuron:
    remember("neuron", picked)
    st.rerun()
st.caption(f"The {len(strongest)} neurons of layer {layer} that fire most somewhere in the prompt (rows, strongest "
           "first) at every position (columns): blue = positive activation, red = negative. Hover for values; "
           "**click a row** to study that neuron (orange frame).")

def top_contexts_column() -> None:
    """Where the neuron fires most over the evaluation text; a note instead when there is no usable text, or a
    button that says what the scan costs when the model is big."""
    evaluation = eval_text_or_note(run, "Top contexts")
    if evaluation is None:
        return
    val = evaluation.ids
    n_scan = scan_length(cfg, len(val))
    cost = count_params(cfg) * n_scan
    request = (str(run.path), eval_key(run))
    if not is_scanned(run, val[:n_scan]):
        stopped = was_stopped("mlp_scan", request)
        if stopped or (cost > AUTO_SCAN and st.session_state.get("_mlp_scan_asked") != request):
            # a big model: the scan takes a while, so it waits for a click that says how long; so does a scan
            # the learner stopped
            st.markdown("**Where does it fire most?**")
            if stopped:
                st.caption("The scan was stopped; nothing of it was kept.")
            if st.button(f"Scan {n_scan:,} tokens (about {max(1, round(scan_seconds(cfg, n_scan)))} s)", key="mlp_scan",
                         help="Finds every neuron's top contexts in the evaluation text, once per weights and text "
                              "(kept in the run folder); a progress bar shows how far it is and it can be stopped."):
                st.session_state["_mlp_scan_asked"] = request
                forget_stop("mlp_scan")
                st.rerun()
            st.caption(eval_caption(evaluation))
            return
        try:
            done = run_scan("mlp_scan", request, f"Finding where each neuron fires most in {n_scan:,} tokens of the "
                            "evaluation text (once per weights and text; kept in the run folder)",
                            lambda progress: cached_top_contexts(run, val[:n_scan], progress))
        except InterpError as e:   # e.g. shorter than one window: the message says how long it must be
            st.info(f"{e}. Choose a longer evaluation text in the sidebar.")
            return
        if done is None:   # stopped: show the button to start again
            st.session_state.pop("_mlp_scan_asked", None)
            st.rerun()
    try:
        contexts = run_top_contexts(run.path, eval_key(run), n_scan)
    except InterpError as e:
        st.info(f"{e}. Choose a longer evaluation text in the sidebar.")
        return
    rows = []
    for value, before, token, after in contexts.contexts(val, layer, neuron):
        pieces = [(tok.decode(before), "context", "#f2f2f2"),
                  (raw_token(tok, token), f"activation {value:.3f}", "#ffb347"),
                  (tok.decode(after), "after", "#fafafa")]
        rows.append(f"<div style='display:flex;gap:8px;align-items:baseline'><code style='min-width:4em'>"
                    f"{value:.2f}</code>{chips_html(pieces).replace('<br>', '')}</div>")
    st.markdown("".join(rows), unsafe_allow_html=True)
    scanned = ("the whole evaluation text" if contexts.n_tokens >= len(val) - cfg.block_size
               else f"the first {contexts.n_tokens:,} tokens of the evaluation text (a model this size scans no more)")
    st.caption(f"Where neuron {neuron} fires most over {scanned}: the activation, then the text leading up to the "
               "token (orange) it fires on. Computed once per run, step and text and kept in the run folder. "
               + eval_caption(evaluation))


st.subheader(f"Neuron {neuron} of layer {layer}")
left, right = st.columns([3, 2], gap="large")
with left:
    top_contexts_column()
with right:
    effect = neuron_logit_effect(run.model, layer, neuron)
    order = effect.argsort(descending=True).tolist()
    up, down = order[:8], order[::-1][:8]
    st.plotly_chart(effect_bars([token_text(tok, i) for i in up], [float(effect[i]) for i in up], "Promotes"),
                    key="promotes")
    st.plotly_chart(effect_bars([token_text(tok, i) for i in down], [float(effect[i]) for i in down], "Suppresses"),
                    key="suppresses")
    st.caption("The neuron's output direction (its column of W_out) times the unembedding W_U: how much one unit "
               "of activation raises (blue) or lowers (red) each next token's logit directly, before later layers "
               f"and the final norm. On this prompt it peaks at {float(acts[:, neuron].max()):.2f} on "
               f"{code_md(labels[int(acts[:, neuron].argmax())])}.")
