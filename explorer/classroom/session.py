"""Who sits at this browser tab, in classroom mode: the sidebar's name and teacher boxes, and the Actor every page
passes to explorer/classroom/policy.py. Outside classroom mode everyone is the teacher: the app behaves as it always did.

A learner chooses a name once; the server gives them a secret key, kept in the session and in the tab's URL
(`?learner=...`, no cookie), so a reload or a bookmark brings the same learner back. The teacher types the token
printed at launch into a password box; it lives only in the session (never in a URL) and is lost on reload.
"""
from __future__ import annotations

from dataclasses import replace

import streamlit as st

from explorer.classroom import policy as classroom
from explorer.classroom import queue as class_queue
from explorer.classroom.policy import NOBODY, TEACHER, Actor, Refused
from explorer.jobs import training as jobs
from gpt.runs import checkpoints_root

KEY_PARAM = "learner"            # the learner's key in the URL
_KEY = "_classroom_learner_key"  # ... and in the session
_TEACHER = "_classroom_teacher"


def active() -> bool:
    return classroom.enabled()


def settings() -> classroom.Settings:
    return classroom.load_settings()


def actor() -> Actor:
    """Who is acting in this session: the teacher (always, outside classroom mode), a named learner, or NOBODY."""
    if not active() or st.session_state.get(_TEACHER):
        return TEACHER
    key = st.session_state.get(_KEY) or st.query_params.get(KEY_PARAM)
    learner = classroom.learner_for_key(key)
    if learner is None:
        return NOBODY
    st.session_state[_KEY] = key
    return learner


def visible(infos: list) -> list:
    """The runs this session may see (all of them outside classroom mode)."""
    return classroom.visible_runs(actor(), infos, settings()) if active() else infos


def refuse(error: Exception) -> None:
    """Show a refusal (classroom.Refused, jobs.JobError): what was asked, why not, what to do instead."""
    st.error(str(error), icon=":material/block:")


@st.cache_resource
def _resume_queue_once() -> bool:
    """Once per server process: a queue left by the previous server (a restart) gets its runner back."""
    if class_queue.waiting():
        class_queue.ensure_runner()
    return True


def _join(name: str) -> None:
    try:
        key, learner = classroom.register_learner(name)
    except Refused as e:
        st.session_state["_classroom_join_error"] = str(e)
        return
    st.session_state[_KEY] = key
    st.session_state.pop("_classroom_join_error", None)


def _teacher_sign_in() -> None:
    typed = st.session_state.get("classroom_teacher_token", "")
    st.session_state["classroom_teacher_token"] = ""       # never kept in a widget
    if classroom.is_teacher_token(settings(), typed):
        st.session_state[_TEACHER] = True
        st.session_state.pop("_classroom_teacher_error", None)
    else:
        st.session_state["_classroom_teacher_error"] = "That is not the token printed when the class was started."


def _set_sharing() -> None:
    # checked again: only a teacher's session draws the toggle; .get, as a callback may run at the start of a
    # rerun another request asked for (a quick click)
    share = st.session_state.get("classroom_share")
    if st.session_state.get(_TEACHER) and isinstance(share, bool):
        classroom.save_settings(replace(settings(), share_runs=share))


def sidebar() -> None:
    """The classroom box at the top of the sidebar: the learner's name (or the box to choose one), the teacher's
    sign-in. Draws nothing outside classroom mode."""
    if not active():
        return
    _resume_queue_once()
    me = actor()
    with st.sidebar.container(border=True):
        if me.teacher:
            st.markdown(":material/school: **Teacher**")
            st.toggle("Learners see each other's runs", value=settings().share_runs, key="classroom_share",
                      on_change=_set_sharing, help="Read-only: a learner still changes only their own runs.")
            if st.button("Sign out", key="classroom_sign_out"):
                st.session_state.pop(_TEACHER, None)
                st.rerun()
            return
        if me.learner_id:
            st.markdown(f":material/person: **{me.name}**")
            st.caption("Your runs are kept under this name. This tab's link carries your key: bookmark it to "
                       "come back, and do not share it.")
            st.query_params[KEY_PARAM] = st.session_state[_KEY]
        else:
            st.markdown("**Join the class**")
            name = st.text_input("Your name", key="classroom_name", max_chars=32,
                                 help="Chosen once; your runs are listed under it.")
            if st.button("Join", key="classroom_join", disabled=not name.strip()):
                _join(name)
                st.rerun()
            error = st.session_state.get("_classroom_join_error")
            if error:
                st.error(error)
            st.caption("Until you join you can look at every page; training needs a name.")
        with st.expander("Teacher"):
            st.text_input("Teacher token", type="password", key="classroom_teacher_token",
                          on_change=_teacher_sign_in, help="Printed in the terminal that started the class.")
            error = st.session_state.get("_classroom_teacher_error")
            if error:
                st.error(error)


