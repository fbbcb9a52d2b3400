"""Many learners in real browsers, both modes: no error box, no traceback, nobody stuck (issue 30's acceptance run).

    .venv/bin/python bench/browser_load.py [--mode both|plain|classroom] [--learners 16] [--seconds 120]

For each mode: the app on 127.0.0.1 (plain `streamlit run explorer/app.py`, or `gpt-explorer --classroom`) in a
temporary checkpoints root with the shipped model and one training job running (bench/server_load.py's Server).
N learners, each a headless Chromium context of one browser (in classroom mode each joins under a name first),
walk Inside -> Attention -> Generate -> Why this token: each step switches page in the sidebar, then clicks a token
pill (Inside), picks a head (Attention) or moves the position slider (Why this token) and waits for what that
answer shows. One click in three is a quick click: 50-300 ms later the learner clicks the next page in the
sidebar without waiting for the first answer.

After every step the page is read: an exception box or an error box is an error; a page still running (or showing
Streamlit's "Connection error") 60 s later is a stuck learner; an answer not seen within --timeout-s on a page
that then comes to rest without an error is counted as late (the browsers' share of the cores), not as an error.
Prints, per mode: steps, quick clicks, median and
p95 step time (in the browser: the server's answer and the drawing, with N browsers sharing this machine's cores),
errors, stuck learners, tracebacks in the server's log, server CPU seconds per request (a click that asks for a
run: comparable with bench/server_load.py's per interaction, both counting the status polls). Exits 1 on any error.

Bounded: at most 32 learners and 600 s per mode; every process it starts is stopped at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from server_load import Server, pct
from soak import CHROMIUM, CHROMIUM_ARGS, proc_ticks

MAX_LEARNERS, MAX_SECONDS = 32, 600
PAGES = (("Inside a prediction", "token click"), ("Attention", "head pick"), ("Generate", "page switch"),
         ("Why this token", "position move"))


class BrowserLearner:
    def __init__(self, context, base: str, index: int, timeout_ms: int):
        self.context, self.base, self.index, self.timeout_ms = context, base, index, timeout_ms
        self.rng = random.Random(index)
        self.seconds: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.stuck = 0
        self.late: list[str] = []   # an answer not seen within the timeout on a page that then came to rest
        self.quick = 0
        self.requests = 0   # clicks that ask the server for a run: a page switch, a pill, a head, a slider move
        self.cycle = 0

    async def open(self, classroom: bool) -> None:
        self.page = await self.context.new_page()
        self.page.set_default_timeout(self.timeout_ms)
        await self.page.goto(self.base)
        await self.page.get_by_role("heading", name="Inside a prediction").wait_for()
        if classroom:
            name_box = self.page.get_by_test_id("stSidebar").get_by_role("textbox", name="Your name")
            await name_box.fill(f"learner-{self.index:02d}")
            await name_box.press("Enter")
            await self.page.get_by_role("button", name="Join", exact=True).click()
            await self.page.get_by_text("Your runs are kept under this name.").wait_for()

    async def go(self, title: str) -> None:
        self.requests += 1
        await self.page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        await self.page.get_by_role("heading", name=title).first.wait_for()

    async def act(self, title: str) -> object:
        """Click what the page offers; returns a locator of what the answer shows (None: nothing to wait for)."""
        main = self.page.get_by_test_id("stMainBlockContainer")
        self.requests += title != "Generate"
        if title == "Inside a prediction":
            position = 10 + (7 * self.cycle + self.index) % 30
            await main.get_by_role("radio").nth(position).click()
            return main.get_by_text(f"Position {position},").first
        if title == "Attention":
            head = (self.cycle + self.index) % 6   # the shipped model has 6 heads per layer
            await self.page.get_by_label("Head", exact=True).click()
            await self.page.get_by_role("option", name=f"head {head}", exact=True).click()
            return self.page.get_by_text(re.compile(rf"Layer \d+, head {head}$")).first
        if title == "Why this token":
            slider = main.get_by_role("slider").first
            now = int(await slider.input_value())
            await slider.focus()
            await slider.press("ArrowLeft" if now > 0 else "ArrowRight")
            return self.page.get_by_text(f"After position {now - 1 if now > 0 else 1} (").first
        return None

    async def settled(self, what: str, count: bool = True) -> bool:
        """Wait until the page's run is over; then count what a learner would see as broken (count=False: only
        wait). False when the page is still running or disconnected 60 s later (a stuck learner)."""
        deadline = time.monotonic() + 60
        status = self.page.get_by_test_id("stStatusWidget")
        while await status.count() or await self.page.get_by_text("Connection error").count():
            if time.monotonic() > deadline:
                if count:
                    self.stuck += 1
                    self.errors.append(f"{what}: stuck (still running or disconnected after 60 s)")
                return False
            await asyncio.sleep(0.2)
        if not count:
            return True
        for test_id in ("stException", "stAlertContentError"):
            boxes = self.page.get_by_test_id(test_id)
            if await boxes.count():
                self.errors.append(f"{what}: {test_id}: " + (await boxes.first.inner_text())[:200])
        return True

    async def step(self, i: int) -> int:
        """One step of the walk from page i; returns the index of the next page to visit."""
        title, kind = PAGES[i % len(PAGES)]
        nxt = PAGES[(i + 1) % len(PAGES)][0]
        t0 = time.monotonic()
        try:
            await self.go(title)
            await self.settled(title, count=False)   # the page's own run done: its widgets hold this page's values
            answer = await self.act(title)
            if answer is not None and self.rng.random() < 1 / 3:   # a quick click: the answer is not awaited
                self.quick += 1
                await asyncio.sleep(self.rng.uniform(0.05, 0.3))
                await self.go(nxt)
                await self.settled(f"quick click {title} -> {nxt}")
                self.seconds.setdefault("quick click", []).append(time.monotonic() - t0)
                return i + 2
            if answer is not None:
                await answer.wait_for()
            await self.settled(f"{title} {kind}")
            self.seconds.setdefault(kind, []).append(time.monotonic() - t0)
        except Exception as e:   # the answer was not seen within the timeout: late, or broken?
            if await self.settled(f"{title} {kind} (late)"):   # the page came to rest: counts its boxes, if any
                self.late.append(f"{title} {kind}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
        return i + 1

    async def walk(self, deadline: float) -> None:
        i = self.index % len(PAGES)
        while time.monotonic() < deadline:
            i = await self.step(i)
            self.cycle += 1
            await asyncio.sleep(self.rng.uniform(0.5, 1.5))   # a person reading


async def walk_mode(url: str, n: int, seconds: float, classroom: bool, timeout_ms: int, pid: int):
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            learners = []
            for i in range(n):   # a class arrives one by one (not measured)
                learner = BrowserLearner(await browser.new_context(viewport={"width": 1400, "height": 1000}), url, i,
                                         timeout_ms)
                try:
                    await learner.open(classroom)
                except Exception as e:
                    learner.errors.append(f"open: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
                learners.append(learner)
            cpu0 = proc_ticks(pid)
            await asyncio.gather(*(s.walk(time.monotonic() + seconds) for s in learners))
            return learners, (proc_ticks(pid) - cpu0) / os.sysconf("SC_CLK_TCK")
        finally:
            await browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("both", "plain", "classroom"), default="both")
    ap.add_argument("--learners", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=120.0, help="walking time per mode")
    ap.add_argument("--timeout-s", type=float, default=120.0, help="an answer not shown within this is an error")
    args = ap.parse_args()
    if not (1 <= args.learners <= MAX_LEARNERS and 0 < args.seconds <= MAX_SECONDS):
        ap.error(f"--learners 1..{MAX_LEARNERS}, --seconds up to {MAX_SECONDS}")
    modes = ("plain", "classroom") if args.mode == "both" else (args.mode,)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.learners} learners x "
          f"{args.seconds:.0f} s per mode, one training job", flush=True)
    print("| mode | steps | quick clicks | median s | p95 s | errors | stuck | late | server tracebacks | requests | server CPU s / request |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    failed, details = False, []
    tmp = Path(tempfile.mkdtemp(prefix="gx-browser-load-"))
    try:
        for mode in modes:
            server = Server(mode, True, tmp / mode)
            try:
                learners, cpu_s = asyncio.run(walk_mode(server.url, args.learners, args.seconds, mode == "classroom",
                                                        int(args.timeout_s * 1000), server.proc.pid))
                tracebacks = server.tracebacks()
            finally:
                server.stop()
            times = [x for s in learners for xs in s.seconds.values() for x in xs]
            errors = [e for s in learners for e in s.errors]
            requests = sum(s.requests for s in learners)
            print(f"| {mode} | {len(times)} | {sum(s.quick for s in learners)} | "
                  f"{statistics.median(times) if times else float('nan'):.2f} | {pct(times, 0.95):.2f} | {len(errors)} | "
                  f"{sum(s.stuck for s in learners)} | {sum(len(s.late) for s in learners)} | {tracebacks} | {requests} | "
                  f"{cpu_s / max(1, requests):.3f} |", flush=True)
            kinds = sorted({k for s in learners for k in s.seconds})
            details.append(f"{mode}: " + ", ".join(
                f"{k} {sum(len(s.seconds.get(k, [])) for s in learners)} x median "
                f"{statistics.median([x for s in learners for x in s.seconds.get(k, [])]):.2f} s" for k in kinds))
            details += [f"  error: {e}" for e in errors[:8]]
            details += [f"  late: {e}" for s in learners for e in s.late][:8]
            failed |= bool(errors) or bool(tracebacks)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print("\n".join(details))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
