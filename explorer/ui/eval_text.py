"""The session's evaluation text: one choice in the sidebar (under the model picker), read by every page that needs
text the model did not train on (gpt/evaltext.py says what each choice reads).

The choice is a place ("eval_text" in explorer/ui/state.py), so it survives page switches and rides in the URL; the
learner's own text is too long for a URL and stays in the session only (a reload asks for it again).
"""
from __future__ import annotations

import streamlit as st

from explorer.ui.cache import eval_source_text, run_eval_text
from explorer.ui.run_picker import selected_run_info
from explorer.ui.state import bind, place
from explorer.ui.text import read_upload
from gpt.data import CorpusError
from gpt.evaltext import PASTED, EvalText, default_source, eval_sources, source_label

PLACE = "eval_text"
PASTED_KEY = "_eval_pasted"        # session state: (name, text) of the learner's own evaluation text
_TEXT_BOX = "eval_text_box"        # the sidebar's paste box (an entry-point widget keeps its value on every page)
_UPLOAD = "eval_text_upload"


def _run_corpus(run) -> str | None:
    """The corpus a run recorded (run: a LoadedRun or a RunInfo), None for an imported model."""
    extra = getattr(run, "extra", None)
    return (extra if extra is not None else run.config).get("corpus")


def chosen_source(run) -> str:
    """The session's evaluation-text source for `run`: the remembered choice where this run offers it, else the
    run's default (its own validation split, or the first built-in corpus for a run without one)."""
    corpus = _run_corpus(run)
    source = place(PLACE, None)
    return source if source in eval_sources(corpus) else default_source(corpus)


def eval_key(run) -> tuple:
    """(source, pasted text or None, its name): what the caches of explorer/ui/cache.py key an evaluation text by."""
    source = chosen_source(run)
    name, text = st.session_state.get(PASTED_KEY, ("pasted text", None)) if source == PASTED else ("", None)
    return source, text, name


def picker() -> None:
    """The sidebar widget, drawn by app.py under the model picker on every page."""
    info = selected_run_info()
    if info is None:
        return
    corpus = _run_corpus(info)
    sources = eval_sources(corpus)
    pasted_name = st.session_state.get(PASTED_KEY, ("your text", ""))[0]
    source = st.sidebar.selectbox(
        "Evaluation text", sources, format_func=lambda s: source_label(s, corpus, f"{pasted_name} (pasted or uploaded)"),
        help="The held-out text the pages read: Ablation's loss, the Heads page's text probe, Per-token loss, "
             "MLP top contexts, feature cards and the default prompts.",
        **bind(PLACE, default_source(corpus), options=sources))
    if source != PASTED:
        return
    with st.sidebar.expander("Your evaluation text", expanded=PASTED_KEY not in st.session_state):
        upload = st.file_uploader("Upload a UTF-8 text file", type=["txt", "md", "py", "csv", "json"], key=_UPLOAD)
        typed = st.text_area("or paste it here", key=_TEXT_BOX, height=100)
        if upload is not None:
            text, error = read_upload(upload)
            if error:
                st.warning(f"{error}. The evaluation text is unchanged.")
            elif st.session_state.get(PASTED_KEY) != (upload.name, text):
                st.session_state[PASTED_KEY] = (upload.name, text)
        elif typed.strip() and st.session_state.get(PASTED_KEY) != ("pasted text", typed):
            st.session_state[PASTED_KEY] = ("pasted text", typed)
        if PASTED_KEY in st.session_state:
            st.caption(f"Using {st.session_state[PASTED_KEY][0]}: {len(st.session_state[PASTED_KEY][1]):,} characters.")


def eval_text_or_note(run, what: str) -> EvalText | None:
    """The run's evaluation text (tokenized, cached), or None after a note saying why `what` (e.g. "A feature
    card") cannot have one. Never an error box: the fix is a choice in the sidebar."""
    try:
        return run_eval_text(run.path, *eval_key(run))
    except (CorpusError, OSError) as e:
        st.info(f"{what} reads an evaluation text, and this one cannot be used: {e}. Choose another under "
                "**Evaluation text** in the sidebar.")
        return None


def eval_text_or_stop(run, what: str) -> EvalText:
    """eval_text_or_note, and st.stop() when there is none (for a page that needs it from the top)."""
    evaluation = eval_text_or_note(run, what)
    if evaluation is None:
        st.stop()
    return evaluation


def eval_caption(evaluation: EvalText) -> str:
    """The line a page shows under what it computed from the evaluation text."""
    return f"Evaluation text: {evaluation.describe()}; change it in the sidebar."


def eval_excerpt_source(run) -> str:
    """The raw evaluation text (untokenized; "" when it cannot be read), for default prompts."""
    try:
        return eval_source_text(_run_corpus(run), *eval_key(run))[1]
    except (CorpusError, OSError):
        return ""
