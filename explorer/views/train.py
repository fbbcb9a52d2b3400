"""Train: a form that starts `python -m gpt.train` in the background, and the live view of a run.

The form's logic lives in explorer/jobs/train_form.py, the live view in explorer/ui/train_live.py.
"""
import time

import streamlit as st

from explorer.classroom import policy as classroom
from explorer.classroom import queue as class_queue
from explorer.classroom import session as class_session
from explorer.jobs import training as jobs
from explorer.jobs.train_form import (
    ARCH_LABELS,
    DEFAULT_PRESET,
    INTEGER_FIELDS,
    LADDER_NOTE,
    LIMITS,
    FormValues,
    auto_name,
    estimate,
    expected_seconds,
    hidden_settings,
    human_bytes,
    human_count,
    ladder_options,
    needs_confirmation,
    preset_form_values,
    problems,
    timing_for,
    train_options,
)
from explorer.ui.cache import corpus_text, training_timing
from explorer.ui.run_picker import all_runs, select_run, selected_run_info
from explorer.ui.text import code_md, read_upload
from explorer.ui.train_live import WATCH_KEY, live_view, watched_run
from gpt.config import ARCHS, PRESETS
from gpt.data import BUILTIN_CORPORA, CorpusError
from gpt.runs import RunError, checkpoints_root, sanitize_run_name
from gpt.train import available_memory_bytes
from gpt.training import distributed

SOURCES = ["Built-in", "Upload .txt", "Paste text", "Selected run's corpus"]
# the form opens on a named preset that trains a model worth looking at in about a minute
DEFAULTS = {"tf_preset": DEFAULT_PRESET, **{f"tf_{k}": v for k, v in preset_form_values(DEFAULT_PRESET).items()},
            "tf_tokenizer": "char", "tf_vocab_size": 512}
for key, value in DEFAULTS.items():
    st.session_state.setdefault(key, value)


# ---- callbacks that fill the form (they run before the widgets are drawn) ----
def apply_preset():
    name = st.session_state.get("tf_preset")
    if name in PRESETS:
        for k, v in preset_form_values(name).items():
            st.session_state[f"tf_{k}"] = v


def prefill_from_selected():
    info = selected_run_info()
    if info is None:
        return
    m, t = info.config["model"], info.config["train"]
    for k in ("arch", "n_layer", "n_head", "n_embd", "block_size", "dropout"):
        st.session_state[f"tf_{k}"] = getattr(m, k)
    for k in ("batch_size", "max_iters", "lr", "warmup_iters", "eval_interval", "seed"):
        st.session_state[f"tf_{k}"] = getattr(t, k)
    st.session_state.tf_bf16 = t.dtype == "bfloat16"
    st.session_state.tf_tokenizer = info.config.get("tokenizer") or "char"
    if st.session_state.tf_tokenizer == "bpe":
        st.session_state.tf_vocab_size = m.vocab_size
    st.session_state.tf_source = SOURCES[3]
    st.session_state.tf_finetune = False
    st.session_state.tf_preset = "custom"


def builtin_corpus(name: str) -> tuple[int, int, str | None]:
    """(characters, distinct characters, error) of a built-in corpus."""
    text, error = corpus_text(name)
    return len(text), len(set(text)), error


# ---- the form ----
def number_field(column, key: str, step=None, **kwargs):
    """A number box with no bounds of its own: the widget would silently keep the old value when a typed one
    is out of range; instead train_form.problems refuses it with a message naming the range. Whole-number
    fields get an int step, which makes the box an integer one (no bounds, an int value and an int step)."""
    label, low, high = LIMITS[key]
    if key in INTEGER_FIELDS:
        step = int(step or 1)
    return column.number_input(LABELS.get(key, label), min_value=None, max_value=None, step=step, key=f"tf_{key}",
                               help=f"{low:g} to {high:g}", **kwargs)


LABELS = {"block_size": "Block size (context)"}


