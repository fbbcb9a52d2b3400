"""Classroom mode in the app (AppTest): a learner joins by name, sees the teacher's runs and their own, and a
request to stop, resume or delete what is not theirs is refused on the page with a message, changing nothing;
the teacher signs in with the launch token and may stop and delete anything."""
from __future__ import annotations

import shutil

import pytest
from conftest import open_page
from run_support import fake_trainer_process
from streamlit.testing.v1 import AppTest

from explorer.classroom import policy as classroom
from explorer.classroom import session as class_session
from explorer.classroom.policy import Settings
from explorer.jobs import training as jobs
from gpt import runs

TOKEN = "teacher-s3cret"


@pytest.fixture
def class_root(root, tiny_run, monkeypatch):
    """A class: the teacher's tiny run, one run of Ada's and one of Bob's (both learners registered)."""
    monkeypatch.setenv(classroom.ENV, "1")
    classroom.save_settings(Settings(teacher_token_sha256=classroom.token_digest(TOKEN)), root)
    keys = {}
    for name in ("Ada", "Bob"):
        key, learner = classroom.register_learner(name, root)
        keys[name] = key
        shutil.copytree(tiny_run, root / f"{name.lower()}-run")
        runs.atomic_write_json(root / f"{name.lower()}-run" / classroom.OWNER, classroom.owner_record(learner))
    return root, keys


@pytest.fixture
def live_teacher_run(class_root):
    """The teacher's run 'tiny' shown as training: its status names a live process that looks like a trainer."""
    runs_root, _ = class_root
    proc = fake_trainer_process()
    runs.write_status(runs_root / "tiny", state="running", pid=proc.pid, step=30, max_iters=60, eta_s=20)
    yield runs_root / "tiny"
    proc.kill()
    proc.wait()


def app_as(page: str | None = None, key: str | None = None) -> AppTest:
    """The app on `page` for the learner whose key is in the URL (no key: someone who has not joined yet)."""
    return open_page(page, **({class_session.KEY_PARAM: key} if key else {}))


def picker(at) -> set[str]:
    """The run names the sidebar's model picker offers (its options are labels: 'name · arch ...')."""
    return {label.split(" · ")[0] for label in at.sidebar.selectbox(key="selected_run").options}


def button(at, label):
    found = [b for b in at.button if b.label == label]
    assert found, [b.label for b in at.button]
    return found[0]


def errors(at) -> str:
    return " ".join(e.value for e in at.error)


@pytest.mark.slow
def test_a_learner_joins_once_and_sees_the_teachers_runs_and_their_own(class_root):
    runs_root, _ = class_root
    at = app_as()
    assert picker(at) == {"tiny"}   # no name yet: the teacher's runs
    at.sidebar.text_input(key="classroom_name").input("Ada").run()
    button(at, "Join").click().run()
    assert "already called 'Ada'" in errors(at)                   # taken (case ignored), nothing registered
    at.sidebar.text_input(key="classroom_name").input("Cy").run()
    button(at, "Join").click().run()
    assert not at.exception and "Cy" in classroom.learner_names(runs_root).values()
    key = at.query_params[class_session.KEY_PARAM]                 # the reload link carries the key
    assert classroom.learner_for_key(key, runs_root).name == "Cy"
    assert picker(at) == {"tiny"}   # Ada's and Bob's are private
    at = app_as(key=key)                                           # a reload: still Cy
    assert any("Cy" in m.value for m in at.sidebar.markdown)


@pytest.mark.slow
def test_runs_page_lists_only_your_runs_for_deleting_and_hides_others(class_root):
    runs_root, keys = class_root
    at = app_as("runs", keys["Ada"])
    table = at.dataframe[0].value
    assert set(table["run"]) == {"tiny", "ada-run"}                # Bob's run is not shared
    assert dict(zip(table["run"], table["owner"])) == {"tiny": "teacher", "ada-run": "you"}
    assert next(s for s in at.selectbox if s.label == "Run to delete").options == ["ada-run"]
    classroom.save_settings(Settings(share_runs=True, teacher_token_sha256=classroom.token_digest(TOKEN)), runs_root)
    at = app_as("runs", keys["Ada"])
    assert set(at.dataframe[0].value["run"]) == {"tiny", "ada-run", "bob-run"}   # shared: seen ...
    assert next(s for s in at.selectbox if s.label == "Run to delete").options == ["ada-run"]   # ... not deletable
    victim = next(s for s in at.selectbox if s.label == "Run to delete").set_value("ada-run").run()
    victim.checkbox[0].check().run()
    button(at, "Delete").click().run()
    assert not (runs_root / "ada-run").exists() and (runs_root / "bob-run").exists()


