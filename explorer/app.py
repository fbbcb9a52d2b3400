"""GPT Explorer entry point: `streamlit run explorer/app.py` (or ./scripts/app).

Builds the navigation, the sidebar model picker and the live training-status line shown on every page.
One file per page lives in explorer/views/ (listed below, in the order of the sidebar).
"""
from pathlib import Path

# Imported whole before any page runs: plotly looks pandas up in sys.modules, and while one session's first page
# was still importing it another session's figures found it half-initialised ("partially initialized module
# 'pandas' has no attribute 'Series"); the import lock makes a second session wait here instead. The same for the
# other libraries the figures and tables load lazily and look each other up in sys.modules (narwhals asks for
# pyarrow and pandas there; streamlit imports plotly on a chart's first call). Altair is not used: the Attention
# page writes its Vega-Lite specs as dicts (explorer/figures/attention_views.py).
import pandas  # noqa: F401
import plotly.graph_objects  # noqa: F401
import pyarrow  # noqa: F401
import streamlit as st

from explorer.classroom import session as class_session
from explorer.jobs import training as jobs
from explorer.ui.cache import shared_live_jobs
from explorer.ui.eval_text import picker as eval_text_picker
from explorer.ui.run_picker import (
    RUN_KEY,
    all_runs,
    apply_pending_selection,
    broken_runs,
    clear_pending_selection,
    default_run_name,
    limit_threads,
    pending_selection,
    run_label,
)
from gpt.runs import CONFIG, checkpoints_root

VIEWS = Path(__file__).resolve().parent / "views"
# The order a token travels: text -> tokens -> embeddings -> attention -> MLP -> output -> generation; then
# training and runs; then the deeper tools. (file stem, title a learner understands, icon)
PIPELINE = [("inside", "Inside a prediction", ":material/account_tree:"), ("tokenizer", "Tokenizer", ":material/abc:"),
            ("embeddings", "Embeddings", ":material/scatter_plot:"), ("attention", "Attention", ":material/grid_on:"),
            ("mlp", "MLP neurons", ":material/hub:"), ("generate", "Generate", ":material/edit_note:")]
TRAINING = [("train", "Train", ":material/model_training:"), ("runs", "Runs", ":material/folder_open:"),
            ("lab", "Training lab", ":material/experiment:"), ("share", "Import & export", ":material/ios_share:")]
LOOK_DEEPER = [("heads", "Heads & detectors", ":material/psychology:"),
               ("logit_lens", "Logit lens", ":material/layers:"),
               ("why_token", "Why this token", ":material/help:"),
               ("features", "Features", ":material/category:"),
               ("circuit", "Circuit", ":material/schema:"),
               ("patching", "Patching", ":material/swap_horiz:"),
               ("steering", "Steering", ":material/tune:"),
               ("ablation", "Ablation", ":material/content_cut:"),
               ("token_loss", "Per-token loss", ":material/text_fields:"),
               ("time_machine", "Time machine", ":material/history:"),
               ("experiments", "Guided experiments", ":material/science:"),
               ("run_diff", "Run diff", ":material/compare:")]
LANDING = "inside"  # the app opens on the whole forward pass of one prediction


def pages(spec):
    return [st.Page(str(VIEWS / f"{stem}.py"), title=title, icon=icon, url_path=stem, default=stem == LANDING)
            for stem, title, icon in spec]


def model_picker() -> None:
    runs = all_runs()
    broken = broken_runs()
    if broken:  # a failed or half-made run cannot be picked, but must not vanish: say so, point to Runs
        names = ", ".join(b.name for b in broken[:3]) + (" ..." if len(broken) > 3 else "")
        st.sidebar.caption(f":material/report: {len(broken)} run(s) could not be opened ({names}); see why and "
                           "delete them on **Runs**.")
    if not runs:
        st.sidebar.info("No models yet: train one on the Train page.")
        return
    names = [r.name for r in runs]
    apply_pending_selection(names)
    if st.session_state.get(RUN_KEY) not in names:  # a new session: the link's run, else the default one
        linked = st.query_params.get("run")
        st.session_state[RUN_KEY] = linked if linked in names else default_run_name(runs)
    by_name = {r.name: r for r in runs}
    st.sidebar.selectbox("Model", names, key=RUN_KEY, format_func=lambda n: run_label(by_name[n]),
                         help="Run folders under checkpoints/, most recently active first. A run still "
                              "training is shown at its latest checkpoint.")
    st.query_params["run"] = st.session_state[RUN_KEY]  # a reload or a copied link opens the same model
    info = by_name[st.session_state[RUN_KEY]]
    val = f", best val {info.best_val:.3f}" if info.best_val is not None else ""
    st.sidebar.caption(f"{info.arch} · {info.params:,} parameters · step {info.step:,}/{info.max_iters:,}{val}")


# Every open tab polls the sidebar status; one shared scan per second serves them all (the soak test measured
# ~0.1 core per idle tab when each tab scanned the run folders itself every second).
STATUS_REFRESH_S = 2.0


def job_line(name: str, state: jobs.JobState) -> None:
    """One job's line: a progress bar with the ETA while it trains, else its state in words."""
    loss = f" · loss {state.loss:.3f}" if isinstance(state.loss, (int, float)) else ""
    if state.stopping:
        st.caption(f"**{name}** · stopping at step {state.step:,}: saving a checkpoint...")
    elif state.state == "running" and state.max_iters:
        st.progress(min(1.0, state.step / state.max_iters),
                    text=f"**{name}** · step {state.step:,}/{state.max_iters:,}{loss} · "
                         f"ETA {jobs.format_eta(state.eta_s)}")
    else:
        st.caption(f"**{name}** · {state.state}")


def status_line() -> None:
    root = str(checkpoints_root())
    live = class_session.visible_jobs(jobs.live_jobs(root))  # fresh on a full rerun: a job started a moment ago must start the timer
    first_draw = [live]          # the full run's fresh answer; the timer's reruns read the shared scan
    following = pending_selection()

    @st.fragment(run_every=STATUS_REFRESH_S if live or following else None)
    def _status():
        # an empty shared answer may be up to 1 s stale: confirm it before declaring the job over
        now_live = first_draw.pop() if first_draw else class_session.visible_jobs(shared_live_jobs(root) or
                                                                                  jobs.live_jobs(root))
        wanted = pending_selection()
        if wanted and (checkpoints_root() / wanted / CONFIG).is_file():
            st.rerun(scope="app")   # the run just started is now a model folder: the picker moves to it
        elif wanted and wanted not in {name for name, _ in now_live}:
            clear_pending_selection()  # it failed before writing its config: Runs lists it with the error
        if not now_live:
            if live:   # a job just ended: rerun everything so the picker and the timer update
                st.rerun(scope="app")
            for name, state in class_session.visible_jobs(jobs.recently_ended(root))[:2]:  # say "stopped", not only that nothing runs
                st.caption(f"**{name}** · {state.state} at step {state.step:,}")
            st.caption("No training running.")
            return
        for name, state in now_live:
            job_line(name, state)

    with st.sidebar:
        st.markdown("**Training**")
        _status()


st.set_page_config(page_title="GPT Explorer", page_icon="🧠", layout="wide")
limit_threads()
sections = {"How a prediction is made": pages(PIPELINE), "Train and compare": pages(TRAINING),
            "Look deeper": pages(LOOK_DEEPER)}
navigation = st.navigation(sections, expanded=True)
class_session.sidebar()   # classroom mode only: the learner's name, the teacher's sign-in
model_picker()
eval_text_picker()
status_line()
navigation.run()
