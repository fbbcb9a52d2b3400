"""The Circuit page: on the shipped model its numbers are the library's, a switched-off feature moves the prediction
as gpt.interp.circuits.intervene says, runs that cannot have a graph are explained (not an error box), and in a
real browser a click on a feature node opens its card and the intervention shows the prediction change."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser_support import chromium_page
from circuit_page_support import assert_page_shows_the_graph
from conftest import ROOT, checkpoints_env, open_page

pytestmark = pytest.mark.usefixtures("fresh_caches")
AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"
PROMPT = "Where is Quintex? Good Quinte"


@pytest.mark.slow
def test_circuit_page_numbers_are_the_library_numbers():
    from gpt.interp.circuits import attribution_graph, intervene, load_transcoders
    from gpt.runs import load_run
    at = open_page("circuit", "shakespeare-char", prompt=PROMPT, pos=28)
    assert not at.error and not at.warning, [e.value for e in at.error] + [w.value for w in at.warning]
    run = load_run(SHIPPED)
    tcs = load_transcoders(SHIPPED, run.model)
    ids = run.tokenizer.encode(PROMPT)
    graph = attribution_graph(run.model, ids, tcs)
    pruned = graph.prune(0.8, 0.98)
    assert_page_shows_the_graph(at, graph, pruned)
    # the default intervention switches the most influential kept feature off; its numbers are intervene()'s
    top = max((i for i, n in enumerate(pruned.nodes) if n.kind == "feature"), key=lambda i: float(pruned.influence[i]))
    node = pruned.nodes[top]
    result = intervene(run.model, ids, tcs, {node: 0.0})
    first = graph.logit_ids[0]
    line = next(m.value for m in at.markdown if m.value.startswith("With 1 feature switched off"))
    assert f"**{float(result.probs_before[first]):.1%}**" in line
    assert f"**{float(result.probs_replacement[first]):.1%}**" in line
    assert f"**{float(result.probs_model[first]):.1%}**" in line
    assert float(result.probs_model[first]) < float(result.probs_before[first])   # the lesson: it mattered


@pytest.mark.slow
def test_pins_supernode_and_export():
    at = open_page("circuit", "shakespeare-char", prompt=PROMPT, pos=28)
    pins = next(m for m in at.multiselect if m.label == "Pinned nodes")
    two = [o for o in pins.options if re.fullmatch(r"L\d #\d+ at .*", o)][:2]   # two features
    assert len(two) == 2
    pins.set_value(two).run()
    next(t for t in at.text_input if t.label == "Supernode label").input("copies the x").run()
    next(b for b in at.button if b.label == "Group the pinned nodes").click().run()
    assert not at.exception, [e.value for e in at.exception]
    targets = next(m for m in at.multiselect if m.label == "Features or supernodes")
    assert "supernode copies the x" in targets.options
    targets.set_value(["supernode copies the x"]).run()
    assert any(m.value.startswith("With 2 features switched off") for m in at.markdown)
    # hiding everything but the pinned nodes leaves the page working
    next(t for t in at.toggle if t.label == "Show only pinned nodes").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    # another position (other nodes): remembered choices that no longer exist are dropped, not an error
    at.select_slider[0].set_value(20).run()
    next(s for s in at.slider if s.label.startswith("Keep nodes")).set_value(0.3).run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]


def test_runs_without_a_graph_are_explained(tmp_path):
    from run_support import make_rung_run
    for arch, words in (("multi_head", "attention only"), ("bigram", "bigram")):
        make_rung_run(tmp_path, arch)
        with checkpoints_env(tmp_path):
            at = open_page("circuit", arch)
            assert not at.error, [e.value for e in at.error]
            assert any(words in i.value for i in at.info), [i.value for i in at.info]
    make_rung_run(tmp_path, "gpt")   # a GPT with MLPs but no transcoders: offered the Features page
    with checkpoints_env(tmp_path):
        at = open_page("circuit", "gpt")
        assert not at.error, [e.value for e in at.error]
        assert any("no transcoders" in i.value for i in at.info), [i.value for i in at.info]


def test_report_embeds_the_circuit(tmp_path):
    from explorer.report import circuit_section
    from gpt.runs import load_run
    run = load_run(SHIPPED)
    fig, html_text = circuit_section(SHIPPED, run.model, run.tokenizer, "ROMEO:\nI will")
    assert fig is not None
    data = json.loads(html_text.split('id="circuit-graph">')[1].split("</script>")[0])
    assert data["metadata"]["prompt"] == "ROMEO:\nI will" and data["nodes"] and data["links"]


@pytest.mark.browser
@pytest.mark.slow
def test_browser_click_a_feature_node_opens_its_card_and_switching_it_off_changes_the_prediction(shipped_app):
    url = shipped_app[0]
    with chromium_page() as (page, errors):
        page.goto(f"{url}/circuit?run={SHIPPED.name}")
        page.get_by_text("Attribution graph (pruned)").first.wait_for(timeout=120_000)
        node = page.locator("g.scatterlayer path.point").first   # edges are lines; the first points are features
        node.wait_for(timeout=30_000)
        node.scroll_into_view_if_needed()
        node.click(force=True)
        page.get_by_text("Top activations").wait_for(timeout=120_000)
        heading = page.get_by_text("Feature card: L")
        assert heading.count() >= 1
        clicked = heading.first.inner_text().split("Feature card: ")[1]   # e.g. "L0 #611"
        change = page.get_by_text("switched off,").first
        change.wait_for(timeout=60_000)
        text = change.inner_text()
        before, replaced, real = (float(v) for v in re.findall(r"([0-9.]+)%", text)[:3])
        assert replaced != before and real != before, text   # the prediction changed, in both models
        assert page.get_by_text(clicked.split(" ")[1] + " at").count() >= 1  # ... with the clicked feature off
        # the downloads are built on the click (deferred): each is a graph of this page, in its format
        for label, check in (("Download the graph (JSON, ours)", lambda d: d["nodes"] and d["links"]),
                             ("Download for circuit-tracer's viewer",
                              lambda d: d["metadata"]["slug"] == f"{SHIPPED.name}-{d['metadata']['gpt_explorer']['position']}")):
            with page.expect_download(timeout=60_000) as download:
                page.get_by_role("button", name=label).click()
            data = json.loads(Path(download.value.path()).read_text())
            assert check(data), (label, data.get("metadata"))
        shots = Path(ROOT / "test-artifacts" / "circuit-shots")
        shots.mkdir(parents=True, exist_ok=True)
        page.get_by_text("Attribution graph (pruned)").first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "graph.png"))
        heading.first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "card.png"))
        change.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "intervention.png"))
        assert not errors, errors


def test_supernode_edges_are_the_sums_of_their_members():
    from model_support import toy_graph

    from explorer.figures.circuit import circuit_figure, circuit_view
    g = toy_graph()
    g.influence = g.node_influence()
    keys = [n.key for n in g.nodes]
    nodes, edges = circuit_view(g, {}, {"both": [keys[0], keys[1]]})   # the feature and the error, grouped
    index = {n.key: i for i, n in enumerate(nodes)}
    by_pair = {(nodes[s].key, nodes[t].key): w for s, t, w in edges}
    assert by_pair[("group:both", keys[3])] == pytest.approx(3.0 - 1.0)   # into the first logit: 3 + (-1)
    assert by_pair[(keys[2], "group:both")] == pytest.approx(2.0)          # the embedding feeds the group
    assert nodes[index["group:both"]].influence == pytest.approx(float(g.influence[0] + g.influence[1]))
    hidden_nodes, hidden_edges = circuit_view(g, {}, None, {keys[1]})
    assert keys[1] not in {n.key for n in hidden_nodes} and len(hidden_edges) == 3
    fig = circuit_figure(nodes, edges, ["a"], 1)
    assert {t.name for t in fig.data if t.name} >= {"supernode (your group)", "next-token logit"}
