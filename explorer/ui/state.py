"""The learner's place: what they chose stays put across page switches and survives a reload or a shared link.

Streamlit forgets a widget's value when a page without that widget runs, and a reload starts a new session.
So every choice that defines what is on screen (the prompt, layer, head, query position, generation settings)
is bound to a *place* name: its value lives in a session store that no page clears, and in the URL's query
parameters (`?layer=1&head=3&pos=12`), which a reload or a copied link brings back.

    layer = st.selectbox("Layer", range(n_layer), **bind("layer", 0, options=range(n_layer)))
"""
from __future__ import annotations

from typing import Any, Iterable

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

STORE = "_learner_place"       # session-state dict: place name -> value
PREFIX = "place_"              # widget keys are PREFIX + name
# name -> type of its value; one entry per choice that several pages share or a link should carry
PLACES: dict[str, type] = {
    "prompt": str, "layer": int, "head": int, "pos": int, "neuron": int,
    "temperature": float, "top_k": int, "top_p": float, "max_new": int, "seed": int, "greedy": bool,
    "probe": str, "probe_seed": int,        # Heads: which probe the detectors score
    "token": int, "dims": str,              # Embeddings: the token whose neighbours are shown, 2D or 3D
    "length": int, "offset": int,           # Per-token loss: which validation passage
    "feature": str,                         # Features: the open card, "<dictionary>#<index>"
    "eval_text": str,                       # the sidebar's evaluation text (gpt.evaltext: "run", a corpus, "pasted")
}
MAX_URL_TEXT = 600             # a longer prompt stays in the session but is not put in the URL


def _store() -> dict:
    return st.session_state.setdefault(STORE, {})


def parse(name: str, text: str) -> Any:
    """A query-parameter string as the place's type, or None when it does not parse."""
    kind = PLACES[name]
    try:
        if kind is bool:
            return {"true": True, "1": True, "false": False, "0": False}[text.lower()]
        return kind(text)
    except (KeyError, ValueError, TypeError):
        return None


def widget_key(name: str) -> str:
    """The widget key of a place on the page now running: one per page, because Streamlit ties a widget's
    state to the page that drew it (a key shared by two pages comes back empty); the store carries the value."""
    ctx = get_script_run_ctx(suppress_warning=True)
    page = ctx.page_script_hash[:8] if ctx is not None and ctx.page_script_hash else "main"
    return f"{PREFIX}{name}@{page}"


def place(name: str, default: Any = None) -> Any:
    """The remembered value of a place: this session's choice, else the URL's, else `default`."""
    store = _store()
    if name in store:
        return store[name]
    if name in st.query_params:
        value = parse(name, st.query_params[name])
        if value is not None:
            return value
    return default


def remember(name: str, value: Any) -> None:
    """Store a place's value (e.g. a click on a chart selected a head) and put it in the URL."""
    if name not in PLACES:
        raise KeyError(f"unknown place {name!r}; add it to PLACES")
    _store()[name] = value
    _to_url(name, value)
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(f"{PREFIX}{name}@")]:
        del st.session_state[key]   # the widgets pick the new value up on their next run (see bind)


def _to_url(name: str, value: Any) -> None:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if len(text) <= MAX_URL_TEXT:
        st.query_params[name] = text
    elif name in st.query_params:
        del st.query_params[name]


def _on_change(name: str, key: str) -> None:
    # The key comes in `args`, fixed when the widget was drawn: a quick click can run this callback at the start
    # of another page's rerun (the request still carries the earlier page's widget), where widget_key(name) names
    # a widget that page never drew, and the earlier key may already be gone from session state.
    if key not in st.session_state:
        return
    value = st.session_state[key]
    _store()[name] = value
    _to_url(name, value)


def bind(name: str, default: Any, options: Iterable | None = None) -> dict:
    """Keyword arguments that bind a widget to a place: `st.slider("Layer", ..., **bind("layer", 0))`.

    The widget starts from the remembered value (falling back to `default` when it is not one of `options`),
    and every change is stored and written to the URL."""
    key = widget_key(name)
    allowed = None if options is None else list(options)
    value = place(name, default)
    if allowed is not None and value not in allowed:
        value = default
    if name in _store() and key in st.session_state and st.session_state[key] != _store()[name]:
        del st.session_state[key]   # changed on another page since this page last drew the widget
    if key not in st.session_state or (allowed is not None and st.session_state[key] not in allowed):
        st.session_state[key] = value  # e.g. layer 5 kept from a bigger model than the one now selected
    _store()[name] = st.session_state[key]
    _to_url(name, st.session_state[key])
    return {"key": key, "on_change": _on_change, "args": (name, key)}


def fresh_click(chart_key: str, value: Any) -> bool:
    """True once per new chart selection: a chart keeps reporting its last click on every rerun, which must not
    undo a choice made since with a widget. `value` is the selection (hashable, None when nothing is selected)."""
    seen_key = f"_seen_click_{chart_key}"
    if value is None or st.session_state.get(seen_key) == value:
        st.session_state[seen_key] = value
        return False
    st.session_state[seen_key] = value
    return True
