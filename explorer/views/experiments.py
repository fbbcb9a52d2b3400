"""Guided experiments: train a tiny model on a synthetic task and check which circuit it grew."""
import shlex

import streamlit as st

from explorer.classroom import queue as class_queue
from explorer.classroom import session as class_session
from explorer.figures.attention import attention_heatmap, head_grid
from explorer.jobs import training as jobs
from explorer.ui.cache import cached_run
from explorer.ui.run_picker import all_runs, flash_message, follow_started_run
from explorer.ui.text import token_text
from gpt.config import GPTConfig
from gpt.interp.capture import attention_patterns
from gpt.interp.experiments import TASKS, build_probe, check, task_of_run, train_command, write_corpus
from gpt.runs import RunError, checkpoints_root
from gpt.sizing import count_params

st.title("Guided experiments")
st.caption("Tiny tasks whose solutions need a known attention circuit. Each trains in a minute or two on a CPU; "
           "then the app checks what grew.")
name = st.radio("Task", list(TASKS), format_func=lambda n: TASKS[n].title, horizontal=True)
task = TASKS[name]
st.markdown(task.explanation)
st.markdown(f"**What should grow:** {task.expect}.")
corpus = write_corpus(task)
sample = corpus.read_text(encoding="utf-8")[:120]
st.code(sample, language=None)
options = dict(task.options)
st.caption("Trains with: `" + shlex.join(train_command(task, corpus, "checkpoints/<name>")) + "`")

existing = [r for r in all_runs() if r.config.get("corpus") and r.config["corpus"].endswith(corpus.name)]
run_name = st.text_input("Run name", f"exp-{name}-{len(existing) + 1}")
def task_params() -> int:
    """The task model's parameter count (the teacher's size cap applies to it too)."""
    shape = {k: v for k, v in options.items() if k in GPTConfig.__dataclass_fields__}
    return count_params(GPTConfig(**shape, vocab_size=len(set(corpus.read_text(encoding="utf-8")))))


if st.button(f"Train the {name} model", type="primary"):
    try:
        if class_session.active():   # through the class's queue: caps, one job per learner, the run's owner
            entry = class_queue.enqueue(class_session.actor(), class_session.settings(), run_name,
                                        {"corpus": str(corpus), **options}, params=task_params())
            waits = any(e["id"] == entry["id"] for e in class_queue.waiting())
            out = None if waits else checkpoints_root() / entry["run"]
        else:
            out = jobs.start_job(run_name, {"corpus": str(corpus), **options})
    except (jobs.JobError, RunError, ValueError) as e:   # classroom.Refused is a JobError
        st.error(str(e))
    else:
        if out is None:
            st.info(f"**{entry['run']}** waits in the class's queue; the Train page shows your place.")
            st.stop()
        # rerun the whole app: the sidebar's status line starts polling and the picker follows the run
        follow_started_run(out.name, f"Started **{out.name}**. Its progress shows in the sidebar; the check "
                                     "below uses its latest checkpoint, and is final when it finishes.")
flash_message()

st.subheader("Check a trained model")
if not existing:
    st.info(f"No model trained on this task yet. Press **Train the {name} model** above.")
    st.stop()
pick = st.selectbox("Run", [r.name for r in existing])
info = next(r for r in existing if r.name == pick)
state = jobs.job_state(info.path)
if state.live:
    st.info(f"**{pick}** is {state.state} (step {state.step}/{state.max_iters}); the check below uses its "
            "latest checkpoint.")
try:
    run = cached_run(info.path)
except RunError as e:
    st.warning(str(e))
    st.stop()
if task_of_run(run) is None:
    st.warning("This run was not trained on a guided-experiment corpus.")
    st.stop()
result = check(run.model, run.tokenizer, task)
(st.success if result.passed else st.warning)(result.verdict)
left, right = st.columns(2)
with left:
    st.plotly_chart(head_grid(result.pointer, "Pointer score: attention on the letter to output"), key="exp_ptr")
with right:
    layer, head, _ = result.best_pointer
    probe = build_probe(task, run.tokenizer, run.config.block_size, n_lines=6, seed=7)
    ids = probe.ids[0].tolist()
    pattern = attention_patterns(run.model, probe.ids[:1])[0, layer, head]
    st.plotly_chart(attention_heatmap(pattern, [token_text(run.tokenizer, i) for i in ids],
                                  f"L{layer}H{head} on fresh lines"), key="exp_map")
    st.caption("Rows after each bar should light up the source letter that comes next in the answer.")
