"""The layout shows the architecture (README "Layout"): no import circles in gpt/ or explorer/ (a deferred import inside
a function counts: it is still an arrow), and in the app the arrows point down only: views -> ui, figures, jobs -> gpt."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its source (absolute imports; `from a import b` names the
    submodule a.b when there is one, else a)."""
    graph = {}
    for name, source in sources.items():
        targets = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                candidates = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in sources:
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
                    break
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each a circle of imports."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def project_sources() -> dict[str, str]:
    files = sorted((ROOT / "gpt").rglob("*.py")) + sorted((ROOT / "explorer").rglob("*.py"))
    return {module_name(p): p.read_text(encoding="utf-8") for p in files}


def test_the_checks_see_a_deferred_circle():
    sources = {"pkg.a": "import pkg.b\n", "pkg.b": "def f():\n    from pkg.a import thing\n", "pkg.c": "from pkg import a\n"}
    graph = import_graph(sources)
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


@pytest.fixture(scope="module")
def project_graph() -> dict[str, set[str]]:
    return import_graph(project_sources())


def test_no_import_circles(project_graph):
    assert cycles(project_graph) == []


# layer -> the app layers it must never import (views are loaded by path through st.navigation, never imported)
FORBIDDEN = {
    "explorer.figures": ("explorer.views", "explorer.ui", "explorer.jobs", "explorer.classroom"),
    "explorer.jobs": ("explorer.views", "explorer.ui", "explorer.figures"),
    "explorer.ui": ("explorer.views",),
    "explorer.classroom": ("explorer.views",),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_the_apps_arrows_point_down(layer, project_graph):
    wrong = [f"{module} imports {target}" for module, targets in project_graph.items() if module.startswith(layer + ".")
             for target in sorted(targets) if target.startswith(FORBIDDEN[layer])]
    assert wrong == []
