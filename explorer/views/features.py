"""Features: the run's sparse dictionaries (transcoders, SAEs), the features active at a token, and a feature card.

Computations live in gpt.interp.features (cards.py); this page lays them out and starts dictionary training as a
background process (explorer/feature_jobs.py).
"""
import streamlit as st

from explorer import feature_jobs
from explorer.cache import cached_run, forget_dictionaries, run_dictionaries, run_eval_text
from explorer.common import chips_html, esc, selected_attention_run, teaching_prompt_ids, visible
from explorer.evaltext import eval_caption, eval_key, eval_text_or_stop
from explorer.figures.features import activation_histogram, density_figure
from explorer.figures.inside import effect_bars
from explorer.jobs import format_eta
from explorer.state import bind, place, remember
from gpt.data import CorpusError
from gpt.interp.features.cards import cached_scan, feature_logit_effect, features_at
from gpt.interp.features.training import FeatureTrainConfig

run = selected_attention_run("Features", "no blocks, so no activations inside it to learn features of")
cfg, tok = run.config, run.tokenizer
st.caption("A neuron of an MLP fires for many unrelated things. A **sparse dictionary** rewrites a layer's "
           "activations as a few active *features* out of many, each (ideally) one idea: a **transcoder** stands in "
           "for an MLP (reads its input, predicts its output), an **SAE** reconstructs a residual-stream site. "
           "Train them here or with `gpt-features train`.")

good, broken = run_dictionaries(run.path)
for b in broken:
    st.warning(f"Dictionary **{esc(b.name)}** cannot be used: {b.error}")


# ---- training ----
@st.fragment(run_every=1.0 if feature_jobs.running(run.path) else None)
def training_status() -> None:
    state = feature_jobs.progress(run.path)
    if feature_jobs.running(run.path) and state:
        if state.get("state") == "training" and state.get("total"):
            st.progress(state["step"] / state["total"], text=f"Training {', '.join(state['names'])}: step "
                        f"{state['step']:,}/{state['total']:,} · ETA {format_eta(state.get('eta_s'))}")
        else:
            st.caption(f"Dictionary training: {state.get('state', 'starting')}...")
        if st.button("Stop the dictionary training", key="stop_features"):
            feature_jobs.request_stop(run.path)
    elif state and state.get("state") in ("done", "stopped", "failed"):
        if state["state"] == "done" and feature_jobs.running(run.path) is False and "rerun_done" not in st.session_state:
            st.session_state["rerun_done"] = True
            forget_dictionaries()   # the new dictionaries must be listed
            st.rerun(scope="app")
        words = {"done": "finished", "stopped": "was stopped; nothing was saved", "failed": "failed"}[state["state"]]
        st.caption(f"The last dictionary training {words}." + (f" Log: `{state.get('log', '')[-300:]}`"
                                                               if state["state"] == "failed" else ""))


with st.expander("Train dictionaries for this run" + (" (none yet)" if not good else ""), expanded=not good):
    d = FeatureTrainConfig()
    with st.form("train_features"):
        c1, c2, c3 = st.columns(3)
        kind = c1.selectbox("Kind", ["transcoder", "sae"], disabled=not cfg.has_mlp,
                            help="transcoder: one per MLP (needs MLP layers); sae: a residual site")
        layers = c2.multiselect("Layers", list(range(cfg.n_layer)), default=list(range(cfg.n_layer)))
        site = c3.selectbox("SAE site", ["resid_mid", "resid_pre", "resid_post"])
        c4, c5, c6 = st.columns(3)
        n_features = c4.number_input("Features per dictionary", 16, 65536, d.n_features, step=256)
        k = c5.number_input("Active features per token (k)", 1, 512, d.k, step=1)
        tokens = c6.number_input("Training tokens", 10_000, 100_000_000, d.tokens, step=100_000)
        submitted = st.form_submit_button("Start training", disabled=feature_jobs.running(run.path))
    st.caption("Defaults as `gpt-features train`: about 2 minutes per transcoder on 2 CPU cores for the shipped "
               "model; it runs in the background and evaluates each dictionary on the validation split when done.")
    if submitted:
        if not cfg.has_mlp and kind == "transcoder":
            st.error("This model has no MLP layers: train an SAE instead.")
        elif not layers:
            st.error("Pick at least one layer.")
        elif k > n_features:
            st.error(f"k ({k}) cannot exceed the number of features ({n_features}).")
        else:
            feature_jobs.start(run.path, feature_jobs.train_command(run.path, kind, layers, n_features, k, tokens, site))
            st.session_state.pop("rerun_done", None)
            st.rerun()
    training_status()