def form() -> None:
    info = selected_run_info()
    top1, top2, top3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    top1.selectbox("Preset", ["custom", *PRESETS], key="tf_preset", on_change=apply_preset,
                   format_func=lambda p: p if p == "custom" else f"{p}: {PRESETS[p][2]}")
    top2.button("Retrain selected", on_click=prefill_from_selected, disabled=info is None,
                help="Fill the form from the run chosen in the sidebar; change one thing and compare.",
                width="stretch")
    finetune = top3.toggle("Fine-tune selected", key="tf_finetune", disabled=info is None,
                           help="Start from the selected run's weights (its shape and tokenizer), on a corpus "
                                "of your choice.")
    parent = None
    if finetune and info is not None:
        parent = info.config["model"]
        st.info(f"Fine-tuning **{info.name}**: {parent.arch}, {parent.n_layer} layers × {parent.n_head} heads, "
                f"{parent.n_embd} wide, block {parent.block_size}, its {info.config.get('tokenizer')} tokenizer.")

    st.markdown("**Data**")
    d1, d2, d3 = st.columns([2, 2, 1])
    source = d1.radio("Corpus", SOURCES, key="tf_source", horizontal=True)
    corpus, corpus_text, char_vocab, upload_error = None, None, 65, None
    if source == "Built-in":
        corpus = d2.selectbox("Built-in corpus", list(BUILTIN_CORPORA), format_func=lambda n: f"{n}: "
                              f"{BUILTIN_CORPORA[n]}")
        n_chars, char_vocab, error = builtin_corpus(corpus)
        if error:
            st.warning(error)
        else:
            d2.caption(f"{n_chars:,} characters, {char_vocab} distinct")
    elif source == "Upload .txt":
        upload = d2.file_uploader("UTF-8 text file", type=["txt"])
        if upload is not None:
            corpus_text, upload_error = read_upload(upload)
    elif source == "Paste text":
        corpus_text = d2.text_area("Text to learn from", height=120, placeholder="Paste a few KB or more...")
    else:
        corpus = str((info.config.get("corpus") if info else "") or "")
        d2.caption(f"`{corpus}`" if corpus else "The selected run records no corpus.")
        corpus = corpus or None
    if corpus_text is not None:
        char_vocab = len(set(corpus_text)) or 1
        d2.caption(f"{len(corpus_text):,} characters, {char_vocab} distinct")
    tok_kind = d3.radio("Tokenizer", ["char", "bpe"], key="tf_tokenizer", disabled=parent is not None,
                        format_func=lambda k: {"char": "characters", "bpe": "BPE"}[k])
    vocab_size = number_field(d3, "vocab_size", step=64,
                                 disabled=tok_kind != "bpe" or parent is not None)

    st.markdown("**Model**")
    shape = parent is not None
    arch = st.radio("Architecture (the ladder)", ARCHS, key="tf_arch", disabled=shape, horizontal=True,
                    format_func=ARCH_LABELS.get,
                    help="Each rung adds one idea: bigram (a lookup table) → one attention head → several heads "
                         "→ full GPT blocks with MLPs.")
    m1, m2, m3, m4, m5 = st.columns(5)
    n_layer = number_field(m1, "n_layer", disabled=shape or arch == "bigram")
    n_head = number_field(m2, "n_head", disabled=shape or arch in ("bigram", "single_head"))
    n_embd = number_field(m3, "n_embd", step=16, disabled=shape)
    block = number_field(m4, "block_size", step=16, disabled=shape)
    dropout = number_field(m5, "dropout", step=0.05, disabled=shape)

    st.markdown("**Training**")
    t1, t2, t3, t4, t5, t6, t7 = st.columns(7)
    batch = number_field(t1, "batch_size")
    iters = number_field(t2, "max_iters", step=100)
    lr = number_field(t3, "lr", format="%g", step=1e-4)
    warmup = number_field(t4, "warmup_iters")
    eval_every = number_field(t5, "eval_interval")
    seed = number_field(t6, "seed")
    bf16 = t7.checkbox("bf16", key="tf_bf16", help="bfloat16: faster on CPUs with AVX-512 BF16/AMX; elsewhere it is emulated and "
                                              "many times slower, so presets tick it only where it is native.")

    values = FormValues(corpus=corpus, corpus_text=corpus_text, tokenizer=tok_kind, vocab_size=int(vocab_size),
                        char_vocab=char_vocab, arch=arch, n_layer=int(n_layer), n_head=int(n_head),
                        n_embd=int(n_embd), block_size=int(block), dropout=float(dropout), batch_size=int(batch),
                        max_iters=int(iters), lr=float(lr), warmup_iters=int(warmup),
                        eval_interval=int(eval_every), seed=int(seed), bf16=bool(bf16),
                        preset=st.session_state.get("tf_preset"),
                        init_from=str(info.path) if parent is not None else None, parent_config=parent)
    hidden = hidden_settings(values.preset)
    if hidden and parent is None:
        st.caption(f"Also from the preset **{values.preset}**: "
                   + ", ".join(f"{k} = {v}" for k, v in hidden.items()))
    issues = [upload_error] if upload_error else problems(values, available_memory_bytes())
    me, in_class = class_session.actor(), class_session.active()
    if in_class and not me.teacher and not issues:   # the teacher's caps, said before Start is pressed
        issues = classroom.request_problems(class_session.settings(), estimate(values)["params"], values.max_iters,
                                            len(corpus_text.encode("utf-8")) if corpus_text is not None else 0)
    if finetune and info is not None and corpus_text and info.config.get("tokenizer") == "char":
        from gpt.tokenizers import load_tokenizer  # the tokenizer alone: no weights needed for this check
        unknown = load_tokenizer(info.path / "tokenizer.json").unknown_chars(corpus_text)
        if unknown:
            issues.append(f"the text holds {len(unknown)} character(s) the parent's tokenizer does not know: "
                          + ", ".join(code_md(c) for c in unknown[:10]))

    expected_s = None
    if not issues:
        est = estimate(values)
        e1, e2, e3, e4, e5 = st.columns(5)
        e1.metric("Parameters", human_count(est["params"]))
        e2.metric("FLOPs per step", human_count(est["flops_per_step"], "FLOP"))
        e3.metric("FLOPs for the run", human_count(est["flops_total"], "FLOP"))
        e4.metric("Training memory", human_bytes(est["memory_bytes"]))
        timing_note = ""
        try:
            timing = timing_for(values, training_timing, jobs.trainer_threads())
            expected_s = expected_seconds(values, timing)
            source = ("timing a few training steps of this shape" if timing["measured"]
                      else "a timing at a smaller shape, scaled by FLOPs")
            timing_note = (f"the expected time comes from {source} "
                           f"on this machine ({timing['step_s'] * 1000:,.0f} ms per step, {jobs.trainer_threads()} "
                           "thread(s)); a busier machine takes longer.")
        except RuntimeError as e:
            timing_note = f"the wall time could not be measured ({e})."
        e5.metric("Expected wall time", jobs.format_eta(expected_s) if expected_s is not None else "—")
        st.caption(f"Estimated from the shape: {est['tokens_per_step']:,} tokens per step; memory counts "
                   f"weights, gradients, AdamW moments and activations; {timing_note}")
    else:
        st.error("Cannot start yet:\n" + "\n".join(f"- {p}" for p in issues))
    confirmed = True
    if needs_confirmation(expected_s):
        confirmed = st.checkbox(f"Yes, start a run expected to take about {jobs.format_eta(expected_s)}",
                                key="tf_confirm_long",
                                help="Over two hours on this machine: tick to confirm it is what you want.")
        if not confirmed:
            st.warning(f"This run is expected to take about {jobs.format_eta(expected_s)} on this machine; "
                       "tick the box above to start it anyway, or choose a smaller shape or fewer iterations.")

    name = st.text_input("Run name (optional)", key="tf_name",
                         placeholder=f"automatic, e.g. {auto_name(values, now=0)[:-12]}-<date>-<time>",
                         help="Letters, digits, '-', '_' and '.'; becomes the folder under checkpoints/.")
    gpus = distributed.device_count()
    nproc = 1
    if gpus > 1:  # DDP only pays where there are several devices; a CPU-only machine trains in one process
        nproc = int(st.number_input("Processes (torchrun, one per GPU)", 1, gpus, gpus, key="tf_nproc",
                                    help="Data-parallel training: each process takes its slice of every "
                                         "batch; only the first writes the run folder."))
    busy = jobs.busy_message()
    if busy and in_class:   # classroom mode queues instead of refusing
        st.info("Every training slot of the class is busy: a run you start now waits in the queue, and this page "
                "shows your place and when it is expected to start.")
    elif busy:
        st.warning(busy)
    queued = in_class and busy is not None
    s1, s2, _ = st.columns([1, 2, 3])
    start = s1.button("Start training", type="primary", icon=":material/rocket_launch:",
                      disabled=bool(issues or (busy and not in_class) or not confirmed))
    ladder = s2.button("Train the ladder", icon=":material/stairs:",
                       disabled=bool(issues or busy or finetune or (in_class and not me.teacher)),
                       help="bigram → single head → multi-head → GPT, one after another, on the corpus above "
                            "with the ladder's own shapes and budgets: " + LADDER_NOTE
                            + (" (In the class, the teacher starts ladders.)" if in_class else ""))
    corpus_bytes = corpus_text.encode("utf-8") if corpus_text is not None else None
    try:
        if start:
            run_name = sanitize_run_name(name) if name.strip() else auto_name(values)
            if in_class and not name.strip() and me.learner_id:   # classmates pressing Start in the same second
                run_name = sanitize_run_name(f"{me.name}-{run_name}")
            options = train_options(values)
            if nproc > 1:
                options["nproc"] = nproc
            if in_class:   # through the class's queue: caps, one job per learner, quotas, the run's owner
                entry = class_queue.enqueue(me, class_session.settings(), run_name, options, corpus_bytes=corpus_bytes,
                                            params=estimate(values)["params"], expected_s=expected_s)
                if any(e["id"] == entry["id"] for e in class_queue.waiting()):
                    st.session_state[WATCH_KEY] = None
                    st.rerun()
                out = checkpoints_root() / entry["run"]
            else:
                out = jobs.start_job(run_name, options, corpus_bytes=corpus_bytes)
            st.session_state[WATCH_KEY] = out.name
            select_run(out.name)
            st.rerun()
        if ladder:
            stamp = time.strftime("ladder-%m%d-%H%M%S")
            outs = jobs.start_chain([(f"{stamp}-{arch}", opts) for arch, opts in ladder_options(values)],
                                    corpus_bytes=corpus_bytes)
            st.session_state[WATCH_KEY] = outs[0].name
            st.rerun()
    except (jobs.JobError, RunError, CorpusError) as e:
        st.error(str(e))
    if queued:
        st.caption("Press Start to join the queue.")
    if not (in_class and not me.teacher):   # in the class, sweeps are the teacher's
        sweep_expander(values, issues)


