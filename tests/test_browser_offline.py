"""Browser test, offline: the server runs with every outbound connection refused (a sitecustomize that patches
socket) and an unreachable proxy, on the shipped model and an empty cache folder; a real Chromium visits every
page at 1400x1000, finds no error box and no exception, and saves a screenshot of each (test-artifacts/)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_FLAGS, app_server, require_chromium

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("GPT_EXPLORER_SHOTS", ROOT / "test-artifacts")) / "offline-shots"
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"
REFUSE_NETWORK = '''
import socket

def _refused(*args, **kwargs):
    raise OSError("network is unreachable (offline test)")

_connect = socket.socket.connect

def _connect_local_only(self, address):
    if self.family == socket.AF_UNIX:
        return _connect(self, address)
    _refused()

socket.socket.connect = _connect_local_only
socket.socket.connect_ex = lambda self, address: 101  # ENETUNREACH
socket.create_connection = _refused
'''


@pytest.fixture
def offline_server(tmp_path):
    require_chromium()
    root = tmp_path / "checkpoints"
    shutil.copytree(SHIPPED, root / SHIPPED.name)
    site = tmp_path / "offline-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(REFUSE_NETWORK)
    unreachable = "http://10.255.255.1:9"
    env = {"GPT_EXPLORER_CACHE": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
           "HTTP_PROXY": unreachable, "HTTPS_PROXY": unreachable, "http_proxy": unreachable,
           "https_proxy": unreachable, "NO_PROXY": ""}
    with app_server(root, tmp_path / "server.log", env) as url:
        yield url, tmp_path / "server.log"


def test_every_page_offline_in_a_real_browser(offline_server):
    from playwright.sync_api import expect, sync_playwright
    url, server_log = offline_server
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = sorted(p.stem for p in (ROOT / "explorer" / "views").glob("*.py"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            for stem in pages:
                page.goto(f"{url}/{stem}")
                expect(page.locator('[data-testid="stApp"]')).to_be_visible(timeout=120_000)
                expect(page.locator("h1").first).to_be_visible(timeout=120_000)
                # the script has finished when the "Running..." status widget is gone
                expect(page.locator('[data-testid="stStatusWidget"]')).to_have_count(0, timeout=180_000)
                # widgets load their code lazily (a grey skeleton meanwhile): wait until every one is drawn
                expect(page.locator('[data-testid="stSkeleton"]')).to_have_count(0, timeout=120_000)
                charts = page.locator('[data-testid="stPlotlyChart"]')
                for i in range(charts.count()):   # plotly draws after the script ends: wait for each svg
                    expect(charts.nth(i).locator(".main-svg").first).to_be_attached(timeout=60_000)
                page.wait_for_timeout(3000 if charts.count() else 500)  # a busy machine paints heatmaps late
                page.screenshot(path=str(SHOTS / f"{stem}.png"))
                # the page scrolls inside Streamlit's main container: a second picture of its lower half
                page.locator('[data-testid="stMain"]').evaluate("e => e.scrollTo(0, e.scrollHeight / 2)")
                page.wait_for_timeout(300)
                page.screenshot(path=str(SHOTS / f"{stem}-lower.png"))
                assert page.locator('[data-testid="stException"]').count() == 0, stem
                errors = page.locator('[data-testid="stAlertContentError"]')
                assert errors.count() == 0, (stem, errors.all_inner_texts())
        finally:
            browser.close()
    assert "Traceback" not in server_log.read_text(errors="replace")
    print(f"screenshots: {SHOTS}")
