"""The library never imports the app: gpt/ is plain PyTorch that a script, a notebook or another UI can use without
streamlit (DESIGN.md). A lazy import inside a function counts too: it is still an arrow from the library to the app."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ("explorer", "streamlit")


def app_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of an APP_PACKAGES module anywhere in `source`, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:   # relative imports stay inside gpt/
            modules = [node.module or ""]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m.split(".")[0] in APP_PACKAGES]
    return found


@pytest.mark.parametrize("source, expected", [
    ("import streamlit as st", [(1, "streamlit")]),
    ("def f():\n    from explorer.report import write_report", [(2, "explorer.report")]),
    ("import os, explorer.ui.cache", [(1, "explorer.ui.cache")]),
    ("from streamlit.web import cli", [(1, "streamlit.web")]),
    ("from . import explorer\nimport explorers\nfrom gpt import runs", []),   # not the app
])
def test_the_check_sees_every_form_of_import(source, expected):
    assert app_imports(source) == expected


def test_gpt_never_imports_the_app():
    files = sorted((ROOT / "gpt").rglob("*.py"))
    assert len(files) > 20   # the walk really reads the library
    arrows = [f"{path.relative_to(ROOT)}:{line} imports {module}"
              for path in files for line, module in app_imports(path.read_text(encoding="utf-8"))]
    assert arrows == []
