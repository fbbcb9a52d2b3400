"""The Train page's live view of a run: its loss curves, progress, schedule and samples while it trains, the ladder's
table, and which run this tab watches. The Train page (explorer/views/train.py) draws it under its form."""
import re
import time

import streamlit as st

from explorer.classroom import policy as classroom
from explorer.classroom import session as class_session
from explorer.figures.lab import probe_curves
from explorer.figures.training import loss_curves, metric_curve
from explorer.jobs import training as jobs
from explorer.jobs.train_form import (
    ARCH_LABELS,
    LADDER_NOTE,
)
from explorer.ui.run_picker import select_run, selected_run_info
from gpt import runs
from gpt.config import ARCHS
from gpt.runs import checkpoints_root

SCHEDULE_CAPTIONS = {"cosine": "Linear warmup, then cosine decay to the minimum learning rate.",
                     "wsd": "Warmup, stable at the peak, then a linear cooldown to the minimum (warmup-stable-decay)."}
WATCH_KEY = "train_watch"   # the run this tab is watching (lost on reload: then any live job is watched)
LADDER_RE = re.compile(r"^(ladder-\d{4}-\d{6})-(bigram|single_head|multi_head|gpt)$")


def watched_run():
    """The run folder this page follows: the one started here, else a live job, else the sidebar choice."""
    root = checkpoints_root()
    name = st.session_state.get(WATCH_KEY)
    if name and (root / name).is_dir():
        return root / name
    live = [name for name, _ in jobs.live_jobs() if class_session.may_see(root / name)]
    if live:
        return root / live[0]
    info = selected_run_info()
    return info.path if info else None


def ladder_siblings(run_dir) -> dict:
    m = LADDER_RE.match(run_dir.name)
    if not m:
        return {run_dir.name: jobs.read_metrics(run_dir)}
    prefix = m.group(1)
    return {arch: jobs.read_metrics(run_dir.parent / f"{prefix}-{arch}") for arch in ARCHS
            if (run_dir.parent / f"{prefix}-{arch}").is_dir()}


def ladder_table(run_dir) -> None:
    """The seed's table: each rung's curve beside its latest sample and validation loss, in ladder order."""
    st.markdown("**The ladder, rung by rung** (each rung's sample is written at each evaluation)")
    st.caption(LADDER_NOTE)
    prefix = LADDER_RE.match(run_dir.name).group(1)
    for arch in ARCHS:
        rung = run_dir.parent / f"{prefix}-{arch}"
        if not rung.is_dir():
            continue
        metrics = jobs.read_metrics(rung)
        vals = [r["val_loss"] for r in metrics if "val_loss" in r]
        left, right = st.columns([2, 3])
        figure = loss_curves({arch: metrics}, ARCH_LABELS[arch])
        figure.update_layout(height=220, margin=dict(t=30, b=10))
        left.plotly_chart(figure, key=f"ladder_{arch}")
        sample = jobs.latest_sample(rung)
        state = jobs.job_state(rung).state
        right.markdown(f"**{ARCH_LABELS[arch]}** · " + (f"validation loss **{vals[-1]:.3f}**" if vals else state)
                       + (f" · {state}" if vals and state != "finished" else ""))
        if sample:
            right.code(sample.get("text", ""), language=None, wrap_lines=True)
            right.caption(f"Sample at step {sample.get('step', '?'):,}")
        else:
            right.caption("Its sample appears at its first evaluation.")


def run_schedule(run_dir) -> str | None:
    try:
        return runs.read_config(run_dir)["train"].schedule
    except runs.RunError:
        return None


