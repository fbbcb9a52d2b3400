"""Every Streamlit cache of the app, in one place.

`st.cache_resource` holds shared objects (loaded eval-mode models: shared by all sessions, so never mutated or
hooked; capture per call with gpt.model.Trace); `st.cache_data` holds computed results. Each wrapper's
arguments are its cache key and are named for what they key: `weights_mtime` re-keys a run that is still
training, `snapshot_step` picks a time-machine snapshot (None = the latest weights).
"""
from __future__ import annotations

import streamlit as st

from explorer.common import cached_run

# ---- Why this token / Patching / Steering (issue 13) ----


@st.cache_data(max_entries=16, show_spinner="Patching every layer boundary, position, head and MLP...")
def patching_grids(run_path: str, weights_step: int, clean_ids: tuple, corrupted_ids: tuple, answer: int,
                   wrong: int) -> dict:
    """The three patching results for one prompt pair (numpy, so the cache can copy them), and the baselines.
    weights_step keys a run whose weights moved on; InterpError passes through (it is not cached)."""
    from gpt.interp.patching import patch_heads, patch_mlps, patch_residual, patching_baseline
    model = cached_run(run_path).model
    args = (model, list(clean_ids), list(corrupted_ids), answer, wrong)
    base = patching_baseline(*args)
    return {"residual": patch_residual(*args).numpy(), "heads": patch_heads(*args).numpy(),
            "mlps": patch_mlps(*args).numpy() if model.config.has_mlp else None,
            "clean": base.clean_metric, "corrupted": base.corrupted_metric}
