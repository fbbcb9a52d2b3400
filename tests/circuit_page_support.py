"""What the Circuit page's AppTests check whichever transcoders it ran with (a support module, not a test module)."""
from __future__ import annotations


def assert_page_shows_the_graph(at, graph, pruned) -> None:
    """The page's metrics and feature count are the library's: scores of `graph` and of `pruned` (its pruning)."""
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Replacement score"] == f"{pruned.replacement_score():.2f}"
    assert metrics["Completeness score"] == f"{graph.completeness_score():.2f}"
    assert metrics["Nodes / edges drawn"].startswith(f"{len(pruned.nodes)} / ")
    assert any(f"**{sum(n.kind == 'feature' for n in graph.nodes):,}** active features" in m.value for m in at.markdown)
