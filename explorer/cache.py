"""Every Streamlit cache of the app, in one place.

`st.cache_resource` holds shared objects (loaded eval-mode models: shared by all sessions, so never mutated or
hooked; capture per call with gpt.model.Trace); `st.cache_data` holds computed results. Each wrapper's
arguments are its cache key and are named for what they key: `weights_mtime` re-keys a run that is still
training, `snapshot_step` picks a time-machine snapshot (None = the latest weights).
"""
from __future__ import annotations
