"""Prompts: the defaults a page starts from (the teaching prompt, a line of the evaluation text), the prompt box
bound to the learner's place, and token ids with a clear note when characters are unknown."""
from __future__ import annotations

import streamlit as st

from explorer.ui.eval_text import eval_excerpt_source
from explorer.ui.state import bind, place, remember
from explorer.ui.text import code_md
from gpt.evaltext import excerpt as eval_excerpt
from gpt.generate import crop_prompt
from gpt.tokenizers import UnknownCharactersError

_PROMPT_RUN_KEY = "_prompt_run"  # the run the remembered prompt was last shown with (prompt_for_run)


FALLBACK_PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?"


# a name said more than once, so previous-token and induction heads show without typing ("Rom" -> "eo" again)
TEACHING_PROMPT = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?"


def default_prompt(run, max_tokens: int | None = None) -> str:
    """A line or two of the session's evaluation text (the sidebar's choice; the run's own validation text by
    default) with every character known to the tokenizer, at most max_tokens tokens."""
    max_tokens = max_tokens or min(64, run.config.block_size)
    excerpt = eval_excerpt(eval_excerpt_source(run), 4 * max_tokens + 40)
    candidates = [excerpt, FALLBACK_PROMPT, "".join(c for c in "the " if not run.tokenizer.unknown_chars(c))]
    for text in candidates:
        if not text or run.tokenizer.unknown_chars(text):
            continue
        ids = run.tokenizer.encode(text)[:max_tokens]
        # cut at a line end when there is one, so the prompt reads naturally
        decoded = run.tokenizer.decode(ids)
        cut = decoded.rfind("\n")
        return decoded[:cut + 1] if cut > len(decoded) // 2 else decoded
    return run.tokenizer.decode([0])


def teaching_prompt(run) -> str:
    """The default prompt of the landing and attention pages: TEACHING_PROMPT when the run's tokenizer knows
    every character of it and it fits the context, else a line of the run's own corpus."""
    text = TEACHING_PROMPT
    if run.tokenizer.unknown_chars(text) or len(run.tokenizer.encode(text)) > run.config.block_size:
        return default_prompt(run, max_tokens=min(48, run.config.block_size))
    return text


def prompt_for_run(run, default: str) -> None:
    """Call before binding the prompt: a remembered prompt typed for another model (e.g. the landing page's, before
    the learner trained a model on their own text) that this run's tokenizer cannot read is replaced by `default`,
    with a note. On the same run a bad prompt stays, and encode_or_explain names its characters."""
    previous = st.session_state.get(_PROMPT_RUN_KEY)
    text = place("prompt", None)
    if previous not in (None, run.path.name) and isinstance(text, str) and text and run.tokenizer.unknown_chars(text):
        remember("prompt", default)
        st.info(f"The prompt from **{previous}** has characters **{run.path.name}** does not know; showing a line "
                "this model can read instead.")
    st.session_state[_PROMPT_RUN_KEY] = run.path.name


def encode_or_explain(run, text: str) -> list[int] | None:
    """Token ids for text, or None after showing which characters the tokenizer does not know."""
    if not text:
        st.info("Type some text first.")
        return None
    try:
        return run.tokenizer.encode(text)
    except UnknownCharactersError as e:
        shown = " ".join(code_md(c) for c in e.chars[:20])
        st.error(f"This model's character vocabulary has no {shown}. It only knows the "
                 f"{run.tokenizer.vocab_size} characters of its training text; remove or replace them.")
        return None


def crop_note(run, ids: list[int], limit: int | None = None, reason: str = "this model reads") -> list[int]:
    """The one crop policy (gpt.generate.crop_prompt: keep the LAST tokens, what the model sees when it writes the
    next one), with a note on the page when it cropped: how many tokens were dropped. limit: at most this many
    (default and at most: the block size)."""
    limit = min(limit or run.config.block_size, run.config.block_size)
    kept, dropped = crop_prompt(ids, limit)
    if dropped:
        what = f"{reason} at most {limit}" + (" (its block size)" if limit == run.config.block_size else "")
        st.warning(f"The prompt has {len(ids)} tokens; {what}, so its last {limit} are used and the first "
                   f"{dropped} left out (as when the model generates).")
    return kept


def teaching_prompt_ids(run) -> list[int]:
    """The prompt box of the pipeline pages (Inside a prediction, Attention, MLP neurons): bound to the learner's
    remembered prompt (teaching_prompt by default), encoded, and cropped to the model's block size (crop_note).
    Stops the page, after saying why, when there is nothing this model can read."""
    default = teaching_prompt(run)
    prompt_for_run(run, default)
    prompt = st.text_area("Prompt", height=68, **bind("prompt", default))
    ids = encode_or_explain(run, prompt)
    if ids is None:
        st.stop()
    return crop_note(run, ids)
