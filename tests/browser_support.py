"""What the browser tests share: Debian's Chromium and its flags, and the app's Streamlit server on a free
loopback port (started from the project folder, stopped afterwards, its output in a log file)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
WAIT_MS = 120_000   # generous: CI machines may be busy training


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_chromium() -> None:
    """Skip when asked to (GPT_EXPLORER_SKIP_BROWSER=1); fail, not skip, when Chromium is missing."""
    if os.environ.get("GPT_EXPLORER_SKIP_BROWSER") == "1":
        pytest.skip("GPT_EXPLORER_SKIP_BROWSER=1")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium); "
                    "set GPT_EXPLORER_SKIP_BROWSER=1 to skip them on purpose")


@contextlib.contextmanager
def app_server(checkpoints: Path, log_path: Path, env: dict[str, str] | None = None,
               address: str | None = "127.0.0.1") -> Iterator[str]:
    """The app served with `checkpoints` as its runs folder; yields its URL once /_stcore/health answers.
    env adds to (or overrides) the server's environment, e.g. a PYTHONPATH with a sitecustomize. address None:
    the address .streamlit/config.toml gives (what `gpt-explorer` serves on), reached through 127.0.0.1."""
    port = free_port()
    server_env = {**os.environ, "GPT_EXPLORER_CHECKPOINTS": str(checkpoints), "PYTHONPATH": str(ROOT), **(env or {})}
    where = ["--server.address", address] if address else []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "explorer/app.py", "--server.port", str(port),
                                 *where, "--server.headless", "true",
                                 "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
                                cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever the proxy env
        try:
            while True:
                try:
                    with opener.open(url + "/_stcore/health", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("streamlit did not start:\n" + log_path.read_text(errors="replace"))
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[tuple]:
    """(page, errors): a Chromium tab of width x height with WAIT_MS timeouts; errors collects the page's
    JavaScript errors for the caller to assert on. The browser closes afterwards."""
    from playwright.sync_api import expect, sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page, errors
        finally:
            browser.close()


def shipped_checkpoints(tmp_path: Path) -> Path:
    """A checkpoints folder holding a copy of the shipped run with its feature dictionaries (not their cached
    scans), for browser tests whose server may write into it. Returns the folder."""
    import shutil
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "shakespeare-char"
    run = tmp_path / "checkpoints" / shipped.name
    run.mkdir(parents=True)
    for path in shipped.iterdir():
        if path.is_file():
            shutil.copy2(path, run / path.name)
    shutil.copytree(shipped / "features", run / "features", ignore=shutil.ignore_patterns("cards-*", ".*"))
    return tmp_path / "checkpoints"
