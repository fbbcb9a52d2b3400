"""Soak test: one training job plus N browser sessions on the app at once.

    .venv/bin/python bench/soak.py [--sessions 8] [--idle-s 45] [--load-s 90]

1. Copies the shipped model into a temporary checkpoints root and starts one training job there
   (`python -m gpt.train`, nanogpt-cpu preset, python-docs corpus), then measures its tokens/s alone.
2. Starts the app server (127.0.0.1, a free port) and holds N Chromium sessions open at once (Playwright, one
   browser, N pages = N Streamlit sessions): half on Attention, half on Generate. Round-robin, each session
   does what a user does there (Attention: pick another head; Generate: set a length, press Generate) and
   waits for the answer.
3. Reports: errors (Streamlit exception boxes, pages that never answered), interaction latencies, training
   tokens/s alone and under load, and how much CPU the app + browser took meanwhile, so the drop in tokens/s
   can be compared with the CPU the extra load used. Exits 1 when any session saw an error.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from explorer.jobs.training import trainer_threads
from gpt import runs

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def proc_ticks(pid: int) -> int:
    """utime + stime of one process, in jiffies."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def tokens_per_s(run_dir: Path, since_step: int) -> tuple[float, int]:
    """Mean tokens/s over the metrics rows logged after since_step; and the last step seen."""
    rows = [r for r in runs.read_jsonl(run_dir / runs.METRICS) if "tokens_per_s" in r]
    recent = [r["tokens_per_s"] for r in rows if r["step"] > since_step]
    last = rows[-1]["step"] if rows else 0
    return (statistics.mean(recent) if recent else float("nan")), last


def measure(trainer_pid: int, run_dir: Path, seconds: float, during=None, server_pid: int | None = None) -> dict:
    """Training tokens/s and CPU use over `seconds` (running `during(deadline)` meanwhile, if given)."""
    _, start_step = tokens_per_s(run_dir, 0)
    busy0, total0 = cpu_ticks()
    train0, t0 = proc_ticks(trainer_pid), time.time()
    server0 = proc_ticks(server_pid) if server_pid else 0
    result = during(t0 + seconds) if during else time.sleep(seconds)
    busy1, total1 = cpu_ticks()
    wall = time.time() - t0
    hz = os.sysconf("SC_CLK_TCK")
    tps, end_step = tokens_per_s(run_dir, start_step)
    trainer_cores = (proc_ticks(trainer_pid) - train0) / hz / wall
    server_cores = (proc_ticks(server_pid) - server0) / hz / wall if server_pid else 0.0
    machine_cores = (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)
    return {"tokens_per_s": tps, "steps": end_step - start_step, "trainer_cores": trainer_cores,
            "server_cores": server_cores, "other_cores": max(0.0, machine_cores - trainer_cores),
            "wall_s": wall, "sessions": result}


