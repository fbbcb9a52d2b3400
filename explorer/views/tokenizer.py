"""Tokenizer: how text becomes token ids, the vocabulary with corpus frequencies, and BPE merges."""
import pandas as pd
import streamlit as st

from explorer.ui.cache import corpus_token_counts
from explorer.ui.prompts import default_prompt
from explorer.ui.run_picker import selected_run
from explorer.ui.state import bind
from explorer.ui.text import chips_html, code_md, raw_token, text_md, token_text

CHIP_COLORS = ["#cfe3ff", "#ffe2c6", "#d6f5d6", "#f3d4f7"]
FREQ_CHARS = 300_000  # corpus characters counted for the frequency column (BPE encoding is pure Python)

run = selected_run()
tok = run.tokenizer
st.title("Tokenizer")
kind = "byte-level BPE" if tok.kind == "bpe" else "character"
st.caption(f"**{run.path.name}** uses a {kind} tokenizer with {tok.vocab_size:,} tokens. The model never sees "
           "letters, only these token ids.")

text = st.text_area("Text", height=110, **bind("prompt", default_prompt(run, max_tokens=min(80, run.config.block_size))))
unknown = tok.unknown_chars(text)
if unknown:
    shown = ", ".join(code_md(c) for c in unknown[:20])
    st.error(f"{len(unknown)} character(s) are not in this model's vocabulary: {shown}. They are marked in red "
             "below; a character-level model can only read characters it saw in training.")
    bad = set(unknown)
    st.markdown(chips_html([(c, "unknown character" if c in bad else "known", "#ff9c9c" if c in bad else "#eeeeee")
                            for c in text]), unsafe_allow_html=True)
    st.caption("Red = unknown character, grey = known.")
elif text:
    ids = tok.encode(text)
    pieces = [(raw_token(tok, i), f"id {i}", CHIP_COLORS[n % 2]) for n, i in enumerate(ids)]
    st.markdown(chips_html(pieces), unsafe_allow_html=True)
    st.caption("Each chip is one token (alternating colours; · is a space, ↵ a newline). Hover a chip to see its id.")
    c1, c2, c3 = st.columns(3)
    c1.metric("Tokens", len(ids))
    c2.metric("Characters", len(text))
    c3.metric("Characters per token", f"{len(text) / max(1, len(ids)):.2f}")
    with st.expander("Token ids"):
        st.code(str(ids), language=None, wrap_lines=True)


st.subheader("Vocabulary")
spec = str(run.extra.get("corpus") or "")
counts, counted = corpus_token_counts(str(run.path), spec, FREQ_CHARS)
total = sum(counts.values()) or 1
vocab = pd.DataFrame([{"id": i, "token": token_text(tok, i), "bytes": len(tok.token_bytes(i)), "count": counts.get(i, 0),
                       "share": counts.get(i, 0) / total} for i in range(tok.vocab_size)])
st.dataframe(vocab, hide_index=True, width="stretch", height=320, column_config={
    "share": st.column_config.ProgressColumn("share", format="%.4f", min_value=0.0,
                                             max_value=float(vocab["share"].max() or 1))})
if counted:
    st.caption(f"Every token with how often it appears in the first {counted:,} characters of the training "
               f"corpus ({text_md(spec if len(spec) < 40 else '…' + spec[-38:])}). Sort by clicking a column.")
else:
    st.caption("Every token in the vocabulary (the training corpus is not available here, so no counts).")

if tok.kind == "bpe":
    st.subheader("BPE merges")
    merges = pd.DataFrame([{"rank": r, "left": token_text(tok, a), "right": token_text(tok, b),
                            "new token": token_text(tok, new), "new id": new}
                           for r, (a, b, new) in enumerate(tok.merges)])
    st.dataframe(merges, hide_index=True, width="stretch", height=260)
    st.caption("Training merged the most frequent adjacent pair first; encoding replays the merges in this order.")
    word = st.text_input("Replay how a word is built", "Romeo" if not text else text.split()[0][:30])
    if word:
        for chunk in tok.pre_split(word)[:5]:
            for n, ids in enumerate(tok.replay(chunk)):
                st.markdown(f"<small>step {n}</small> " + chips_html(
                    [(raw_token(tok, i), f"id {i}", CHIP_COLORS[k % 2]) for k, i in enumerate(ids)]),
                    unsafe_allow_html=True)
        st.caption("From single bytes (top) to final tokens (bottom): each line applies the next merge that "
                   "matches. Words are first split GPT-2 style (letters, digits, punctuation, spaces) and "
                   "merges never cross those pieces.")