def teacher_jobs(n_waiting: int) -> None:
    """The teacher's view of every training job in the class, each with its owner and a Stop button."""
    live = jobs.live_jobs()
    if not live and not n_waiting:
        return
    names = classroom.learner_names()
    with st.expander(f"The class's training: {len(live)} job(s) running, {n_waiting} waiting (at most "
                     f"{jobs.max_concurrent_jobs()} at a time)", expanded=True):
        for name, state in live:
            owner = classroom.owner_of(checkpoints_root() / name)
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            c1.markdown(f"**{name}** ({names.get(owner, 'a learner') if owner else 'teacher'}) · {state.state} · "
                        f"step {state.step:,}/{state.max_iters:,}" + (" · stopping" if state.stopping else ""))
            if c2.button("Stop", key=f"classroom_stop_{name}", disabled=state.stopping):
                classroom.stop_job(actor(), checkpoints_root() / name)
                st.rerun()


def visible_jobs(found: list) -> list:
    """(run name, state) pairs of jobs this session may see: a private run's name is not shown to classmates."""
    if not active():
        return found
    root = checkpoints_root()
    return [(name, state) for name, state in found if may_see(root / name)]


def may_see(run_dir) -> bool:
    """May this session see the run folder (a live job's, which may have no config yet)?"""
    return not active() or classroom.may_see(actor(), classroom.owner_of(run_dir), settings())


def queue_panel() -> None:
    """The Train page's queue box: this learner's waiting request (place, expected start, Cancel) and any request
    that could not start; the teacher sees the whole queue and may cancel any of it."""
    if not active():
        return
    me = actor()
    entries = class_queue.read_queue()
    standing = {entry["id"]: (place, start_s) for entry, place, start_s in class_queue.standing()}
    shown = [e for e in entries if me.teacher or (me.learner_id and e.get("learner") == me.learner_id)]
    if me.teacher:
        teacher_jobs(len(standing))
    for entry in shown:
        who = "" if not me.teacher else f" ({entry.get('name') or 'teacher'})"
        with st.container(border=True):
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            if entry.get("error"):
                c1.error(f"**{entry['run']}**{who} could not start: {entry['error']}. Fix the form below and start "
                         "again.")
                label = "Dismiss"
            else:
                place, start_s = standing.get(entry["id"], (None, None))
                c1.info(f"**{entry['run']}**{who} is {class_queue.describe(place, start_s)}. It starts by itself; "
                        "you can leave this page.", icon=":material/hourglass_top:")
                label = "Cancel"
            if c2.button(label, key=f"classroom_cancel_{entry['id']}"):
                try:
                    class_queue.cancel(me, entry["id"])
                except Refused as e:
                    refuse(e)
                else:
                    st.rerun()
    if any(not e.get("error") for e in shown):
        _poll_queue()


@st.fragment(run_every=2.0)
def _poll_queue() -> None:
    """While this learner waits: rerun the page when the queue moves (their run started or they moved up)."""
    now = [(e["id"], place) for e, place, _ in class_queue.standing()]
    if st.session_state.get("_classroom_queue_seen", now) != now:
        st.session_state["_classroom_queue_seen"] = now
        st.rerun(scope="app")
    st.session_state["_classroom_queue_seen"] = now