def start_server(port: int, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "explorer" / "app.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_http(port: int, timeout: float = 120) -> None:
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the app server did not answer")


class Session:
    """One browser page = one Streamlit session, parked on one app page.

    An interaction is what a user does there: on Attention, pick another head and wait for its heatmap; on
    Generate, set the length and press Generate, and wait for that many tokens. Each waits for content that
    only the new answer has, not for Streamlit's "running" indicator (the live status line reruns every few
    seconds while a job trains, so that indicator comes and goes on its own)."""

    def __init__(self, browser, base: str, page_name: str, timeout_ms: int, index: int):
        self.page = browser.new_context().new_page()
        self.page.set_default_timeout(timeout_ms)
        self.url, self.kind, self.index = f"{base}/{page_name}", page_name, index
        self.count = 0
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def check_errors(self) -> None:
        if self.page.locator('[data-testid="stException"]').count():
            self.errors.append(self.page.locator('[data-testid="stException"]').first.inner_text()[:300])

    def open(self) -> None:
        self.page.goto(self.url)
        self.page.get_by_role("heading", name="Attention" if self.kind == "attention" else "Generate").wait_for()
        if self.kind == "attention":
            self.page.get_by_text("Layer 0, head 0").first.wait_for()
        else:
            self.page.get_by_role("button", name="Generate", exact=True).wait_for()
        self.check_errors()

    def interact(self) -> None:
        self.count += 1
        t0 = time.time()
        try:
            if self.kind == "attention":
                head = self.count % 6  # the shipped model has 6 heads
                self.page.get_by_label("Head", exact=True).click()
                self.page.get_by_role("option", name=f"head {head}", exact=True).click()
                self.page.get_by_text(f"Layer 0, head {head}").first.wait_for()
            else:
                n = 50 + 10 * self.index + self.count  # a length no earlier answer in this session had
                box = self.page.locator('input[aria-label="Max new tokens"]')
                box.fill(str(n))
                box.press("Enter")
                self.page.get_by_role("button", name="Generate", exact=True).click()
                self.page.get_by_text(f"{n} tokens · mean probability").wait_for()
            self.latencies.append(time.time() - t0)
            self.check_errors()
        except Exception as e:  # a page that never answered within the timeout
            self.errors.append(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")


def hold_sessions(port: int, n: int, timeout_ms: int):
    """Open n sessions, then return a function that drives them round-robin until a deadline."""
    from playwright.sync_api import sync_playwright
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    base = f"http://127.0.0.1:{port}"
    sessions = [Session(browser, base, "attention" if i % 2 == 0 else "generate", timeout_ms, i) for i in range(n)]
    for i, s in enumerate(sessions):
        t0 = time.time()
        try:
            s.open()
        except Exception as e:
            s.errors.append(f"open: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        s.open_s = time.time() - t0
        print(f"  session {i + 1} ({s.kind}) open in {s.open_s:.0f}s", flush=True)

    def drive(deadline: float) -> list[Session]:
        while time.time() < deadline:
            for s in sessions:
                if time.time() >= deadline:
                    break
                s.interact()
        return sessions

    return drive, sessions, (pw, browser)


def stop_processes(*procs) -> None:
    """SIGTERM each still-running process group (started with start_new_session=True), SIGKILL after 60 s."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--trainer-threads", type=int, default=trainer_threads(),
                    help="torch threads of the training job (default: what the app gives its jobs)")
    ap.add_argument("--idle-s", type=float, default=45)
    ap.add_argument("--load-s", type=float, default=90)
    ap.add_argument("--timeout-s", type=float, default=120, help="how long one page may take to answer")
    ap.add_argument("--corpus", default="python-docs", help="the training job's corpus (python-docs is offline)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gx-soak-"))
    root = tmp / "checkpoints"
    root.mkdir()
    shutil.copytree(SHIPPED, root / SHIPPED.name, ignore=shutil.ignore_patterns("resume.safetensors", ".tmp-*"))
    env = {**os.environ, "GPT_EXPLORER_CHECKPOINTS": str(root), "PYTHONPATH": str(ROOT)}
    run_dir = root / "soak-train"
    trainer = subprocess.Popen([sys.executable, "-m", "gpt.train", "--corpus", args.corpus, "--preset",
                                "nanogpt-cpu", "--out", str(run_dir), "--max-iters", "1000000", "--eval-interval",
                                "1000000", "--quiet", "--threads", str(args.trainer_threads)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    server = None
    handles = None
    try:
        while tokens_per_s(run_dir, 0)[1] < 20:  # past start-up and the first log lines
            if trainer.poll() is not None:
                raise RuntimeError(f"trainer exited: {trainer.stderr.read()}")
            time.sleep(0.5)
        print(f"training alone for {args.idle_s:.0f}s ...", flush=True)
        idle = measure(trainer.pid, run_dir, args.idle_s)

        port = free_port()
        server = start_server(port, env)
        wait_http(port)
        print(f"opening {args.sessions} sessions ...", flush=True)
        t_open = time.time()
        drive, sessions, handles = hold_sessions(port, args.sessions, int(args.timeout_s * 1000))
        opened_s = time.time() - t_open
        print(f"all sessions open after {opened_s:.0f}s; driving them for {args.load_s:.0f}s ...", flush=True)
        loaded = measure(trainer.pid, run_dir, args.load_s, during=drive, server_pid=server.pid)
        alive = server.poll() is None and trainer.poll() is None
    finally:
        if handles:
            handles[1].close()
            handles[0].stop()
        stop_processes(server, trainer)
        shutil.rmtree(tmp, ignore_errors=True)

    errors = [(s.kind, e) for s in sessions for e in s.errors]
    latencies = sorted(x for s in sessions for x in s.latencies)
    print(f"\nsessions held at once: {len(sessions)} "
          f"({sum(s.kind == 'attention' for s in sessions)} Attention, {sum(s.kind == 'generate' for s in sessions)} "
          f"Generate); opened in {opened_s:.0f}s")
    opens = sorted(getattr(s, "open_s", float("nan")) for s in sessions)
    print(f"first page load per session: median {statistics.median(opens):.1f}s, worst {opens[-1]:.1f}s")
    print(f"interactions answered: {len(latencies)}; errors: {len(errors)}; server and trainer alive: {alive}")
    for kind in ("attention", "generate"):
        lat = sorted(x for s in sessions if s.kind == kind for x in s.latencies)
        if lat:
            print(f"  {kind:9s}: {len(lat)} answers, median {statistics.median(lat):.1f}s, "
                  f"worst {lat[-1]:.1f}s")
    for kind, e in errors[:10]:
        print(f"  error on {kind}: {e}")
    open_errors = sum(e.startswith("open:") for _, e in errors)
    print(f"sessions that failed to open within {args.timeout_s:.0f}s: {open_errors}")
    ratio = loaded["tokens_per_s"] / idle["tokens_per_s"]
    print(f"training alone:     {idle['tokens_per_s']:8.0f} tokens/s, trainer {idle['trainer_cores']:.2f} cores, "
          f"everything else {idle['other_cores']:.2f} cores")
    print(f"with {len(sessions)} sessions: {loaded['tokens_per_s']:8.0f} tokens/s, trainer "
          f"{loaded['trainer_cores']:.2f} cores, everything else {loaded['other_cores']:.2f} cores (the app server "
          f"{loaded['server_cores']:.2f}, the rest is mostly Chromium)")
    share = loaded["trainer_cores"] / max(idle["trainer_cores"], 1e-9)
    print(f"tokens/s under load / alone = {ratio:.2f}; the trainer's CPU share under load / alone = {share:.2f} "
          f"(a tokens/s ratio near the CPU ratio means the drop is the extra CPU load, nothing worse)")
    return 0 if not errors and alive else 1


if __name__ == "__main__":
    sys.exit(main())
