"""Runs: every run folder in a table, overlaid loss curves, and deleting with confirmation."""
import statistics

import pandas as pd
import streamlit as st

from explorer.classroom import policy as classroom
from explorer.classroom import session as class_session
from explorer.figures.training import loss_curves
from explorer.jobs import training as jobs
from explorer.ui.run_picker import SHIPPED_RUN, all_runs, broken_runs

st.title("Runs")
runs = all_runs()
broken = broken_runs()
if not runs and not broken:
    st.info("No runs yet. Train one on the **Train** page.")
    st.stop()


def row(info) -> dict:
    metrics = jobs.read_metrics(info.path)
    speeds = [r["tokens_per_s"] for r in metrics if isinstance(r.get("tokens_per_s"), (int, float))]
    elapsed = max((r.get("elapsed_s") or 0 for r in metrics), default=0)
    m, t = info.config["model"], info.config["train"]
    # key results first: on a narrow screen the shape columns, not the results, fall off the right edge
    return {"run": info.name, "best val": info.best_val,
            "tokens/s": statistics.median(speeds[-20:]) if speeds else None, "wall time": jobs.format_eta(elapsed),
            "state": info.state, "steps": info.step, "of": info.max_iters, "arch": info.arch, "params": info.params,
            "layers": m.n_layer, "heads": m.n_head, "width": m.n_embd, "block": m.block_size,
            "tokenizer": info.config.get("tokenizer"), "vocab": m.vocab_size, "lr": t.lr, "batch": t.batch_size,
            "corpus": str(info.config.get("corpus") or "").split("/")[-1]}


me = class_session.actor()
table = pd.DataFrame([row(r) for r in runs])
if class_session.active() and runs:   # whose each run is: yours, the teacher's, or (shared) a classmate's
    who = classroom.learner_names()
    table.insert(1, "owner", [("you" if (o := classroom.owner_of(r.path)) and o == me.learner_id else
                               who.get(o, "a learner") if o else "teacher") for r in runs])
if runs:
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "best val": st.column_config.NumberColumn(format="%.3f"),
        "tokens/s": st.column_config.NumberColumn(format="%.0f"),
        "params": st.column_config.NumberColumn(format="localized"),
        "lr": st.column_config.NumberColumn(format="%.0e")})
    st.caption("Every run under checkpoints/, most recently active first: the best validation loss it reached "
               "(lower is better), its median training speed and its training time, then how far it trained and "
               "its shape.")
if broken:
    st.subheader("Runs that failed or were left half-made")
    st.caption("These folders cannot be opened as models; here is why. Delete them below.")
    st.dataframe(pd.DataFrame([{"run": b.name, "what went wrong": b.error} for b in broken]), hide_index=True,
                 width="stretch")

names = [r.name for r in runs]
chosen = st.multiselect("Compare loss curves", names, default=names[:min(3, len(names))])
if chosen:
    by_name = {r.name: r for r in runs}
    smoothing = st.slider("Smoothing of the training loss", 0.0, 0.99, 0.6, 0.01, key="runs_smoothing",
                          help="An exponential moving average, as TensorBoard's: 0 shows every noisy batch.")
    st.plotly_chart(loss_curves({n: jobs.read_metrics(by_name[n].path) for n in chosen}, "Loss by run",
                                smoothing=smoothing), key="runs_loss")
    st.caption("One colour per run. Solid: training loss (one batch per step, smoothed by the slider); dashed with "
               "dots: validation loss on held-out text. Lower is better; val rising while train falls means "
               "overfitting.")

st.subheader("Delete a run")
# classroom mode: a learner's own runs only (the teacher: every run); the delete itself checks again
deletable = [r.name for r in classroom.own_runs(me, runs) if r.name != SHIPPED_RUN] + \
    [b.name for b in classroom.own_runs(me, broken)]
if not deletable:
    st.caption("You have no runs of your own to delete yet: runs you train are listed here."
               if class_session.active() and not me.teacher else
               "Only the shipped model is here; it is not deleted from the app.")
else:
    victim = st.selectbox("Run to delete", deletable, index=None, placeholder="choose a run", key="runs_delete")
    if victim:
        sure = st.checkbox(f"Yes, permanently delete **{victim}** and all its files")
        if st.button("Delete", type="primary", disabled=not sure, icon=":material/delete:"):
            try:
                classroom.delete_run(me, victim, protected=(SHIPPED_RUN,))
            except (jobs.JobError, ValueError) as e:   # classroom.Refused is a JobError
                st.error(str(e))
            else:
                st.toast(f"Deleted {victim}")
                st.rerun()


# ---- sweeps: final validation loss over seeds, and whether two settings really differ ----
def sweeps_section() -> None:
    from explorer.figures.lab import sweep_figure
    from explorer.jobs import sweeps as sweep_queue
    from gpt.lab.stats import describe_difference
    from gpt.lab.sweeps import SweepError, compare, list_sweeps, read_manifest, sweep_results
    paths = list_sweeps()
    if not paths:
        return
    st.subheader("Sweeps")
    path = paths[[p.stem for p in paths].index(st.selectbox("Sweep", [p.stem for p in paths], key="runs_sweep"))]
    try:
        manifest = read_manifest(path)
        counts = sweep_queue.sweep_state(path)
    except SweepError as e:
        st.warning(str(e))
        return
    params = list(manifest["params"])
    results = sweep_results(manifest)
    c1, c2 = st.columns([4, 1])
    c1.caption(f"{len(manifest['runs'])} runs · {counts['finished']} finished · {counts['live']} training · "
               f"{counts['pending']} queued" + (f" · {counts['other']} stopped or failed" if counts["other"] else ""))
    if c2.button("Stop the sweep", icon=":material/stop:", disabled=not (counts["live"] or counts["pending"]) or
                 not me.teacher, help=None if me.teacher else "Sweeps are the teacher's to stop."):
        sweep_queue.stop_sweep(path)
        st.toast(f"Stopped {path.stem}: queued runs will not start")
        st.rerun()
    x_param = st.radio("x axis", params, horizontal=True, key="runs_sweep_x") if len(params) > 1 else params[0]
    series = next((p for p in params if p != x_param), None)
    st.plotly_chart(sweep_figure(results, x_param, series), key="runs_sweep_fig")
    st.caption("Final validation loss of each finished run (the trainer's last evaluation): dots are single seeds, "
               "the line the mean over seeds with ±1 standard deviation.")
    ready = [r for r in results if len(r.losses) >= 2]
    if len(ready) < 2:
        st.caption("Comparing two settings needs at least two of them with 2+ finished seeds each.")
        return
    labels = [r.label for r in ready]
    a1, a2 = st.columns(2)
    first = a1.selectbox("Compare", labels, index=0, key="runs_sweep_a")
    second = a2.selectbox("with", labels, index=1, key="runs_sweep_b")
    if first == second:
        st.caption("Pick two different settings.")
        return
    a, b = ready[labels.index(first)], ready[labels.index(second)]
    try:
        result = compare(a, b)
    except SweepError as e:
        st.warning(str(e))
        return
    st.markdown(f"**{first}**: {a.mean:.4f} ± {a.std:.4f} ({len(a.losses)} seeds) · **{second}**: {b.mean:.4f} ± "
                f"{b.std:.4f} ({len(b.losses)} seeds)")
    st.info(describe_difference(result, first, second))


sweeps_section()
