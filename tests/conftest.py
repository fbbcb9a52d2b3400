"""Shared fixtures. Tests never touch the network: tiny Shakespeare ships inside the package (gpt/corpora).

Two tiers (README, "Tests"): `./scripts/test` runs everything; `./scripts/test --fast` leaves out the tests marked
`browser` or `slow` and must stay under 2 minutes on 2 cores. An unmarked test is in the fast tier, so:

    mark anything over 2 s (its own setup + call, measured with --durations=0) @pytest.mark.slow

Typical slow tests train through the CLI, start trainer processes, or drive a heavy AppTest page. A module
fixture that several fast tests share may cost more (the session's tiny_run is paid once per tier). Every run
lists unmarked tests that took longer than SLOW_S at the end, so a new slow test is seen, not silently kept.

App tests (streamlit.testing.v1.AppTest) use two things from here, nothing of their own:

    def test_something(root):                         # a private checkpoints root holding the tiny run as "tiny"
        at = open_page("attention", run="tiny", layer=1)  # explorer/app.py on views/attention.py, ?layer=1
        ...

`root` (or `empty_root`, the same without a run) points GPT_EXPLORER_CHECKPOINTS at a fresh folder, allows one
job, empties Streamlit's caches and stops any job the test started. A module that needs other runs builds its
own module-scoped root with `checkpoints_env` and marks itself `pytest.mark.usefixtures("fresh_caches")`.
Support modules (model_support, run_support, browser_support, gpt2_support) hold shared builders: a test module
never imports another test module. Commands run through `run_cli` run offline (tests/offline_guard).
"""
from __future__ import annotations

import contextlib
import os
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# One thread: on a shared 2-core machine two OpenMP threads stall at every barrier whenever another process is
# busy (the fast tier's compute tests ran 5x slower with 2 threads beside a 2-thread job), and the tests' tensors
# are too small for a second thread to pay on a quiet one.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """An empty private cache dir: tests neither read nor write the user's cache (nothing needs seeding)."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ["GPT_EXPLORER_CACHE"] = str(cache)
    # nor the user's Hugging Face cache: a gpt2 found there would change the Import page's defaults
    os.environ["HF_HUB_CACHE"] = str(tmp_path_factory.mktemp("hf-hub"))
    yield cache


def trainers_under(base: str) -> list[int]:
    """Pids of trainer processes (or ladder shells) whose command line names a path under base."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:  # ended meanwhile
                continue
            # base + "/": /tmp/pytest-7 must not match another session's /tmp/pytest-75 on a shared machine
            if b"gpt.train" in cmdline and (base.rstrip("/") + "/").encode() in cmdline:
                found.append(int(entry))
    return found


@pytest.fixture(scope="module", autouse=True)
def no_leaked_trainers(tmp_path_factory):
    """A test module must stop every trainer it started: a leaked one trains on for the rest of the suite and
    slows every later test (it happened: a ladder's trainer survived its Stop)."""
    yield
    if not os.path.isdir("/proc"):
        return
    base = str(tmp_path_factory.getbasetemp())
    deadline = time.monotonic() + 15  # a stop in flight: the trainer checkpoints, then exits
    while trainers_under(base) and time.monotonic() < deadline:
        time.sleep(0.2)
    leaked = trainers_under(base)
    for pid in leaked:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    if leaked:
        pytest.fail(f"this module left {len(leaked)} trainer process(es) running (killed now): {leaked}")


# ---- the fast tier's guard: name the unmarked tests that took longer than the rule allows ----
SLOW_S = 2.0
_unmarked_seconds: dict[str, float] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when in ("setup", "call") and not any(item.get_closest_marker(m) for m in ("slow", "browser")):
        _unmarked_seconds[item.nodeid] = _unmarked_seconds.get(item.nodeid, 0.0) + report.duration
    return report


def pytest_terminal_summary(terminalreporter):
    over = sorted(((s, node) for node, s in _unmarked_seconds.items() if s > SLOW_S), reverse=True)
    if over:
        terminalreporter.section(f"over {SLOW_S:g} s but not marked slow (mark them, or explain in a comment)")
        for seconds, node in over:
            terminalreporter.line(f"{seconds:6.1f} s  {node}")


# tiny Shakespeare's 65 characters: tests rely on its plain-ASCII vocabulary (e.g. '<' is unknown to it)
SHAKESPEARE_CHARS = frozenset("\n !$&',-.3:;?" + string.ascii_letters)


@pytest.fixture(scope="session")
def corpus_text() -> str:
    """Real English text for training tests: tiny Shakespeare, shipped with the package."""
    from gpt.data import tiny_shakespeare
    return tiny_shakespeare()


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, corpus_text) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(corpus_text[:200_000], encoding="utf-8")
    return path


@pytest.fixture
def fresh_caches():
    """Streamlit's caches emptied before and after the test, for app tests whose runs change between tests
    (use with `pytestmark = pytest.mark.usefixtures("fresh_caches")`)."""
    import streamlit as st
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()   # and after: the next module's tests never see this test's (deleted) runs
    st.cache_data.clear()


