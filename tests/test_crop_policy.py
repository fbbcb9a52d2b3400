"""One crop policy for a prompt longer than the context (gpt.generate.crop_prompt: keep the last block_size tokens),
and every page that crops says so, with how many tokens it left out."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import streamlit as st
from conftest import placed
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "explorer" / "app.py")


@pytest.fixture
def tiny_root(tmp_path, tiny_run, monkeypatch):
    runs_root = tmp_path / "checkpoints"
    shutil.copytree(tiny_run, runs_root / "tiny")
    monkeypatch.setenv("GPT_EXPLORER_CHECKPOINTS", str(runs_root))
    monkeypatch.setenv("GPT_EXPLORER_MAX_JOBS", "1")
    st.cache_resource.clear()
    st.cache_data.clear()
    yield runs_root
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.mark.slow
@pytest.mark.parametrize("page", ["why_token", "steering", "attention"])
def test_a_page_that_crops_says_it_kept_the_last_block(tiny_root, page):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    box = next(t for t in at.text_area if "prompt" in str(t.key)) if page == "steering" else \
        placed(at, "text_area", "prompt")
    box.set_value("ab" * 50).run()  # 100 tokens, block_size 32
    assert not at.exception, [e.message for e in at.exception]
    notes = [w.value for w in at.warning if "left out" in w.value]
    assert notes and "last 32 are used and the first 68 left out" in notes[0], [w.value for w in at.warning]