if not good:
    st.info("This run has no feature dictionaries yet: train some above (or with `gpt-features train RUN_DIR`).")
    st.stop()

# ---- the dictionaries ----
rows = []
for dic in good:
    m = dic.metrics or {}
    rows.append({"dictionary": dic.name, "kind": dic.config.kind, "reads": dic.config.input,
                 "features": dic.config.n_features, "L0": m.get("mean_l0"),
                 "variance explained": m.get("variance_explained"), "CE loss recovered": m.get("ce_loss_recovered"),
                 "dead": m.get("dead"), "dense": m.get("dense")})
st.dataframe(rows, hide_index=True, column_config={
    "L0": st.column_config.NumberColumn(format="%.1f"),
    "variance explained": st.column_config.NumberColumn(format="%.3f"),
    "CE loss recovered": st.column_config.NumberColumn(format="%.3f")})
st.caption("Each dictionary over the whole validation split: L0 = active features per token; variance explained by "
           "its reconstruction; CE loss recovered = how much of the layer's effect on the loss survives when the "
           "reconstruction replaces the real activation (1 = all); dead = never active, dense = active on >10% of "
           "tokens. Empty cells: not evaluated yet (`gpt-features eval`).")

# ---- which features fire here ----
st.subheader("Which features fire here")
ids = teaching_prompt_ids(run)
texts = [tok.token_str(i) for i in ids]
T = len(ids)
pos = st.select_slider("Token", options=list(range(T)), format_func=lambda j: f"{j}: {visible(texts[j])}",
                       **bind("pos", T - 1, options=range(T)))
active = features_at(run.model, good, ids, pos)
st.caption(f"At token {pos} `{esc(visible(texts[pos]))}`, the strongest active features of each dictionary "
           "(number = feature, activation in brackets). Click one to open its card below.")
names = [dic.name for dic in good]
picked = place("feature", None)
for dic, pairs in active:
    options = [f"{dic.name} #{i} ({v:.2f})" for i, v in pairs[:10]]
    choice = st.pills(f"{dic.name} · {len(pairs)} active", options, selection_mode="single", key=f"pills_{dic.name}")
    if choice:
        new = f"{dic.name}#{choice.split('#')[1].split(' ')[0]}"
        if new != picked:
            remember("feature", new)
            picked = new
            for other in names:
                if other != dic.name:
                    st.session_state.pop(f"pills_{other}", None)

with st.expander("Search features by token"):
    query = st.text_input("A token (a character for this model)" if tok.kind == "char" else "A token",
                          value="R", max_chars=32)
    unknown = tok.unknown_chars(query) if query else ""
    if unknown:
        st.warning(f"This tokenizer cannot read {', '.join(repr(c) for c in unknown)}.")
    elif query:
        q_ids = tok.encode(query)
        target = next((dic for dic in good if f"{dic.name}#" in (picked or "")), good[0])
        try:
            scan = cached_scan(cached_run(run.path).model, target, run_eval_text(run.path, *eval_key(run)).ids)
        except (CorpusError, OSError) as e:
            st.info(f"Search reads the evaluation text, and this one cannot be used: {e}. Choose another in the "
                    "sidebar.")
            st.stop()
        hits = scan.features_for_token(q_ids[0])
        st.write(f"In **{target.name}**, the features with the highest mean activation on `{esc(visible(tok.token_str(q_ids[0])))}`: "
                 + (", ".join(f"#{i} ({v:.2f})" for i, v in hits) or "none"))
        st.caption("Mean over every occurrence of the token in the evaluation text (zeros included), so a feature "
                   "that fires on it reliably ranks first. The dictionary is the one whose feature is open below.")

