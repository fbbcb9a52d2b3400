"""Feature labels on the pages (AppTest, shipped model): the Circuit graph names its most influential features, the
feature card shows the label with its held-out score, a weak label says so, and Steering's picker shows it."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"
pytestmark = pytest.mark.usefixtures("fresh_caches")


def shipped_labels(name: str) -> dict:
    return json.loads((SHIPPED / "features" / name / "labels.json").read_text(encoding="utf-8"))


def open_page(page: str, **params) -> "AppTest":
    at = AppTest.from_file(str(ROOT / "explorer" / "app.py"), default_timeout=180)
    at.session_state["selected_run"] = "shakespeare-char"
    for key, value in params.items():
        at.query_params[key] = str(value)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_circuit_graph_writes_the_labels_of_its_most_influential_features():
    from gpt.interp.circuits import attribution_graph, load_transcoders
    from gpt.interp.features.labels import labels_by_layer, plain_label
    from gpt.runs import load_run
    at = open_page("views/circuit.py", pos=46)   # the README's worked example: after "...thou Rome", `o` comes
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    numbers = [t for trace in figure["data"] if trace.get("mode") == "text" for t in trace["text"]]
    assert numbers[:3] == ["<b>1</b>", "<b>2</b>", "<b>3</b>"], numbers
    # the most influential feature of the worked example is number 1, listed with its labels.json label and score
    run = load_run(SHIPPED)
    tcs = load_transcoders(SHIPPED, run.model)
    ids = run.tokenizer.encode("JULIET:\nO Romeo, Romeo! wherefore art thou Rome")
    pruned = attribution_graph(run.model, ids, tcs).prune(0.8, 0.98)
    top = max((i for i, n in enumerate(pruned.nodes) if n.kind == "feature"), key=lambda i: float(pruned.influence[i]))
    node = pruned.nodes[top]
    entry = labels_by_layer(tcs)[node.layer].entry(node.index)
    listing = next(m.value for m in at.markdown if m.value.startswith("**The most influential features"))
    first = listing.split("\n")[2]
    assert first.startswith(f"1. L{node.layer} #{node.index} at ") and entry["label"] in first, first
    assert f"({entry['score']:.2f})" in first
    label = plain_label(entry["label"])
    hovers = [h for trace in figure["data"] for h in (trace.get("hovertext") or [])]
    assert any(label in h for h in hovers)


@pytest.mark.slow
def test_feature_card_shows_the_label_and_its_held_out_score_and_steering_shows_it_too():
    entry = shipped_labels("transcoder-L3")["features"]["543"]
    at = open_page("views/features.py", feature="transcoder-L3#543")
    line = next(m.value for m in at.markdown if m.value.startswith("**Label:**"))
    assert entry["label"] in line and f"**{entry['score']:.2f}**" in line
    assert ("weak" in line) == (entry["score"] < 0.5)
    at.switch_page("views/steering.py")
    at.run()
    at.radio[0].set_value("one feature's direction").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith("#543: ") and entry["label"] in c.value for c in at.caption)


@pytest.mark.slow
def test_a_weak_label_is_grey_and_says_weak():
    data = shipped_labels("transcoder-L0")
    weak = next(int(k) for k, e in data["features"].items() if e["score"] < data["weak_below"])
    at = open_page("views/features.py", feature=f"transcoder-L0#{weak}")
    line = next(m.value for m in at.markdown if m.value.startswith("**Label:**"))
    assert "(weak)" in line and "— weak" in line
