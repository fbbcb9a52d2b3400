"""Offline: the shipped corpus needs no network, and every page works on the shipped model with outbound
connections refused and an empty cache folder."""
from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from gpt import data

ROOT = Path(__file__).resolve().parent.parent


def refuse_network(monkeypatch) -> None:
    """Every outbound connection attempt raises, as on a machine without network."""
    def refused(*args, **kwargs):
        raise OSError("network is unreachable (test: outbound connections refused)")
    monkeypatch.setattr(socket.socket, "connect", refused)
    monkeypatch.setattr(socket.socket, "connect_ex", refused)
    monkeypatch.setattr(socket, "create_connection", refused)


def test_tiny_shakespeare_ships_in_the_package_and_is_checked(monkeypatch, tmp_path):
    refuse_network(monkeypatch)
    monkeypatch.setenv("GPT_EXPLORER_CACHE", str(tmp_path / "empty-cache"))
    data.tiny_shakespeare.cache_clear()
    text = data.tiny_shakespeare()
    assert len(text.encode("utf-8")) == 1_115_394
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == data.TINY_SHAKESPEARE_SHA256
    assert data.load_corpus("tiny-shakespeare")[0] == text
    packaged = ROOT / "gpt" / "corpora" / data.TINY_SHAKESPEARE_FILE
    assert packaged.stat().st_size < 600_000      # compressed: a few hundred KB in the repository
    assert not (tmp_path / "empty-cache").exists()  # nothing was written to (or needed from) a cache


def test_pyproject_carries_the_corpus_as_package_data():
    assert 'gpt = ["corpora/*.xz"]' in (ROOT / "pyproject.toml").read_text()


def test_a_damaged_shipped_corpus_is_refused_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(data, "TINY_SHAKESPEARE_SHA256", "0" * 64)
    data.tiny_shakespeare.cache_clear()
    try:
        with pytest.raises(data.CorpusError, match="reinstall"):
            data.tiny_shakespeare()
    finally:
        monkeypatch.undo()
        data.tiny_shakespeare.cache_clear()


def test_no_module_reaches_for_the_network():
    for path in (ROOT / "gpt").rglob("*.py"):
        source = path.read_text()
        assert "urllib.request" not in source and "urlopen" not in source, path


def test_failed_and_half_created_runs_are_listed_with_their_error(tmp_path, tiny_run):
    import json
    import shutil

    from gpt import runs
    shutil.copytree(tiny_run, tmp_path / "good")
    no_config = tmp_path / "failed-start"      # the trainer refused its corpus before writing config.json
    no_config.mkdir()
    (no_config / "status.json").write_text(json.dumps({"state": "starting", "pid": 999999999, "updated_at": 0}))
    (no_config / "train.log").write_text("error: corpus 'x' is neither a built-in nor a file\n")
    no_weights = tmp_path / "no-weights"      # killed before its first checkpoint
    no_weights.mkdir()
    shutil.copy(tiny_run / "config.json", no_weights / "config.json")
    (no_weights / "status.json").write_text(json.dumps({"state": "failed", "error": "MemoryError: out of memory"}))
    (tmp_path / "not-a-run").mkdir()
    broken = {b.name: b.error for b in runs.broken_runs(tmp_path)}
    assert broken == {"failed-start": "corpus 'x' is neither a built-in nor a file",
                      "no-weights": "MemoryError: out of memory"}
    assert [r.name for r in runs.list_runs(tmp_path) if (r.path / "model.safetensors").exists()] == ["good"]


# ---- every page on the shipped model, offline, with an empty cache ----
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"
VIEWS = sorted(p.stem for p in (ROOT / "explorer" / "views").glob("*.py"))


@pytest.fixture
def offline_shipped(tmp_path, monkeypatch):
    import shutil

    import streamlit as st
    root = tmp_path / "checkpoints"
    shutil.copytree(SHIPPED, root / SHIPPED.name)
    monkeypatch.setenv("GPT_EXPLORER_CHECKPOINTS", str(root))
    monkeypatch.setenv("GPT_EXPLORER_CACHE", str(tmp_path / "empty-cache"))
    refuse_network(monkeypatch)
    data.tiny_shakespeare.cache_clear()
    st.cache_resource.clear()
    st.cache_data.clear()
    yield root
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.mark.slow
def test_every_page_works_offline_on_the_shipped_model(offline_shipped):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "explorer" / "app.py"), default_timeout=300)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    for view in VIEWS:
        at.switch_page(f"views/{view}.py").run()
        assert not at.exception, (view, [(e.message, e.stack_trace) for e in at.exception])
        assert not at.error, (view, [e.value for e in at.error])
        assert at.title, view   # the page drew its content, not only the sidebar