def live_view(run_dir) -> None:
    state = jobs.job_state(run_dir)
    st.subheader(f"Run: {run_dir.name}")
    b1, b2, b3, _ = st.columns([1, 1, 1, 3])
    if b1.button("Stop", icon=":material/stop:", disabled=not state.live,
                 help="Checkpoint and stop; Resume continues exactly from there."):
        try:
            classroom.stop_job(class_session.actor(), run_dir)   # classroom mode: one's own runs only
        except classroom.Refused as e:
            class_session.refuse(e)
        else:
            st.session_state[WATCH_KEY] = run_dir.name  # keep following this run, not the shipped model
            st.toast("Stopping: the trainer saves a checkpoint first.")
            time.sleep(0.3)
            st.rerun()
    can_resume = not state.live and state.state in ("stopped", "orphaned", "failed") and \
        (run_dir / "resume.safetensors").exists()
    if b2.button("Resume", icon=":material/play_arrow:", disabled=not can_resume,
                 help="Continue a stopped run from its last checkpoint."):
        try:
            if class_session.active():
                classroom.resume_job(class_session.actor(), run_dir, class_session.settings())
            else:
                jobs.resume_job(run_dir)
        except jobs.JobError as e:   # classroom.Refused is one
            st.error(str(e))
        else:
            st.session_state[WATCH_KEY] = run_dir.name
            select_run(run_dir.name)  # the sidebar follows the resumed run too
            st.rerun()
    if b3.button("Open in sidebar", icon=":material/visibility:",
                 help="Inspect this run on the other pages (at its latest checkpoint while training)."):
        select_run(run_dir.name)
        st.rerun()

    @st.fragment(run_every=1.0 if state.live else None)
    def progress():
        now = jobs.job_state(run_dir)
        if state.live and not now.live:
            st.rerun(scope="app")  # finished or stopped: redraw buttons, stop the timer
        if now.state == "failed":
            st.error(f"Training failed: {now.error}")
            with st.expander("train.log"):
                st.code(jobs.log_tail(run_dir, 4000) or "(empty)", language=None)
        elif now.state == "orphaned":
            st.warning(now.error)
        metrics = jobs.read_metrics(run_dir)
        total = now.max_iters or max((r.get("step", 0) for r in metrics), default=0) or 1
        step = max([now.step] + [r.get("step", 0) for r in metrics])
        label = {"running": f"step {step:,} of {total:,} · ETA {jobs.format_eta(now.eta_s)}",
                 "starting": "starting (reading the corpus, building the tokenizer)...",
                 "queued": "queued: waits for the rung before it"}.get(now.state, f"{now.state} at step {step:,}")
        st.progress(min(1.0, step / total), text=label)
        curves = ladder_siblings(run_dir)
        points = sum(1 for rows in curves.values() for r in rows if "train_loss" in r or "val_loss" in r)
        smoothing = st.slider("Smoothing of the training loss", 0.0, 0.99, 0.6, 0.01, key="train_smoothing",
                              help="An exponential moving average, as TensorBoard's (0 = the raw per-batch loss)")
        st.plotly_chart(loss_curves(curves, "Loss (ladder: same budget, one curve pair per architecture)"
                                    if len(curves) > 1 else "Loss", smoothing=smoothing), key="train_loss_chart")
        st.caption(f"Solid: training loss on each batch, smoothed by the slider; dashed dots: validation loss on "
                   f"held-out text ({points} points). Both fall as the model learns; a gap opening up means "
                   "overfitting.")
        c1, c2 = st.columns(2)
        with c1:
            st.plotly_chart(metric_curve(metrics, "lr", "Learning rate", "lr"), key="train_lr_chart")
            st.caption(SCHEDULE_CAPTIONS.get(run_schedule(run_dir), ""))
        with c2:
            st.plotly_chart(metric_curve(metrics, "tokens_per_s", "Training speed", "tokens / s"),
                            key="train_tps_chart")
            st.caption("Tokens processed per second (it dips during evaluations).")
        if any("icl_score" in r for r in metrics):  # logged at evaluations by models with attention
            st.plotly_chart(probe_curves(metrics), key="train_probe_chart")
            st.caption("ICL score: loss late in the context minus early (negative = the model uses its context). "
                       "Head scores: the strongest induction and previous-token heads on repeated held-out text; "
                       "an induction head appearing often comes with a bump in the loss (Olsson et al. 2022).")
        sample = jobs.latest_sample(run_dir)
        if len(curves) > 1:
            ladder_table(run_dir)  # each rung's sample beside its own curve
        elif sample:
            st.markdown(f"**Sample at step {sample.get('step', '?'):,}** (written at each evaluation)")
            st.code(sample.get("text", ""), language=None, wrap_lines=True)
        elif state.live:
            st.caption("A sample appears at the first evaluation.")
    progress()
