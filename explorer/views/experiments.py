"""Guided experiments: train a tiny model on a synthetic task and check which circuit it grew."""
import shlex

import streamlit as st

from explorer import jobs
from explorer.cache import cached_run
from explorer.common import all_runs, flash_message, follow_started_run, token_label
from explorer.figures.attention import attention_heatmap, head_grid
from gpt.interp.capture import attention_patterns
from gpt.interp.experiments import TASKS, build_probe, check, task_of_run, train_command, write_corpus
from gpt.runs import RunError

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
if st.button(f"Train the {name} model", type="primary"):
    try:
        out = jobs.start_job(run_name, {"corpus": str(corpus), **options})
    except (jobs.JobError, RunError, ValueError) as e:
        st.error(str(e))
    else:  # rerun the whole app: the sidebar's status line starts polling and the picker follows the run
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
    st.plotly_chart(attention_heatmap(pattern, [token_label(run.tokenizer, i) for i in ids],
                                  f"L{layer}H{head} on fresh lines"), key="exp_map")
    st.caption("Rows after each bar should light up the source letter that comes next in the answer.")
