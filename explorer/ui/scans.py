"""Long one-off scans in a page (MLP top contexts, a dictionary's feature cards, Patching's grids on a big model):
a progress bar and a Stop button while they run.

The scan runs in the page's own script run. Pressing Stop asks Streamlit for a rerun, and Streamlit ends the running
script at its next element update -- the progress bar's, after every batch -- so the scan stops within one batch and
nothing half-done is kept (the library writes its cache file only at the end). On that rerun the Stop button reads
True: `run_scan` returns None, remembers the stop for this request, and the page offers a button to start again
instead of starting the scan by itself.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

import streamlit as st
import torch

from explorer.jobs import training as jobs

Result = TypeVar("Result")
_STOPPED = "_scan_stopped"   # session state: {scan key: the request that was stopped}


def was_stopped(key: str, request) -> bool:
    """Whether the learner stopped this scan for this very request (same run, text, prompt...)."""
    return st.session_state.get(_STOPPED, {}).get(key) == request


def forget_stop(key: str) -> None:
    st.session_state.get(_STOPPED, {}).pop(key, None)


@contextmanager
def all_cores_unless_training():
    """The UI keeps to one core for the trainers; while none runs, a one-off scan takes them all."""
    threads = torch.get_num_threads()
    if not jobs.live_jobs():
        torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_scan(key: str, request, label: str, work: Callable[[Callable[[float], None]], Result]) -> Result | None:
    """work(progress) under a progress bar titled `label`, with a Stop button above it. Returns work's result, or
    None when the learner pressed Stop (remembered for `request`, see was_stopped)."""
    holder = st.empty()
    with holder.container():
        if st.button("Stop the scan", key=f"{key}_stop", icon=":material/stop_circle:",
                     help="Stops the scan within one batch; nothing half-done is kept."):
            st.session_state.setdefault(_STOPPED, {})[key] = request
            holder.empty()
            return None
        bar = st.progress(0.0, text=f"{label} (starting)")

    def progress(fraction: float) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        bar.progress(fraction, text=f"{label} ({fraction:.0%})")

    try:
        with all_cores_unless_training():
            result = work(progress)
    except Exception:   # e.g. InterpError for the page to explain; Streamlit's stop/rerun are BaseExceptions
        holder.empty()
        raise
    holder.empty()
    forget_stop(key)
    return result
