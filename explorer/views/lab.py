"""Training lab: two famous training-dynamics results started with one click and watched live, each with an
automatic check against the paper. The computing lives in gpt/lab/ (run by `python -m gpt.lab`), the figures
in explorer/figures/lab.py; this page only starts, stops and displays."""
import streamlit as st

from explorer.classroom import policy as classroom
from explorer.classroom import session as class_session
from explorer.figures.lab import fourier_figure, grokking_curves, induction_lab_figure
from explorer.jobs import lab as lab_jobs
from explorer.jobs import training as jobs
from gpt.lab.induction_lab import MODELS, phase_change_step
from gpt.runs import read_status

REFRESH_S = 2.0

st.title("Training lab")
st.caption("Each experiment runs as a background job (like Train's runs): leave the page and it keeps going. "
           "The curves update live while it runs; an automatic check judges the result at the end.")


def picker(kind: str):
    """The lab folder to show: the newest of this kind, or one picked from the list."""
    folders = lab_jobs.lab_folders(kind)
    if not folders:
        return None
    names = [f.name for f in folders]
    chosen = st.selectbox("Show", names, key=f"lab_pick_{kind}", help="Earlier runs of this experiment, newest first.")
    return folders[names.index(chosen)]


def controls(kind: str, label: str, folder) -> None:
    busy = jobs.busy_message()
    me = class_session.actor()
    if class_session.active() and not me.teacher:   # a lab is two trainings at once: the teacher's to start
        busy = "In the class the teacher starts the lab's experiments; watch them here."
    c1, c2, _ = st.columns([2, 1, 3])
    if c1.button(label, type="primary", icon=":material/science:", disabled=bool(busy), key=f"lab_start_{kind}"):
        try:
            out = lab_jobs.start_lab(kind)
        except jobs.JobError as e:
            st.error(str(e))
        else:
            st.session_state[f"lab_pick_{kind}"] = out.name
            st.rerun()
    live = folder is not None and jobs.job_state(folder).live
    if c2.button("Stop", icon=":material/stop:", disabled=not live, key=f"lab_stop_{kind}"):
        try:
            classroom.stop_job(me, folder)   # classroom mode: the teacher's experiments are the teacher's to stop
        except classroom.Refused as e:
            class_session.refuse(e)
        else:
            st.toast("Stopping: the trainers save a checkpoint first.")
            st.rerun()
    if busy and not live:
        st.caption(busy)


def experiment(kind: str, label: str, draw) -> None:
    """The start/stop buttons, the folder picker and a live view: draw(folder, state) every REFRESH_S seconds
    while the experiment runs, once when it has ended."""
    folder = picker(kind)
    controls(kind, label, folder)
    if folder is None:
        return
    live = jobs.job_state(folder).live

    @st.fragment(run_every=REFRESH_S if live else None)
    def view():
        state = jobs.job_state(folder)
        if live and not state.live:
            st.rerun(scope="app")
        draw(folder, state)
    view()


def induction_tab() -> None:
    st.markdown(
        "**Induction heads form** (Olsson et al. 2022). A 2-layer and a 1-layer *attention-only* model train side by "
        "side on tiny Shakespeare in word pieces (BPE), every passage of a few lines said twice so that copying "
        "from the context pays. An **induction head** "
        "looks back for the previous occurrence of the current token and copies what came after it; it needs a "
        "previous-token head in an earlier layer, so only the 2-layer model can build one. Watch its induction "
        "score jump and the **ICL score** (loss late in the context minus early: negative = context helps) drop "
        "at the same step, the *phase change*. 3,000 steps per model, both at once: under 3 minutes on a quiet "
        "2-core machine.")
    st.caption("Scores are measured on repeated held-out text (16 validation passages, each followed by itself). "
               "The paper's random tokens are far from anything a small text model has read, and its heads score lower on "
               "them (figures in the README).")

    def draw(folder, state):
        rows = lab_jobs.induction_rows(folder)
        steps = {name: (rows[name][-1]["step"] if rows[name] else 0) for name in MODELS}
        st.caption(f"**{folder.name}** · {state.state} · steps " + ", ".join(f"{n}: {s}" for n, s in steps.items()))
        phases = {name: phase_change_step(r) for name, r in rows.items()}
        st.plotly_chart(induction_lab_figure(rows, phases), key="lab_induction_fig")
        st.caption("One point per evaluation, blue = 2-layer, orange = 1-layer. The dotted line marks the evaluation "
                   "where the induction score rose fastest (the phase change): watch the loss and the ICL score drop "
                   "at the same step. Grey dashes: the 0.5 the check asks of the 2-layer's best head.")
        result = lab_jobs.lab_result(folder)
        if result:
            (st.success if result["passed"] else st.error)(
                ("Auto-check passed" if result["passed"] else "Auto-check failed") + f" ({result['wall_s']:.0f} s).")
            for line in result["checks"]:
                st.markdown(f"- {line}")
        elif state.state == "failed":
            st.error(state.error or "the experiment failed; see train.log in its folder")
            st.code(jobs.log_tail(folder, 2000) or "(empty)", language=None)
        elif state.live:
            st.caption("The check runs when both models have finished.")
    experiment("induction", "Run the induction experiment", draw)


def grokking_tab() -> None:
    st.markdown(
        "**Grokking** (Nanda et al. 2023). A 1-layer transformer learns a + b mod 113 from 30% of the table. It "
        "first *memorises* the training pairs (train accuracy 100%, test near chance); weight decay then slowly "
        "replaces memorisation with an algorithm built on a few **Fourier frequencies**, and test accuracy jumps. "
        "The weight norm falls as memorisation is cleaned up; the embedding, written in the Fourier basis, "
        "concentrates on a handful of key frequencies. About 500 steps, ~30 s on a quiet 2-core machine (lr 1e-2 "
        "instead of the paper's 1e-3 so it happens in seconds, not hours: see gpt/lab/grokking.py).")

    def draw(folder, state):
        rows = [r for r in jobs.read_metrics(folder) if "test_acc" in r]
        first = {k: next((r["step"] for r in rows if r[f"{k}_acc"] >= 0.99), None) for k in ("train", "test")}
        last = rows[-1] if rows else {}
        st.caption(f"**{folder.name}** · {state.state} · step {last.get('step', 0):,}"
                   + (f" · train acc {last['train_acc']:.1%} · test acc {last['test_acc']:.1%}" if last else ""))
        st.plotly_chart(grokking_curves(rows, first["train"], first["test"]), key="lab_grok_curves")
        st.caption("Blue = the training pairs, orange = the held-out pairs; the dotted lines mark where each first "
                   "reaches 99% accuracy. Memorising comes first, generalising later, as the weight norm (green) "
                   "falls. The loss is on a log scale.")
        st.plotly_chart(fourier_figure(rows), key="lab_grok_fourier")
        st.caption("Left: the embedding's norm in each Fourier frequency (columns) at each evaluation (rows, time "
                   "going up); bright = large. Right: the latest evaluation, key frequencies in red. A random "
                   "embedding spreads over all frequencies; the algorithm concentrates it on a few.")
        result = read_status(folder).get("result")
        if result:
            (st.success if result["passed"] else st.error)(result["verdict"])
        elif state.state == "failed":
            st.error(state.error or "the experiment failed; see train.log in its folder")
        elif state.live:
            st.caption("The check runs when training stops (a few hundred steps after test accuracy reaches 99%).")
    experiment("grokking", "Run the grokking experiment", draw)


tab_ind, tab_grok = st.tabs(["Induction heads", "Grokking"])
with tab_ind:
    induction_tab()
with tab_grok:
    grokking_tab()
