"""Features: the run's sparse dictionaries (transcoders, SAEs), the features active at a token, and a feature card.

Computations live in gpt.interp.features (cards.py); this page lays them out and starts dictionary training as a
background process (explorer/jobs/features.py).
"""
import streamlit as st

from explorer.classroom import policy as classroom
from explorer.classroom import session as class_session
from explorer.jobs import features as feature_jobs
from explorer.jobs.training import format_eta
from explorer.ui.cache import cached_run, feature_labels, forget_dictionaries, run_dictionaries
from explorer.ui.eval_text import eval_text_or_note
from explorer.ui.feature_card import draw_feature_card
from explorer.ui.feature_labels import label_markdown
from explorer.ui.prompts import teaching_prompt_ids
from explorer.ui.run_picker import selected_attention_run
from explorer.ui.state import bind, place, remember
from explorer.ui.text import code_md, text_md, token_md, token_text
from gpt.interp.features.cards import cached_scan, features_at, is_card_scanned
from gpt.interp.features.training import FeatureTrainConfig

run = selected_attention_run("Features", "no blocks, so no activations inside it to learn features of")
cfg, tok = run.config, run.tokenizer
st.caption("A neuron of an MLP fires for many unrelated things. A **sparse dictionary** rewrites a layer's "
           "activations as a few active *features* out of many, each (ideally) one idea: a **transcoder** stands in "
           "for an MLP (reads its input, predicts its output), an **SAE** reconstructs a residual-stream site. "
           "Train them here or with `gpt-features train`.")

good, broken = run_dictionaries(run.path)
for b in broken:
    st.warning(f"Dictionary **{text_md(b.name)}** cannot be used: {b.error}")


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
            try:
                classroom.check_change(class_session.actor(), run.path, "stop the dictionary training of")
            except classroom.Refused as e:
                class_session.refuse(e)
            else:
                feature_jobs.request_stop(run.path)
    elif state and state.get("state") in ("done", "stopped", "failed"):
        if state["state"] == "done" and feature_jobs.running(run.path) is False and "rerun_done" not in st.session_state:
            st.session_state["rerun_done"] = True
            forget_dictionaries()   # the new dictionaries must be listed
            st.rerun(scope="app")
        words = {"done": "finished", "stopped": "was stopped; nothing was saved", "failed": "failed"}[state["state"]]
        st.caption(f"The last dictionary training {words}." + (f" Log: `{state.get('log', '')[-300:]}`"
                                                               if state["state"] == "failed" else ""))


# dictionaries are written into the run's folder: in classroom mode, only into one's own runs
owner = classroom.owner_of(run.path)
may_write = classroom.may_change(class_session.actor(), owner)
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
    st.caption("Defaults as `gpt-features train` (1,024 features, 800,000 tokens): all four transcoders of the shipped "
               "model in 2-9 minutes on 2 CPU cores, recovering 0.84-0.99 of the CE loss. Wider and longer buys "
               "quality: the shipped layers 1-3 (4,096 features, 2-3.2M tokens, 5-9 minutes of one core per layer) "
               "recover 0.95-0.98 (measured table in the README). It runs in the background and evaluates each "
               "dictionary on the validation split when done.")
    if submitted:
        if not cfg.has_mlp and kind == "transcoder":
            st.error("This model has no MLP layers: train an SAE instead.")
        elif not layers:
            st.error("Pick at least one layer.")
        elif k > n_features:
            st.error(f"k ({k}) cannot exceed the number of features ({n_features}).")
        elif not may_write:
            class_session.refuse(classroom.Refused(
                f"You cannot train dictionaries into {run.path.name}: it is {classroom.whose(owner)} run, so "
                "nothing was changed. Train your own model on the Train page, then its dictionaries here."))
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
texts = [token_text(tok, i) for i in ids]
T = len(ids)
pos = st.select_slider("Token", options=list(range(T)), format_func=lambda j: f"{j}: {texts[j]}",
                       **bind("pos", T - 1, options=range(T)))
active = features_at(run.model, good, ids, pos)
st.caption(f"At token {pos} {code_md(texts[pos])}, the strongest active features of each dictionary "
           "(number = feature, activation in brackets, then its label: what it fires on → what it promotes; grey = "
           "weak, its rule predicts little of where it fires). Click one to open its card below.")
names = [dic.name for dic in good]
picked = place("feature", None)
for dic, pairs in active:
    options = [f"{dic.name} #{i} ({v:.2f})" for i, v in pairs[:10]]
    labels = feature_labels(dic)[0]
    shown = {o: f"#{i} ({v:.2f}) {label_markdown(labels, i)}" for o, (i, v) in zip(options, pairs)}
    choice = st.pills(f"{dic.name} · {len(pairs)} active", options, selection_mode="single", key=f"pills_{dic.name}",
                      format_func=shown.get)
    if choice:
        new = f"{dic.name}#{choice.split('#')[1].split(' ')[0]}"
        if new != picked:
            remember("feature", new)
            picked = new
            for other in names:
                if other != dic.name:
                    st.session_state.pop(f"pills_{other}", None)

def search_by_token() -> None:
    """Which features of the open dictionary fire most on a token, from its scan of the evaluation text."""
    query = st.text_input("A token (a character for this model)" if tok.kind == "char" else "A token",
                          value="R", max_chars=32)
    unknown = tok.unknown_chars(query) if query else ""
    if unknown:
        st.warning(f"This tokenizer cannot read {', '.join(code_md(c) for c in unknown)}.")
        return
    if not query:
        return
    q_ids = tok.encode(query)
    target = next((dic for dic in good if f"{dic.name}#" in (picked or "")), good[0])
    evaluation = eval_text_or_note(run, "Search")
    if evaluation is None:
        return
    evaluation_ids = evaluation.ids
    if not is_card_scanned(target, evaluation_ids):
        # the scan runs where it can be watched and stopped: under the feature card below, not in this expander
        st.caption(f"Search reads {target.name}'s scan of the evaluation text, made once when a feature card of it "
                   "opens below (with a progress bar). Open one, then search here.")
        return
    scan = cached_scan(cached_run(run.path).model, target, evaluation_ids)
    hits = scan.features_for_token(q_ids[0])
    st.write(f"In **{target.name}**, the features with the highest mean activation on "
             f"{token_md(tok, q_ids[0])}: " + (", ".join(f"#{i} ({v:.2f})" for i, v in hits) or "none"))
    st.caption("Mean over every occurrence of the token in the evaluation text (zeros included), so a feature "
               "that fires on it reliably ranks first. The dictionary is the one whose feature is open below.")


with st.expander("Search features by token"):
    search_by_token()

if not picked or "#" not in picked or picked.split("#")[0] not in names:
    st.info("Click a feature above to open its card.")
    st.stop()

# ---- the feature card ----
dname, feature = picked.split("#")[0], int(picked.split("#")[1])
dic = good[names.index(dname)]
if not 0 <= feature < dic.config.n_features:
    st.stop()
draw_feature_card(run, dic, feature)
