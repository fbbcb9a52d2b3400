"""Circuit: the attribution graph of one prediction, built from the run's transcoders (gpt.interp.circuits).

The page lays out the pruned graph (layers as rows, positions as columns), opens a feature's card on a click,
lets the learner pin and group nodes, and switches features off to test what the graph claims, in the replacement
model and in the real one.
"""
import json

import streamlit as st

from explorer.figures.circuit import circuit_figure, circuit_view, node_label, tagged_nodes
from explorer.ui.cache import feature_labels, run_crosslayers, run_dictionaries
from explorer.ui.feature_card import draw_feature_card
from explorer.ui.feature_labels import label_markdown
from explorer.ui.prompts import teaching_prompt_ids
from explorer.ui.run_picker import selected_attention_run
from explorer.ui.state import bind, fresh_click
from explorer.ui.text import code_md, text_md, token_md, token_text
from gpt.interp.capture import InterpError
from gpt.interp.circuits import attribution_graph, intervene
from gpt.interp.circuits.export import file_slug
from gpt.interp.circuits.replacement import CircuitError, pick_transcoders, refuse_model
from gpt.interp.features.export import feature_names
from gpt.interp.features.labels import node_clerps
from gpt.interp.features.stack import as_transcoders

run = selected_attention_run("Circuit", "no layers, so there is no circuit to trace: its prediction is a lookup of "
                                       "the current token's row")
cfg, tok = run.config, run.tokenizer
st.caption("How did the model get to its prediction? The **attribution graph** replaces each MLP by its transcoder "
           "(plus an *error* node holding what the transcoder misses) and freezes attention patterns and norm "
           "scales for this prompt. The model is then linear, and every edge below is exact: how much one node "
           "directly pushes another (Ameisen et al., *Circuit Tracing*, 2025; circuit-tracer).")
try:
    refuse_model(run.model)
    good, broken = run_dictionaries(run.path)
    clts = run_crosslayers(run.path)[0]
    try:
        choices = {"per-layer transcoders": pick_transcoders(good, broken, cfg.n_layer, run.path.name)}
    except CircuitError:
        if not clts:
            raise
        choices = {}
    choices.update({f"cross-layer transcoder {c.name}": c for c in clts})
except CircuitError as e:
    st.info(str(e))
    if cfg.has_mlp:
        st.page_link("views/features.py", label="Train transcoders on the Features page", icon=":material/category:")
    st.stop()
if len(choices) > 1:  # a run with a CLT (gpt-features train --kind clt) as well
    which = st.radio("Replace the MLPs with", list(choices), horizontal=True, key="circ_dictionary",
                     help="Per-layer transcoders: each layer's features write that layer's MLP output. A cross-layer "
                          "transcoder's features write their layer's MLP output and every later one, so a chain of "
                          "features that only pass something on can be one feature.")
else:
    which = next(iter(choices))
transcoders = choices[which]



def copy_position(ids: list[int]) -> int:
    """The default token to explain: the last one whose pair with the token before it occurred earlier, followed
    by the same token as now (a name said again: the induction copy the graph shows well); else the last token."""
    for p in range(len(ids) - 2, 1, -1):
        if any(ids[q - 1] == ids[p - 1] and ids[q] == ids[p] and ids[q + 1] == ids[p + 1] for q in range(1, p)):
            return p
    return len(ids) - 1


ids = teaching_prompt_ids(run)
T = len(ids)
texts = [token_text(tok, i) for i in ids]
pos = st.select_slider("Explain the prediction made at token", options=list(range(T)),
                       format_func=lambda j: f"{j}: {texts[j]}", **bind("pos", copy_position(ids), options=range(T)))
c1, c2, c3 = st.columns(3)
node_threshold = c1.slider("Keep nodes carrying this share of influence", 0.3, 1.0, 0.8, 0.05, key="circ_nodes")
edge_threshold = c2.slider("Keep edges carrying this share", 0.5, 1.0, 0.98, 0.01, key="circ_edges")
only_pinned = c3.toggle("Show only pinned nodes", key="circ_only_pinned")


@st.cache_resource(max_entries=6, show_spinner="Tracing the attribution graph...")
def _graph(run_dir: str, weights_key: tuple, ids: tuple[int, ...], names: tuple[str, ...]):
    del weights_key, names  # part of the cache key only: new weights or transcoders make a new graph
    return attribution_graph(run.model, list(ids), transcoders)


