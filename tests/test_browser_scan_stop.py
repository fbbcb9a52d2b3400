"""Browser test: a long scan shows a progress bar and stops when the learner presses Stop (issue 21).

The server's MLP scan is slowed by a sitecustomize (one second per batch of windows, and each batch counted in a
file), so a real browser can press Stop mid-scan. Stopping must end the computation itself, not just hide it: the
batch count stops growing, no scan file is written, and the page offers to start again instead of restarting.
"""
from __future__ import annotations

import os
import time

import pytest
from browser_support import ROOT, app_server, chromium_page, require_chromium, shipped_checkpoints

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = ROOT / "test-artifacts" / "scan-shots"   # looked at by a person: the bar, and the page after Stop

SLOW_SCAN = '''
import os, time
import gpt.interp.neurons as neurons

_original = neurons.top_contexts
_COUNT = os.environ["SCAN_BATCHES_FILE"]


def _slow(*args, progress=None, **kwargs):
    def slow_progress(fraction):
        with open(_COUNT, "a") as f:
            f.write("x")
        time.sleep(1.0)
        if progress is not None:
            progress(fraction)
    return _original(*args, progress=slow_progress, **kwargs)


neurons.top_contexts = _slow
'''


def batches(path) -> int:
    return len(path.read_text()) if path.exists() else 0


def test_stop_ends_a_long_neuron_scan_and_keeps_nothing(tmp_path):
    require_chromium()
    from playwright.sync_api import expect
    root = shipped_checkpoints(tmp_path)
    run = root / "shakespeare-char"
    for stale in (run / "interp").glob("neurons-*"):
        stale.unlink()
    site = tmp_path / "slow-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_SCAN)
    counter = tmp_path / "batches.txt"
    env = {"GPT_EXPLORER_CACHE": str(tmp_path / "cache"), "SCAN_BATCHES_FILE": str(counter),
           "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    with app_server(root, tmp_path / "server.log", env) as url, chromium_page() as (page, errors):
        page.goto(f"{url}/mlp")
        bar = page.get_by_text("Finding where each neuron fires most")
        expect(bar).to_be_visible(timeout=120_000)
        expect(page.get_by_text("%)")).to_be_visible(timeout=60_000)   # the bar moves
        SHOTS.mkdir(parents=True, exist_ok=True)
        bar.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "mlp-scan-progress.png"))
        page.get_by_test_id("stButton").get_by_role("button", name="Stop the scan").click()
        expect(page.get_by_text("The scan was stopped; nothing of it was kept.")).to_be_visible(timeout=60_000)
        expect(page.get_by_role("button", name="Scan ")).to_be_visible()
        stopped_at = batches(counter)
        time.sleep(4)
        assert batches(counter) <= stopped_at + 1, "the scan went on after Stop"
        assert stopped_at < 27, stopped_at   # the whole split is 27 batches of 32 windows
        assert not list((run / "interp").glob("neurons-*")), "a stopped scan wrote its file"
        page.get_by_text("The scan was stopped").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "mlp-scan-stopped.png"))
        assert not errors, errors
