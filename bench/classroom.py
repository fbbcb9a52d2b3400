"""Classroom load: N learners' browser sessions walk the app at once while one training job runs (issue 23).

    .venv/bin/python bench/classroom.py [--sessions 16] [--walk-s 180] [--idle-s 30] [--think-s 1]

1. A temporary checkpoints root with a copy of the shipped model (the teacher's run), one training job in it
   (`python -m gpt.train`, nanogpt-cpu preset, python-docs corpus; the teacher's, so it holds the class's one
   job slot) and its tokens/s alone.
2. The app started the way a teacher starts it: `gpt-explorer --classroom --max-jobs 1` on 127.0.0.1 and a free
   port (loopback only: this script never passes another address).
3. N learners, each a headless Chromium context (one browser, asyncio: the sessions really act at the same time),
   join the class under their own name (after the teacher has opened the Train page once, which calibrates its
   expected-time estimate for the day), then walk until the deadline: click a token on the landing page, pick
   an attention head, generate 100 tokens, move the position on Why this token, and press Start training (the
   slot is the teacher's job, so the request joins the queue and the page shows its place), then Cancel it.
   Every step waits for content only its own answer has.
4. Prints: errors and lost interactions, per-step and overall median/p95 interaction time (in the browser: the
   server's answer plus the page's drawing), the server's own script runs during the walk (median/p95 wall time of
   each run, timed inside the server by a sitecustomize: what a learner whose browser has its own CPU waits for
   the server), server resident
   memory (peak, and the growth per added session while they join), the server's CPU seconds per interaction,
   and the training job's tokens/s under load against alone.

Bounded: at most 32 sessions and 10 minutes of walking; every process it starts is stopped at the end (also on
errors or Ctrl-C); the temporary root is removed. Exits 1 when a session saw an error.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from soak import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SHIPPED,
    free_port,
    measure,
    proc_ticks,
    stop_processes,
    tokens_per_s,
    wait_http,
)

TIME_SCRIPT_RUNS = '''
import os, threading, time
from streamlit.runtime.scriptrunner import script_runner

_original = script_runner.ScriptRunner._run_script
_lock = threading.Lock()


def _timed(self, rerun_data):
    fragment = int(bool(rerun_data.fragment_id_queue))   # the sidebar's 2-second status poll, not a learner's click
    start, t0 = time.time(), time.perf_counter()
    try:
        return _original(self, rerun_data)
    finally:
        with _lock, open(os.environ["GX_SCRIPT_RUNS"], "a") as f:
            f.write(f"{start:.3f} {time.perf_counter() - t0:.4f} {fragment}\\n")


script_runner.ScriptRunner._run_script = _timed
'''

ROOT = Path(__file__).resolve().parent.parent
MAX_SESSIONS, MAX_WALK_S = 32, 600
IDLE_TABS_S = 20.0   # all learners joined, nobody acting: what the open tabs alone cost the server
STEPS = ("token click", "attention head", "generate 100", "why this token", "training start (queued)")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Learner:
    """One browser context = one Streamlit session = one learner."""

    def __init__(self, context, base: str, index: int, timeout_ms: int):
        self.context, self.base, self.index, self.timeout_ms = context, base, index, timeout_ms
        self.latencies: dict[str, list[float]] = {step: [] for step in STEPS}
        self.errors: list[str] = []
        self.cycle = 0

    async def open(self) -> None:
        self.page = await self.context.new_page()
        self.page.set_default_timeout(self.timeout_ms)
        await self.page.goto(self.base)
        await self.page.get_by_role("heading", name="Inside a prediction").wait_for()
        name_box = self.page.get_by_test_id("stSidebar").get_by_role("textbox", name="Your name")
        await name_box.fill(f"learner-{self.index:02d}")
        await name_box.press("Enter")
        await self.page.get_by_role("button", name="Join", exact=True).click()
        await self.page.get_by_text("Your runs are kept under this name.").wait_for()

    async def go(self, title: str, heading: str) -> None:
        await self.page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        await self.page.get_by_role("heading", name=heading).first.wait_for()

    async def step(self, name: str, action) -> None:
        t0 = time.monotonic()
        try:
            await action()
            self.latencies[name].append(time.monotonic() - t0)
            if await self.page.get_by_test_id("stException").count():
                self.errors.append(f"{name}: " + (await self.page.get_by_test_id("stException").first.inner_text())[:200])
        except Exception as e:   # a page that never answered within the timeout: a lost interaction
            self.errors.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")

    # ---- the walk ----
    async def token_click(self) -> None:
        await self.go("Inside a prediction", "Inside a prediction")
        main = self.page.get_by_test_id("stMainBlockContainer")
        position = 10 + (7 * self.cycle + self.index) % 30
        await main.get_by_role("radio").nth(position).click()
        await main.get_by_text(f"Position {position},").first.wait_for()

    async def attention_head(self) -> None:
        await self.go("Attention", "Attention")
        head = (self.cycle + self.index) % 6   # the shipped model has 6 heads per layer
        await self.page.get_by_label("Head", exact=True).click()
        await self.page.get_by_role("option", name=f"head {head}", exact=True).click()
        await self.page.get_by_text(re.compile(rf"Layer \d+, head {head}$")).first.wait_for()

    async def generate(self) -> None:
        await self.go("Generate", "Generate")
        n = 100 + self.cycle % 2    # 100 tokens; 101 every other time, so the answer awaited is the new one
        box = self.page.locator('input[aria-label="Max new tokens"]')
        await box.fill(str(n))
        await box.press("Enter")
        await self.page.get_by_role("button", name="Generate", exact=True).click()
        await self.page.get_by_text(f"{n} tokens · mean probability").wait_for()

    async def why_token(self) -> None:
        await self.go("Why this token", "Why this token")
        slider = self.page.get_by_test_id("stMainBlockContainer").get_by_role("slider").first
        now = int(await slider.input_value())
        await slider.focus()
        await slider.press("ArrowLeft" if now > 0 else "ArrowRight")
        await self.page.get_by_text(f"After position {now - 1 if now > 0 else 1} (").first.wait_for()

    async def training_start(self) -> None:
        await self.go("Train", "Train")
        await self.page.get_by_role("button", name="Start training").click()
        await self.page.get_by_text(re.compile(r"(st|nd|rd|th) in the queue, ")).first.wait_for()
        await self.page.get_by_role("button", name="Cancel", exact=True).click()   # one job per learner: free it
        await self.page.get_by_role("button", name="Cancel", exact=True).wait_for(state="detached")

    async def walk(self, deadline: float, think_s: float) -> None:
        actions = dict(zip(STEPS, (self.token_click, self.attention_head, self.generate, self.why_token,
                                   self.training_start)))
        while time.monotonic() < deadline:
            for name, action in actions.items():
                if time.monotonic() >= deadline:
                    return
                await self.step(name, action)
                await asyncio.sleep(think_s)
            self.cycle += 1


async def run_learners(base: str, n: int, walk_s: float, think_s: float, timeout_ms: int, server_pid: int):
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # the teacher opens the Train page once before class: its expected-time calibration (a few real
            # training steps, remembered per shape for a day) is then shared by every learner, as in a class
            teacher = await (await browser.new_context()).new_page()
            teacher.set_default_timeout(timeout_ms * 3)
            await teacher.goto(f"{base}/train")
            await teacher.get_by_text("Expected wall time").first.wait_for()
            await teacher.context.close()
            learners, rss_after_join = [], [rss_bytes(server_pid)]
            for i in range(n):   # join one at a time: the server's memory per added session
                learner = Learner(await browser.new_context(), base, i, timeout_ms)
                t0 = time.monotonic()
                try:
                    await learner.open()
                except Exception as e:
                    learner.errors.append(f"open: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
                learner.open_s = time.monotonic() - t0
                learners.append(learner)
                rss_after_join.append(rss_bytes(server_pid))
                print(f"  learner {i + 1} joined in {learner.open_s:.1f}s; server RSS "
                      f"{rss_after_join[-1] / 2**20:.0f} MB", flush=True)
            # every tab open and idle (each still polls the sidebar's training status): the server's cost of a
            # waiting learner, apart from the cost of what learners do
            hz, cpu0, t0 = os.sysconf("SC_CLK_TCK"), proc_ticks(server_pid), time.monotonic()
            await asyncio.sleep(IDLE_TABS_S)
            idle_cores = (proc_ticks(server_pid) - cpu0) / hz / (time.monotonic() - t0)
            cpu0, t0 = proc_ticks(server_pid), time.monotonic()
            deadline = time.monotonic() + walk_s
            await asyncio.gather(*(learner.walk(deadline, think_s) for learner in learners))
            walk = {"server_cpu_s": (proc_ticks(server_pid) - cpu0) / hz, "wall_s": time.monotonic() - t0,
                    "idle_cores": idle_cores}
            return learners, rss_after_join, walk
        finally:
            await browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--walk-s", type=float, default=180)
    ap.add_argument("--idle-s", type=float, default=30, help="training alone, for its solo tokens/s")
    ap.add_argument("--think-s", type=float, default=1.0, help="pause after each step, as a person reading")
    ap.add_argument("--timeout-s", type=float, default=60, help="a step not answered within this is lost")
    ap.add_argument("--trainer-threads", type=int, default=1)
    args = ap.parse_args()
    if not 1 <= args.sessions <= MAX_SESSIONS or not 0 < args.walk_s <= MAX_WALK_S:
        ap.error(f"--sessions 1..{MAX_SESSIONS} and --walk-s up to {MAX_WALK_S}")

    tmp = Path(tempfile.mkdtemp(prefix="gx-classroom-"))
    root = tmp / "checkpoints"
    root.mkdir()
    shutil.copytree(SHIPPED, root / SHIPPED.name, ignore=shutil.ignore_patterns("resume.safetensors", ".tmp-*"))
    # the server times each of its script runs (one per interaction and page switch) into a file
    site = tmp / "timing-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(TIME_SCRIPT_RUNS)
    script_runs = tmp / "script-runs.txt"
    env = {**os.environ, "GPT_EXPLORER_CHECKPOINTS": str(root), "GPT_EXPLORER_CACHE": str(tmp / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT)]), "GX_SCRIPT_RUNS": str(script_runs)}
    server_env = {**env, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    run_dir = root / "teacher-training"
    trainer = subprocess.Popen([sys.executable, "-m", "gpt.train", "--corpus", "python-docs", "--preset", "nanogpt-cpu",
                                "--out", str(run_dir), "--max-iters", "1000000", "--eval-interval", "1000000",
                                "--quiet", "--threads", str(args.trainer_threads)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    server, port, learners = None, free_port(), []
    peak_rss = [0]
    try:
        while tokens_per_s(run_dir, 0)[1] < 20:
            if trainer.poll() is not None:
                raise RuntimeError(f"trainer exited: {trainer.stderr.read()}")
            time.sleep(0.5)
        print(f"training alone for {args.idle_s:.0f}s ...", flush=True)
        idle = measure(trainer.pid, run_dir, args.idle_s)
        server = subprocess.Popen([sys.executable, "-m", "explorer.launch", "--classroom", "--max-jobs", "1",
                                   "--server.port", str(port), "--server.address", "127.0.0.1"],
                                  cwd=ROOT, env=server_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  start_new_session=True)
        wait_http(port)
        stop_sampling = threading.Event()

        def sample_rss():
            while not stop_sampling.wait(0.5):
                try:
                    peak_rss[0] = max(peak_rss[0], rss_bytes(server.pid))
                except OSError:
                    return
        threading.Thread(target=sample_rss, daemon=True).start()
        print(f"{args.sessions} learners join ...", flush=True)
        joined = {}

        def walk(_deadline):   # the joins, then walk_s of walking; measure() times whatever this takes
            joined["learners"], joined["rss"], joined["walk"] = asyncio.run(run_learners(
                f"http://127.0.0.1:{port}", args.sessions, args.walk_s, args.think_s, int(args.timeout_s * 1000),
                server.pid))
        server_cpu0 = proc_ticks(server.pid)
        walk_started = time.time()
        loaded = measure(trainer.pid, run_dir, args.walk_s, during=walk, server_pid=server.pid)
        server_cpu_s = (proc_ticks(server.pid) - server_cpu0) / os.sysconf("SC_CLK_TCK")
        stop_sampling.set()
        learners, rss_after_join, walk_cost = joined["learners"], joined["rss"], joined["walk"]
        alive = server.poll() is None and trainer.poll() is None
        lines = script_runs.read_text().splitlines() if script_runs.exists() else []
        runs = [(float(d), f == "1") for t, d, f in (line.split() for line in lines) if float(t) >= walk_started]
    finally:
        stop_processes(server, trainer)
        shutil.rmtree(tmp, ignore_errors=True)

    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")
    errors = [e for s in learners for e in s.errors]
    everything = [x for s in learners for xs in s.latencies.values() for x in xs]
    print(f"\n{len(learners)} learners, walk {args.walk_s:.0f}s, think {args.think_s:.1f}s, one training job; "
          f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"interactions answered: {len(everything)}; errors or lost: {len(errors)}; server and trainer alive: {alive}")
    print("| step | answers | median s | p95 s | worst s |\n|---|---|---|---|---|")
    for step in STEPS:
        xs = [x for s in learners for x in s.latencies[step]]
        if xs:
            print(f"| {step} | {len(xs)} | {statistics.median(xs):.2f} | {pct(xs, 0.95):.2f} | {max(xs):.2f} |")
    if everything:
        print(f"| all | {len(everything)} | {statistics.median(everything):.2f} | {pct(everything, 0.95):.2f} | "
              f"{max(everything):.2f} |")
    for what, durations in (("whole-page", [d for d, polled in runs if not polled]),
                            ("status-poll fragment", [d for d, polled in runs if polled])):
        if durations:
            print(f"server {what} script runs during the joins and the walk: {len(durations)}, median "
                  f"{statistics.median(durations):.2f} s, p95 {pct(durations, 0.95):.2f} s, worst {max(durations):.2f} s "
                  "(the server's own answer time, without the browser)")
    opens = [s.open_s for s in learners]
    print(f"joining (first page + name): median {statistics.median(opens):.1f}s, worst {max(opens):.1f}s")
    per_session = (rss_after_join[-1] - rss_after_join[1]) / max(1, len(rss_after_join) - 2)
    print(f"server RSS: before the first learner {rss_after_join[0] / 2**20:.0f} MB, after the first "
          f"{rss_after_join[1] / 2**20:.0f} MB, after all {rss_after_join[-1] / 2**20:.0f} MB "
          f"({per_session / 2**20:.1f} MB per added session), peak {peak_rss[0] / 2**20:.0f} MB")
    idle_per_tab = walk_cost["idle_cores"] / max(1, len(learners))
    acting_s = walk_cost["server_cpu_s"] - walk_cost["idle_cores"] * walk_cost["wall_s"]
    per_interaction = acting_s / max(1, len(everything))
    print(f"server CPU: {server_cpu_s:.1f} s in all (joins, idle tabs, walk); with every tab open and idle "
          f"{walk_cost['idle_cores']:.3f} cores ({idle_per_tab * 1000:.1f} millicores per tab); during the walk "
          f"{walk_cost['server_cpu_s'] / walk_cost['wall_s']:.2f} cores, i.e. {per_interaction:.3f} CPU s per "
          "interaction beyond the idle tabs")
    for pace in (6, 12):   # interactions per learner per minute: a person reading vs clicking briskly
        cores = 30 * (idle_per_tab + pace / 60 * per_interaction)
        print(f"30 learners with their browsers on their own machines, {pace} interactions a minute each: "
              f"{cores:.2f} server cores")
    ratio = loaded["tokens_per_s"] / idle["tokens_per_s"]
    print(f"training: alone {idle['tokens_per_s']:.0f} tokens/s, under load {loaded['tokens_per_s']:.0f} tokens/s "
          f"= {ratio:.2f}x (trainer {idle['trainer_cores']:.2f} -> {loaded['trainer_cores']:.2f} cores; server "
          f"{loaded['server_cores']:.2f} cores, everything else {loaded['other_cores']:.2f})")
    for e in errors[:12]:
        print(f"  error: {e}")
    return 0 if not errors and alive else 1


if __name__ == "__main__":
    sys.exit(main())