@st.cache_resource(max_entries=12, show_spinner=False)
def _pruned(run_dir: str, weights_key: tuple, ids: tuple[int, ...], names: tuple[str, ...], node_threshold: float,
            edge_threshold: float):
    """(pruned graph, the full graph's completeness score) per graph and thresholds, shared read-only: a revisit of
    the page, a pin or a click redraws without pruning again (1 s of CPU on the shipped model)."""
    graph = _graph(run_dir, weights_key, ids, names)
    return graph.prune(node_threshold, edge_threshold), graph.completeness_score()


@st.cache_data(max_entries=32, show_spinner="Running both models with those features changed...")
def _intervention(run_dir: str, weights_key: tuple, ids: tuple[int, ...], names: tuple[str, ...],
                  values: tuple[tuple[str, float], ...]):
    """intervene() for {node key: value}, kept per graph and setting (every rerun of the page would redo it)."""
    nodes = {n.key: n for n in _graph(run_dir, weights_key, ids, names).nodes}
    return intervene(run.model, list(ids), transcoders, {nodes[key]: value for key, value in values})


graph_key = (str(run.path), (run.step, run.path.stat().st_mtime), tuple(ids[:pos + 1]),
             tuple(str(p) for p in as_transcoders(transcoders).paths))
try:
    graph = _graph(*graph_key)
except InterpError as e:
    st.warning(str(e))
    st.stop()
pruned, completeness = _pruned(*graph_key, node_threshold, edge_threshold)
tokens = texts[:pos + 1]
# per layer: labels.json, or None (a cross-layer transcoder has no per-layer labels yet)
feature_labels_of = ([feature_labels(t)[0] for t in transcoders] if isinstance(transcoders, list)
                     else [None] * cfg.n_layer)
tags = {n.key: (feature_labels_of[n.layer].text(n.index, plain=True), feature_labels_of[n.layer].is_weak(n.index))
        for n in pruned.nodes if n.kind == "feature" and feature_labels_of[n.layer] is not None}
labels = {n.key: node_label(n, token_text(tok, n.index) if n.kind == "logit" else tokens[n.position],
                            tags.get(n.key, ("", False))[0]) for n in pruned.nodes}

# ---- what the model predicts, how much the graph explains ----
top = ", ".join(f"{token_md(tok, i)} {float(p):.0%}" for i, p in zip(graph.logit_ids, graph.logit_probs))
n_feat = sum(n.kind == "feature" for n in graph.nodes)
kept_feat = sum(n.kind == "feature" for n in pruned.nodes)
st.markdown(f"After {code_md(tok.decode(ids[max(0, pos - 24):pos + 1]))} the model predicts {top}. "
            f"The full graph has **{n_feat:,}** active features; **{kept_feat}** carry the share of influence asked for.")
m1, m2, m3 = st.columns(3)
m1.metric("Replacement score", f"{pruned.replacement_score():.2f}",
          help="Share of the prompt's influence on the prediction that flows through features rather than error "
               "nodes (1 = the transcoders explain everything)")
m2.metric("Completeness score", f"{completeness:.2f}",
          help="Influence-weighted share of each node's inputs that come from features or tokens, not errors")
m3.metric("Nodes / edges drawn", f"{len(pruned.nodes)} / {int((pruned.adjacency != 0).sum()):,}")

# ---- pins and supernodes (session state: they belong to this prompt and position) ----
pin_key = f"circ_pins_{hash((tuple(ids[:pos + 1]), run.path.name))}"
groups_key = pin_key + "_groups"
pins: list[str] = st.session_state.setdefault(pin_key, [])
groups: dict[str, list[str]] = st.session_state.setdefault(groups_key, {})
present = {n.key for n in pruned.nodes}
hidden = ({k for k in present if k not in pins and not any(k in g for g in groups.values())}
          if only_pinned and (pins or groups) else set())


@st.cache_resource(max_entries=32, show_spinner=False)
def _drawn(graph_key: tuple, node_threshold: float, edge_threshold: float, group_items: tuple, hidden_keys: tuple,
           selected: str | None, tag_items: tuple):
    """(view nodes, view edges, figure) per pruned graph, groups, hidden nodes, selection and labels (what the
    drawing depends on), shared read-only: a revisit of the page redraws nothing (0.1 s of plotly a rerun)."""
    nodes, edges = circuit_view(pruned, labels, {g: list(ks) for g, ks in group_items}, set(hidden_keys),
                                dict(tag_items))
    return nodes, edges, circuit_figure(nodes, edges, tokens, cfg.n_layer, selected)