# ---- sweeps (explorer/jobs/sweeps.py runs them; the Runs page compares them) ----
def sweep_expander(values, issues: list[str]) -> None:
    """The form's settings, with one or two hyperparameters varied over a list of values, times N seeds."""
    from explorer.jobs import sweeps as sweep_queue
    from gpt.lab.sweeps import SWEEPABLE, SweepError, parse_values, plan
    with st.expander("Sweep: vary one or two hyperparameters over several seeds", icon=":material/tune:"):
        st.caption("Every combination of the values below, each trained with N seeds and otherwise the form's "
                   "settings. The runs wait in a queue and start as the job limit allows; the Runs page plots "
                   "final validation loss against the hyperparameter, with the spread over seeds.")
        names = list(SWEEPABLE)
        c1, c2, c3, c4 = st.columns([1, 2, 1, 2])
        p1 = c1.selectbox("Hyperparameter", names, key="sw_p1")
        v1 = c2.text_input("Values (comma-separated)", "1e-3, 3e-3" if p1 == "lr" else "", key="sw_v1")
        p2 = c3.selectbox("Second (optional)", ["none", *[n for n in names if n != p1]], key="sw_p2")
        v2 = c4.text_input("Its values", "", key="sw_v2", disabled=p2 == "none")
        s1, s2, _ = st.columns([1, 2, 2])
        n_seeds = int(s1.number_input("Seeds", 1, 8, 3, key="sw_seeds", help="Seeds 1..N for every setting."))
        sweep_name = s2.text_input("Sweep name", time.strftime("sweep-%m%d-%H%M%S"), key="sw_name")
        try:
            params = {p1: parse_values(p1, v1)}
            if p2 != "none":
                params[p2] = parse_values(p2, v2)
            planned = plan(sweep_name, params, list(range(1, n_seeds + 1)))
        except (SweepError, RunError) as e:
            st.caption(f"To start: {e}")
            return
        st.caption(f"{len(planned)} runs: " + ", ".join(p.run for p in planned[:4]) + (" ..." if len(planned) > 4 else ""))
        if st.button("Start the sweep", icon=":material/queue:", disabled=bool(issues), key="sw_start"):
            base = {k: v for k, v in train_options(values).items() if k not in ("seed", "init_from")}
            try:
                path = sweep_queue.start_sweep(sweep_name, params, list(range(1, n_seeds + 1)), base,
                                               corpus_text=values.corpus_text)
            except (SweepError, RunError, jobs.JobError, OSError) as e:
                st.error(str(e))
            else:
                st.toast(f"Sweep {path.stem} queued: {len(planned)} runs")


st.title("Train")
class_session.queue_panel()   # classroom mode: this learner's place in the queue, or why a request failed
run_dir = watched_run()
if run_dir is not None and run_dir.is_dir():
    live_view(run_dir)
    st.divider()
st.subheader("Start a new run")
st.caption("Training runs as a separate process: leave this page, switch models or reload the browser and "
           "it keeps going; the sidebar shows its progress everywhere.")
form()
if not all_runs():
    st.caption("Tip: the default preset trains a small Shakespeare model that writes recognisable lines in about "
               "a minute on 2 CPU cores; the expected time above is measured on this machine.")
