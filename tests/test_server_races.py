"""Races between sessions of one real server, driven over Streamlit's websocket protocol (bench/st_client.py; issue 30).

Each test starts a fresh server (the shipped model in a temporary checkpoints root) on a free loopback port:
* concurrent first runs: several sessions' first pages import plotly/pandas/altair at the same moment (a half-imported
  pandas showed "partially initialized module 'pandas' has no attribute 'Series'" error boxes);
* quick clicks: reruns sent without waiting for the previous answer, each carrying the widgets of the page before
  (the KeyError of a place's on_change), with the browser's message cache emulated: a reply referencing a message the
  browser already evicted is the "Cached ForwardMsg MISS" that left a learner stuck.
"""
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from st_client import Learner  # noqa: E402

pytestmark = pytest.mark.slow
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"
PAGES = ("inside", "attention", "generate", "why_token")
TOKEN_PILLS = "Click a token: the stages below show the prediction made at it"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A fresh app server: (url, log path). Stopped (its process group) at the end."""
    root = tmp_path / "checkpoints"
    root.mkdir()
    shutil.copytree(SHIPPED, root / SHIPPED.name, ignore=shutil.ignore_patterns("resume.safetensors", ".tmp-*"))
    port, log = free_port(), tmp_path / "server.log"
    env = {**os.environ, "GPT_EXPLORER_CHECKPOINTS": str(root), "GPT_EXPLORER_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "explorer" / "app.py"),
                                 "--server.port", str(port), "--server.address", "127.0.0.1",
                                 "--server.headless", "true", "--server.fileWatcherType", "none",
                                 "--browser.gatherUsageStats", "false"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("the app server did not start:\n" + log.read_text()[-2000:]) from None
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", log
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)


def tracebacks(log: Path) -> list[str]:
    text = log.read_text(errors="replace")
    return [chunk[:600] for chunk in text.split("Traceback (most recent call last)")[1:]]


def test_sessions_whose_first_runs_import_the_figure_libraries_at_once_show_no_error(server):
    url, log = server

    async def first_runs():
        async with Learner(url) as a, Learner(url) as b, Learner(url) as c, Learner(url) as d:
            # every session's first run at the same moment, each on another page (its first figures)
            landing = await asyncio.gather(*(s.open() for s in (a, b, c, d)))   # the landing page everywhere first
            pages = await asyncio.gather(*(s.rerun(page) for s, page in zip((a, b, c, d), PAGES)))
            return landing + pages

    # a fresh server: four first runs at once import the figure libraries together (3 of 3 runs showed the
    # half-imported pandas error without app.py's up-front imports), then four different pages at once
    results = asyncio.run(first_runs())
    assert [r.exceptions for r in results] == [[]] * 8
    assert tracebacks(log) == []


def test_quick_clicks_across_pages_leave_no_error_no_cache_miss_and_no_stuck_session(server):
    url, log = server

    async def quick_clicks():
        problems = []
        async with Learner(url, timeout_s=120) as s:
            result = await s.open()
            for round_ in range(8):
                # a token click on Inside, a page, then the next page and straight back to Inside without waiting:
                # Inside's messages are 2 runs old when the last request reports them as cached, and the run
                # overtaken in between ages them out of the browser's cache before the reply references them
                result = await s.rerun("inside")
                options = [o.content for o in result.widgets[TOKEN_PILLS][1].options]
                s.set_widget(TOKEN_PILLS, options[(3 * round_ + 1) % len(options)], result)
                result = await s.rerun()
                problems += result.exceptions
                result = await s.rerun(PAGES[1 + round_ % 3])
                problems += result.exceptions + [f"cache miss {h}" for h in result.cache_misses]
                await s.rerun(PAGES[1 + (round_ + 1) % 3], wait=False)
                await asyncio.sleep(0.02 * (round_ % 3))
                result = await s.rerun("inside")    # must finish: a stuck session times out
                problems += result.exceptions + [f"cache miss {h}" for h in result.cache_misses]
                # the project's config sends every message whole: nothing the browser could have evicted
                problems += [f"{n} cacheable message(s)" for n in [result.cacheable] if n] + \
                            [f"{n} cache reference(s)" for n in [result.cache_refs] if n]
            problems += s.timer_exceptions
        return problems

    assert asyncio.run(quick_clicks()) == []
    assert tracebacks(log) == []