selected = st.session_state.get("circ_selected")
nodes, edges, figure = _drawn(graph_key, node_threshold, edge_threshold,
                              tuple((g, tuple(ks)) for g, ks in groups.items()), tuple(sorted(hidden)), selected,
                              tuple(sorted(tags.items())))
by_key_all = {n.key: n for n in pruned.nodes}
event = st.plotly_chart(figure, key="circ_graph",
                        on_select="rerun", selection_mode="points", config={"displayModeBar": False})
st.caption(f"Read it bottom to top: token embeddings feed features in layers 0..{cfg.n_layer - 1}, which feed later "
           "features and the logits at the top. Bigger node = more influence on the prediction; blue edge = raises its target, red = "
           "lowers it, thicker = stronger (the strongest 400 drawn). Grey diamonds are what the transcoders miss. "
           "The numbers mark the most influential features, listed with their labels below (grey = weak: its rule "
           "predicts little of where the feature fires). Hover for any node's label; click a node to open it below.")
numbered = tagged_nodes(nodes)
if numbered:
    rows = []
    for rank, i in enumerate(numbered, 1):
        n = by_key_all[nodes[i].key]
        fl = feature_labels_of[n.layer]
        rows.append(f"{rank}. L{n.layer} #{n.index} at {code_md(tokens[n.position])} (influence {nodes[i].influence:.3f}): "
                    f"{label_markdown(fl, n.index)} ({fl.entry(n.index)['score']:.2f})")
    st.markdown("**The most influential features, numbered on the graph** (label: what it fires on → what it "
                "promotes; held-out score in brackets)\n\n" + "\n".join(rows))
if not any(feature_labels_of):
    st.caption("No feature labels yet: `gpt-features label " + run.path.name + "` writes them (a few minutes).")
points = event.selection.points if event and event.selection else []
clicked = next((p.get("customdata") for p in points if p.get("customdata")), None)
if fresh_click("circ_graph", clicked):
    st.session_state["circ_selected"] = selected = clicked
    if clicked in {n.key for n in pruned.nodes if n.kind == "feature"}:
        st.session_state["circ_targets"] = [clicked]   # the intervention below acts on what was clicked
    st.rerun()

# ---- the selected node ----
by_key = {n.key: n for n in pruned.nodes}
if selected and selected.startswith("group:"):
    st.markdown(f"**Supernode {text_md(selected[6:])}**: " + ", ".join(text_md(labels.get(k, k)) for k in groups.get(selected[6:], [])))
elif selected in by_key:
    node = by_key[selected]
    st.markdown(f"**Selected:** {text_md(labels[selected])}")
    if selected not in pins and st.button("Pin this node", key="circ_pin"):
        pins.append(selected)
        st.rerun()
    if node.kind == "feature":
        with st.expander(f"Feature card: L{node.layer} #{node.index}", expanded=True):
            draw_feature_card(run, as_transcoders(transcoders).card(node.layer), node.index, key="circ_card")
    elif node.kind == "error":
        st.caption("An error node is the part of this layer's MLP output its transcoder does not reproduce at this "
                   "token. A large, influential error node means the graph cannot explain this step in features.")

# ---- pinning, grouping ----
influence_of = {n.key: float(v) for n, v in zip(pruned.nodes, pruned.influence)}
options = sorted(present, key=lambda k: -influence_of[k])  # most influential first

def keep_valid(key: str, allowed) -> None:
    """A multiselect's remembered choice, cut to the options it has now (thresholds or the position changed)."""
    if key in st.session_state:
        kept = [k for k in st.session_state[key] if k in allowed]
        if kept:
            st.session_state[key] = kept
        else:
            del st.session_state[key]


keep_valid(pin_key + "_ms", set(options))
with st.expander("Pin and group nodes", expanded=bool(pins)):
    chosen = st.multiselect("Pinned nodes", options, default=[k for k in pins if k in present],
                            format_func=lambda k: labels.get(k, k), key=pin_key + "_ms")
    if chosen != [k for k in pins if k in present]:
        st.session_state[pin_key] = pins = chosen
    g1, g2 = st.columns([3, 1])
    name = g1.text_input("Supernode label", max_chars=40, key="circ_group_name",
                         placeholder="e.g. 'copies the x'")
    if g2.button("Group the pinned nodes", key="circ_group", disabled=len(pins) < 2):
        label = (name or "").strip()
        if not label:
            st.warning("Give the supernode a label first.")
        elif label in groups:
            st.warning(f"There is already a supernode called {label!r}.")
        else:
            groups[label] = list(pins)
            st.rerun()
    for label in list(groups):
        if st.button(f"Ungroup {label}", key=f"circ_ungroup_{label}"):
            del groups[label]
            st.rerun()
    st.caption("Pin the nodes that tell the story, group nodes that do one job into a labelled supernode (its edges "
               "are the sums of its members'), and tick *Show only pinned nodes* to hide the rest.")

