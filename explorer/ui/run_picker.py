"""The selected run: the sidebar model picker's choice (st.session_state[RUN_KEY], written by app.py), loaded once
per weights file (explorer/ui/cache.py), the runs this session may see, and pages asking the picker to follow a run.

Cached models are shared by all sessions: never mutate or hook them; pass a gpt.Trace per call instead.
"""
from __future__ import annotations

import streamlit as st
import torch

from explorer.classroom import session as class_session
from explorer.ui.cache import cached_run
from gpt.runs import BrokenRun, RunError, RunInfo, checkpoints_root, list_runs
from gpt.runs import broken_runs as _broken_runs

RUN_KEY = "selected_run"        # session-state key of the sidebar model picker (a run folder name)


SHIPPED_RUN = "shakespeare-char"


def limit_threads() -> None:
    """The UI takes one core so a training job on a small machine keeps the rest."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def all_runs() -> list[RunInfo]:
    """Every run folder under the checkpoints root this session may see (classroom mode: the teacher's, its own,
    and others' when the teacher shares them), most recently active first."""
    return class_session.visible(list_runs(checkpoints_root()))


def broken_runs() -> list[BrokenRun]:
    """Run folders that cannot be opened (a failed start, a crash before the first checkpoint), with why."""
    return class_session.visible(_broken_runs(checkpoints_root()))


def default_run_name(runs: list[RunInfo]) -> str | None:
    """The shipped model when present, else the newest run."""
    names = [r.name for r in runs]
    if SHIPPED_RUN in names:
        return SHIPPED_RUN
    return names[0] if names else None


def selected_run_info() -> RunInfo | None:
    """The RunInfo chosen in the sidebar (falls back to the default run)."""
    runs = all_runs()
    name = st.session_state.get(RUN_KEY) or default_run_name(runs)
    return next((r for r in runs if r.name == name), None)


def selected_run(step: int | None = None):
    """The loaded run chosen in the sidebar, or a friendly message and st.stop() when there is none."""
    info = selected_run_info()
    if info is None:
        st.info("No trained model yet. Train one on the **Train** page (a tiny preset takes seconds).")
        st.stop()
    try:
        return cached_run(info.path, step)
    except RunError as e:
        if info.state in ("running", "starting", "queued"):  # not broken: its first weights are on their way
            st.info(f"**{info.name}** is training and has no weights yet; they appear at its first evaluation. "
                    "Its progress shows in the sidebar.")
        else:
            st.warning(f"Cannot load **{info.name}**: {e}")
        st.stop()


def selected_attention_run(title: str, lacks: str):
    """The preamble of a page about attention: the selected run, the page title, and for a bigram model (which
    has no attention and no layers) a note saying what it `lacks` (e.g. "no attention heads") and st.stop()."""
    run = selected_run()
    st.title(title)
    if not run.config.has_attention:
        st.info(f"A **bigram** model has {lacks}. Pick a single-head, multi-head or GPT model.")
        st.stop()
    return run


_PENDING_KEY = "_pending_run_selection"


_FLASH_KEY = "_flash_message"


def select_run(name: str) -> None:
    """Ask the sidebar picker to switch to `name` on the next rerun (once the run folder is listed)."""
    st.session_state[_PENDING_KEY] = name


def pending_selection() -> str | None:
    """The run a page asked the picker to follow that is not listed yet (e.g. a run still reading its corpus)."""
    return st.session_state.get(_PENDING_KEY)


def clear_pending_selection() -> None:
    st.session_state.pop(_PENDING_KEY, None)


def follow_started_run(name: str, message: str) -> None:
    """After a page started (or resumed) a run: the picker follows it, and the whole app reruns so the sidebar
    status starts polling at once; `message` is shown once on the page after that rerun (flash_message)."""
    select_run(name)
    st.session_state[_FLASH_KEY] = message
    st.rerun()


def flash_message() -> None:
    """Show (once) the message left by follow_started_run."""
    message = st.session_state.pop(_FLASH_KEY, None)
    if message:
        st.success(message)


def apply_pending_selection(names: list[str]) -> None:
    """Called by app.py before drawing the picker: apply a selection requested by a page."""
    pending = st.session_state.get(_PENDING_KEY)
    if pending and pending in names:
        st.session_state[RUN_KEY] = pending
        del st.session_state[_PENDING_KEY]


def run_label(info: RunInfo) -> str:
    """One line for the model picker: name, arch, size, progress, best val loss, live state."""
    params = f"{info.params / 1e6:.1f}M" if info.params >= 1e5 else f"{info.params / 1e3:.0f}k"
    val = f" · val {info.best_val:.2f}" if info.best_val is not None else ""
    state = f" · {info.state}" if info.state in ("running", "orphaned", "failed") else ""
    return f"{info.name} · {info.arch} {params} · {info.step}/{info.max_iters}{val}{state}"