@contextlib.contextmanager
def checkpoints_env(root: Path):
    """GPT_EXPLORER_CHECKPOINTS=root (where the app and the library look for runs) inside the block, the old
    value after it. For module-scoped fixtures, which cannot use the function-scoped monkeypatch."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPT_EXPLORER_CHECKPOINTS", str(root))
        yield Path(root)


OFFLINE_GUARD = Path(__file__).resolve().parent / "offline_guard"   # its sitecustomize.py refuses the network


def run_cli(*args: str, timeout: float = 300, check: bool = True, env: dict | None = None, cwd: Path = ROOT,
            **kwargs) -> subprocess.CompletedProcess:
    """python <args> (in the repository, importing it), offline: the process cannot open a connection beyond
    loopback. env replaces the environment; its PYTHONPATH, if any, replaces the repository's."""
    path = (env or {}).get("PYTHONPATH") or str(ROOT)
    env = {**(os.environ if env is None else env), "PYTHONPATH": os.pathsep.join([path, str(OFFLINE_GUARD)])}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


TINY_TRAIN = ("--arch", "gpt", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
              "--batch-size", "8", "--eval-iters", "2", "--log-interval", "5", "--sample-tokens", "20",
              "--dtype", "float32", "--quiet")


@pytest.fixture(scope="session")
def shipped_app(tmp_path_factory) -> tuple[str, Path]:
    """(url, server log): the app served on a copy of the shipped run (its feature dictionaries, no cached scans),
    shared by the browser tests that only read and click: one server start and one model load for all of them.
    Each test opens its own browser (its own session); scans a page caches stay for the next test."""
    from browser_support import app_server, require_chromium, shipped_checkpoints
    require_chromium()
    tmp = tmp_path_factory.mktemp("shipped-app")
    with app_server(shipped_checkpoints(tmp), tmp / "server.log") as url:
        yield url, tmp / "server.log"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, corpus_file) -> Path:
    """A tiny char-level GPT trained by the CLI, shared by tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    run_cli("-m", "gpt.train", "--corpus", str(corpus_file), "--out", str(out), "--max-iters", "60",
            "--eval-interval", "20", *TINY_TRAIN)
    return out


# ---- app tests: one run folder fixture, one page opener ----
APP = str(ROOT / "explorer" / "app.py")
PAGE_TIMEOUT = 180  # seconds per script run: generous, the machine may be busy training


@pytest.fixture
def empty_root(tmp_path, monkeypatch, fresh_caches):
    """A private, empty checkpoints root (GPT_EXPLORER_CHECKPOINTS) allowing one job at a time; Streamlit's caches
    emptied before the test; every job started in it stopped after the test."""
    from explorer.jobs import training as jobs
    runs_root = tmp_path / "checkpoints"
    runs_root.mkdir()
    monkeypatch.setenv("GPT_EXPLORER_CHECKPOINTS", str(runs_root))
    monkeypatch.setenv("GPT_EXPLORER_MAX_JOBS", "1")
    yield runs_root
    for folder in runs_root.iterdir():   # never leave a trainer behind (stop_job is a no-op on a finished run)
        if folder.is_dir():
            jobs.stop_job(folder)
            jobs.wait_until_done(folder, timeout=60)


@pytest.fixture
def root(empty_root, tiny_run) -> Path:
    """empty_root holding a copy of the session's tiny trained run as 'tiny' (a test may change or delete it)."""
    import shutil
    shutil.copytree(tiny_run, empty_root / "tiny")
    return empty_root


def new_app(timeout: float = PAGE_TIMEOUT, **query):
    """The app, not yet run, with the URL's query parameters set (for a test that sets session state first)."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in query.items():
        at.query_params[key] = str(value)
    return at


def open_page(page: str | None = None, run: str | None = None, *, state: dict | None = None,
              timeout: float = PAGE_TIMEOUT, **query):
    """The app after a run on views/<page>.py (the landing page, Inside a prediction, if page is None): `run`
    selected in the sidebar, `state` put in session state and `query` in the URL before the first run, as a
    browser opening a link would. Fails on an exception (a traceback on the page), not on an st.error box."""
    at = new_app(timeout, **query)
    if run is not None:
        at.session_state["selected_run"] = run
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [(e.message, e.stack_trace) for e in at.exception]
    if page:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, (page, [(e.message, e.stack_trace) for e in at.exception])
    return at


def button(at, label: str):
    """The button labelled `label` on the page now shown."""
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; have {[b.label for b in at.button]}"
    return matches[0]


def figures(at) -> list[dict]:
    """The plotly figures on the page, as JSON."""
    import json
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart") if getattr(el, "proto", None) and el.proto.spec]


def text_of(at) -> str:
    """Every markdown, caption and message box on the page, one per line."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [s.value for s in at.success] + [w.value for w in at.warning] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


def tags(html_text: str) -> set[str]:
    """The HTML tag names in html_text (escaped text holds none)."""
    import re
    return set(re.findall(r"</?([A-Za-z]+)", html_text))


def placed(at, kind: str, name: str):
    """The widget bound to place `name` on the page now shown (its key is place_<name>@<page>)."""
    found = [w for w in getattr(at, kind) if str(getattr(w, "key", "")).startswith(f"place_{name}@")]
    assert len(found) == 1, [w.key for w in getattr(at, kind)]
    return found[0]