# ---- intervention ----
st.subheader("Test it: switch features off")
feature_keys = [k for k in options if by_key[k].kind == "feature"]
targets = [f"group:{g}" for g in groups] + feature_keys
if not targets:
    st.info("No feature survived the thresholds: lower them to see features to switch off.")
else:
    default = [selected] if selected in targets else [targets[0]]
    keep_valid("circ_targets", set(targets))
    picked = st.multiselect("Features or supernodes", targets, default=default, key="circ_targets",
                            format_func=lambda k: f"supernode {k[6:]}" if k.startswith("group:") else labels[k])
    scale = st.slider("Scale their activation (0 = off, 1 = as is, 2 = doubled)", -1.0, 3.0, 0.0, 0.25,
                      key="circ_scale")
    members = [m for k in picked for m in (groups.get(k[6:], []) if k.startswith("group:") else [k])]
    settings = {by_key[m]: scale * by_key[m].activation for m in members if m in by_key and by_key[m].kind == "feature"}
    if picked and not settings:
        st.info("Only transcoder features can be switched: the chosen supernode holds none (error nodes and "
                "embeddings are fixed inputs of the replacement model).")
    if settings:
        result = _intervention(*graph_key, tuple(sorted((node.key, float(v)) for node, v in settings.items())))
        first = graph.logit_ids[0]
        what = "switched off" if scale == 0 else f"scaled by {scale:g}"
        st.markdown(f"With {len(settings)} feature{'s' if len(settings) > 1 else ''} {what}, "
                    f"{token_md(tok, first)} goes from **{float(result.probs_before[first]):.1%}** to "
                    f"**{float(result.probs_replacement[first]):.1%}** in the replacement model and "
                    f"**{float(result.probs_model[first]):.1%}** in the real model.")
        rows = [{"next token": token_text(tok, t), "before": 100 * b, "replacement model": 100 * r,
                 "real model": 100 * m} for t, b, r, m in result.top(8)]
        st.dataframe(rows, hide_index=True, column_config={
            c: st.column_config.NumberColumn(c, format="%.1f%%") for c in ("before", "replacement model", "real model")})
        st.caption("Next-token probabilities before and after. *Replacement model*: attention and norms frozen, "
                   "error nodes fixed, later features recomputed (what the graph describes). *Real model*: nothing "
                   "frozen; the MLP output gets the change of these features' decoder vectors. When both move the "
                   "same way, the graph's story holds in the real model too.")

# ---- export ----
slug = file_slug(f"{run.path.name}-{pos}")
metadata = {"model": run.path.name, "position": pos}
pinned, supernodes = list(pins), {g: list(ks) for g, ks in groups.items()}


def ours() -> str:
    """The graph as this page has it (its labels: the learner's supernode names win), built on a click only."""
    clerps = node_clerps(pruned, {layer: fl for layer, fl in enumerate(feature_labels_of) if fl is not None})
    clerps.update({k: g for g, ks in supernodes.items() for k in ks})
    return json.dumps(pruned.to_json(tokenizer=tok, labels=clerps, metadata=metadata), indent=1)


def theirs() -> str:
    """circuit-tracer's format, built on a click only (it reads every feature's label: 0.1 s on each rerun)."""
    return json.dumps(pruned.to_json(decode=tok.decode, schema="circuit-tracer", metadata=metadata,
                                     feature_labels=feature_names(transcoders), pinned=pinned, supernodes=supernodes,
                                     slug=slug))


d1, d2 = st.columns(2)
d1.download_button("Download the graph (JSON, ours)", ours, file_name=f"circuit-{slug}.json", mime="application/json",
                   key="circ_download")
d2.download_button("Download for circuit-tracer's viewer", theirs, file_name=f"{slug}.json", mime="application/json",
                   key="circ_download_ct")
st.caption("Ours keeps every field of this page; circuit-tracer's opens in its viewer with your pins, groups "
           "(supernodes) and feature labels: README, *Open our files in SAELens and circuit-tracer*.")
