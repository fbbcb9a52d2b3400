"""GPT Explorer: the Streamlit app built on the gpt/ library (`streamlit run explorer/app.py`)."""
import sys


def _leave_legacy_multipage_mode() -> None:
    """Streamlit treats a folder named pages/ next to the entry point as a v1 multipage app until some session
    calls st.navigation. A fresh server whose first visitor opens /train would then run pages/train.py on its
    own, without app.py (no sidebar, no page config). Every page imports this package, so switch to
    st.navigation mode here and rerun: the rerun goes through app.py, which routes to the same page."""
    if "streamlit" not in sys.modules:
        return
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    if PagesManager.uses_pages_directory and get_script_run_ctx(suppress_warning=True) is not None:
        import streamlit as st
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_multipage_mode()