if not picked or "#" not in picked or picked.split("#")[0] not in names:
    st.info("Click a feature above to open its card.")
    st.stop()

# ---- the feature card ----
dname, feature = picked.split("#")[0], int(picked.split("#")[1])
dic = good[names.index(dname)]
if not 0 <= feature < dic.config.n_features:
    st.stop()
st.subheader(f"Feature #{feature} of {dname}")
evaluation = eval_text_or_stop(run, "A feature card")
val = evaluation.ids
with st.spinner("Scanning the evaluation text with this dictionary (once per text; kept in its folder)..."):
    scan = cached_scan(run.model, dic, val)
density = float(scan.density[feature])
st.write(f"Fires on **{density:.2%}** of the {scan.n_tokens:,} tokens of the evaluation text; its largest activation "
         f"is **{float(scan.top_values[feature, 0]):.2f}**.")
st.caption(eval_caption(evaluation))
c1, c2 = st.columns(2)
with c1:
    st.plotly_chart(density_figure(scan.density.tolist(), density, feature), key="density")
    st.caption("How often each feature of this dictionary fires (one bar = many features); the orange line is this "
               "one. Far left = rare and specific, far right = common.")
with c2:
    st.plotly_chart(activation_histogram(scan.hist[feature].tolist(), float(scan.top_values[feature, 0])),
                    key="activation_hist")
    st.caption("How strongly it fires when it does (log scale): most firings are weak; the top contexts below are "
               "the rare strong ones.")


def context_rows(values, positions) -> str:
    rows = []
    for value, p in zip(values, positions):
        if p < 0:
            continue
        before, after = val[max(0, p - 32):p].tolist(), val[p + 1:p + 5].tolist()
        pieces = [(tok.decode(before), "context", "#f2f2f2"),
                  (tok.token_str(int(val[p])), f"activation {value:.3f}", "#ffb347"),
                  (tok.decode(after), "after", "#fafafa")]
        rows.append(f"<div style='display:flex;gap:8px;align-items:baseline'><code style='min-width:4em'>"
                    f"{value:.2f}</code>{chips_html(pieces).replace('<br>', '')}</div>")
    return "".join(rows)


left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown("**Top activations**")
    st.markdown(context_rows(scan.top_values[feature].tolist(), scan.top_positions[feature].tolist()),
                unsafe_allow_html=True)
    st.caption(f"The {int((scan.top_positions[feature] >= 0).sum())} strongest firings over the whole evaluation "
               "text: the activation, then the text up to the token it fires on (orange) and what follows.")
    st.markdown("**Typical activations** (from the strongest tenth down to the weakest)")
    st.markdown(context_rows(scan.quantile_values[feature].tolist(), scan.quantile_positions[feature].tolist()),
                unsafe_allow_html=True)
    st.caption("One example at each tenth of its firings, strongest first: does the weak end still mean the same?")
with right:
    effect = feature_logit_effect(run.model, dic.module, feature)
    order = effect.argsort(descending=True).tolist()
    up, down = order[:8], order[::-1][:8]
    st.plotly_chart(effect_bars([tok.token_str(i) for i in up], [float(effect[i]) for i in up], "Promotes"),
                    key="f_promotes")
    st.plotly_chart(effect_bars([tok.token_str(i) for i in down], [float(effect[i]) for i in down], "Suppresses"),
                    key="f_suppresses")
    st.caption("Its decoder direction read through the unembedding: how much one unit of this feature raises "
               "(blue) or lowers (red) each next-token logit directly, ignoring later layers and the final norm.")
