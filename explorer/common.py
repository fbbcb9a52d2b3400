"""Helpers shared by every page: the selected run (loaded once per weights file, explorer/cache.py), prompt
defaults, safe HTML.

Pages import from here; the sidebar picker in app.py writes the choice to st.session_state[RUN_KEY].
Cached models are shared by all sessions: never mutate or hook them; pass a gpt.Trace per call instead.
"""
from __future__ import annotations

import html

import streamlit as st
import torch

from explorer import class_session
from explorer.cache import cached_run
from explorer.state import bind, place, remember
from gpt.data import CorpusError, decode_bytes
from gpt.evaltext import excerpt as eval_excerpt
from gpt.runs import BrokenRun, RunError, RunInfo, checkpoints_root, list_runs
from gpt.runs import broken_runs as _broken_runs
from gpt.tokenizers import UnknownCharactersError

RUN_KEY = "selected_run"        # session-state key of the sidebar model picker (a run folder name)
SHIPPED_RUN = "shakespeare-char"
_PROMPT_RUN_KEY = "_prompt_run"  # the run the remembered prompt was last shown with (prompt_for_run)
FALLBACK_PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?"
# a name said more than once, so previous-token and induction heads show without typing ("Rom" -> "eo" again)
TEACHING_PROMPT = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?"


def limit_threads() -> None:
    """The UI takes one core so a training job on a small machine keeps the rest."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# ---- runs ----
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


# ---- prompts ----
def default_prompt(run, max_tokens: int | None = None) -> str:
    """A line or two of the session's evaluation text (the sidebar's choice; the run's own validation text by
    default) with every character known to the tokenizer, at most max_tokens tokens."""
    from explorer.evaltext import eval_excerpt_source  # it imports this module: resolved at call time
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
        shown = " ".join(f"`{c!r}`" for c in e.chars[:20])
        st.error(f"This model's character vocabulary has no {shown}. It only knows the "
                 f"{run.tokenizer.vocab_size} characters of its training text; remove or replace them.")
        return None


def teaching_prompt_ids(run) -> list[int]:
    """The prompt box of the pipeline pages (Inside a prediction, Attention, MLP neurons): bound to the learner's
    remembered prompt (teaching_prompt by default), encoded, and cropped to the model's block size with a note.
    Stops the page, after saying why, when there is nothing this model can read."""
    default = teaching_prompt(run)
    prompt_for_run(run, default)
    prompt = st.text_area("Prompt", height=68, **bind("prompt", default))
    ids = encode_or_explain(run, prompt)
    if ids is None:
        st.stop()
    block = run.config.block_size
    if len(ids) > block:
        st.warning(f"The prompt has {len(ids)} tokens; this model reads at most {block} (its block size), so only "
                   f"the first {block} are used.")
    return ids[:block]


def read_upload(upload) -> tuple[str | None, str | None]:
    """(text, None) of an uploaded file, or (None, the one reason it cannot be used): binary, not UTF-8, empty
    or too large, said once (not also as "the text is empty" and "0 characters")."""
    try:
        return decode_bytes(upload.getvalue(), upload.name), None
    except CorpusError as e:
        return None, str(e)


# ---- safe HTML ----
def esc(text: str) -> str:
    """HTML-escape token text (a corpus containing <script> must show as text)."""
    return html.escape(text, quote=True)


def visible(text: str) -> str:
    """Whitespace made visible inside token chips."""
    return text.replace(" ", "\u00b7").replace("\n", "\u21b5").replace("\t", "\u2192") or "\u2205"


def token_label(tokenizer, token_id: int) -> str:
    """One token as shown everywhere: its own text with whitespace made visible (↵ for a newline, never a
    literal backslash-n); a byte-level token that is not whole UTF-8 keeps the tokenizer's hex escapes."""
    try:
        return visible(tokenizer.token_bytes(int(token_id)).decode("utf-8"))
    except UnicodeDecodeError:
        return tokenizer.token_str(int(token_id))


CHIP_STYLE = ("display:inline-block;margin:1px;padding:1px 3px;border-radius:4px;font-family:monospace;"
              "white-space:pre;font-size:0.95em;")


def chips_html(pieces: list[tuple[str, str, str]]) -> str:
    """pieces: (token text, hover title, css background colour) -> a row of escaped token chips. Chips between
    two spaces are kept on one line (a word never wraps in its middle), and a newline token ends the line."""
    words, word = [], []
    for text, title, color in pieces:
        if word and text[:1].isspace() and text.strip():   # a BPE token like " the" starts a new word
            words.append(word)
            word = []
        word.append(f'<span title="{esc(title)}" style="{CHIP_STYLE}background:{esc(color)}">{esc(visible(text))}</span>')
        if text[-1:].isspace() or not text:
            words.append(word + (["<br>"] if text.endswith("\n") else []))
            word = []
    if word:
        words.append(word)
    return ('<div style="line-height:1.9">'
            + "".join(f'<span style="white-space:nowrap">{"".join(w)}</span>' for w in words) + "</div>")


def prob_color(p: float) -> str:
    """Probability 0..1 -> a red (surprising) to green (expected) background."""
    p = min(max(float(p), 0.0), 1.0)
    hue = int(120 * p)
    return f"hsl({hue}, 75%, 80%)"


# ---- sidebar selection ----
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
