"""GPT Explorer entry point: `streamlit run explorer/app.py` (early version: pick a run, generate)."""
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpt.generate import generate_text  # noqa: E402
from gpt.runs import list_runs, load_run  # noqa: E402

st.set_page_config(page_title="GPT Explorer", layout="wide")
runs = list_runs()
if not runs:
    st.info("No runs in checkpoints/ yet. Train one with `python -m gpt.train`.")
    st.stop()
choice = st.sidebar.selectbox("Model", [r.name for r in runs])
run = load_run(runs[[r.name for r in runs].index(choice)].path)
st.title("GPT Explorer")
prompt = st.text_input("Prompt", "ROMEO:")
if st.button("Generate") and prompt:
    st.code(prompt + generate_text(run.model, run.tokenizer, prompt, max_new_tokens=200, temperature=0.8, seed=1))