@pytest.mark.slow
def test_stopping_the_teachers_job_is_refused_on_the_train_page(class_root, live_teacher_run):
    _, keys = class_root
    at = app_as("train", keys["Ada"])
    assert "Run: tiny" in [s.value for s in at.subheader]          # she watches the teacher's live run ...
    button(at, "Stop").click().run()
    assert "You cannot stop tiny: it is the teacher's run" in errors(at)   # ... and cannot stop it
    assert not (live_teacher_run / runs.STOP_REQUEST).exists()
    assert jobs.job_state(live_teacher_run).state == "running"


@pytest.mark.slow
def test_resuming_another_learners_run_is_refused(class_root):
    runs_root, keys = class_root
    bobs = runs_root / "bob-run"
    (bobs / runs.RESUME).write_bytes(b"not a real checkpoint")
    runs.write_status(bobs, state="stopped", pid=None)
    classroom.save_settings(Settings(share_runs=True, teacher_token_sha256=classroom.token_digest(TOKEN)), runs_root)
    at = app_as(key=keys["Ada"])
    at.sidebar.selectbox(key="selected_run").set_value("bob-run").run()
    at.switch_page("views/train.py").run()
    assert "Run: bob-run" in [s.value for s in at.subheader]
    button(at, "Resume").click().run()
    assert "You cannot resume bob-run: it is Bob's run" in errors(at)
    assert runs.read_status(bobs)["state"] == "stopped"


@pytest.mark.slow
def test_the_teacher_signs_in_with_the_token_and_may_stop_and_delete(class_root, live_teacher_run):
    runs_root, _ = class_root
    at = app_as("runs")
    at.sidebar.text_input(key="classroom_teacher_token").input("guess").run()
    assert "not the token" in errors(at)
    assert not any(m.value.endswith("**Teacher**") for m in at.sidebar.markdown)
    at.sidebar.text_input(key="classroom_teacher_token").input(TOKEN).run()
    assert any(m.value.endswith("**Teacher**") for m in at.sidebar.markdown)
    assert TOKEN not in str(dict(at.query_params))                # never in the URL
    table = at.dataframe[0].value
    assert set(table["run"]) == {"tiny", "ada-run", "bob-run"}     # the teacher sees every run
    next(s for s in at.selectbox if s.label == "Run to delete").set_value("bob-run").run()
    at.checkbox[0].check().run()
    button(at, "Delete").click().run()
    assert not (runs_root / "bob-run").exists()
    at.switch_page("views/train.py").run()
    button(at, "Stop").click().run()
    assert (live_teacher_run / runs.STOP_REQUEST).exists()


@pytest.mark.slow
def test_train_form_applies_the_caps_and_queues_a_learners_run(class_root, live_teacher_run):
    runs_root, keys = class_root
    classroom.save_settings(Settings(max_steps=300, teacher_token_sha256=classroom.token_digest(TOKEN)), runs_root)
    at = app_as("train", keys["Ada"])
    at.number_input(key="tf_max_iters").set_value(400).run()
    assert "the teacher allows at most 300 training steps" in errors(at)
    assert button(at, "Start training").disabled
    at.number_input(key="tf_max_iters").set_value(300).run()
    assert not button(at, "Start training").disabled            # the slot is busy, but a class queues
    assert button(at, "Train the ladder").disabled               # ladders are the teacher's
    at.text_input(key="tf_name").set_value("ada-2").run()
    button(at, "Start training").click().run()
    assert not at.exception and not at.error, errors(at)
    assert any("**ada-2** is 1st in the queue, expected to start in about" in i.value for i in at.info)
    assert not (runs_root / "ada-2").exists()                    # waiting, not started
    at.text_input(key="tf_name").set_value("ada-3").run()
    button(at, "Start training").click().run()
    assert "One job per learner" in errors(at)
    button(at, "Cancel").click().run()
    from explorer.classroom import queue as class_queue
    assert class_queue.read_queue(runs_root) == []


@pytest.mark.slow
def test_training_dictionaries_into_the_teachers_run_is_refused(class_root):
    runs_root, keys = class_root
    at = app_as("features", keys["Ada"])                         # the picker's default: the teacher's run
    assert picker(at) == {"tiny", "ada-run"}
    at.button(key="FormSubmitter:train_features-Start training").click().run()
    assert "You cannot train dictionaries into tiny: it is the teacher's run" in errors(at)
    assert not (runs_root / "tiny" / "features").exists()
