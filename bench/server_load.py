"""The server alone under many learners: simulated learners speak Streamlit's websocket protocol, render nothing (issue 30).

    .venv/bin/python bench/server_load.py [--mode plain|classroom] [--learners 16] [--rate 6] [--seconds 60] [--quick]
    .venv/bin/python bench/server_load.py --grid          # plain and classroom x N = 1, 16, 30 x 6 and 12 a minute
    .venv/bin/python bench/server_load.py --url http://127.0.0.1:8080 --learners 4   # a server already running

1. A temporary checkpoints root with a copy of the shipped model, and (unless --no-training) one training job in it
   (`python -m gpt.train`, nanogpt-cpu preset, one thread), so the sidebar's live status polls as in class.
2. The app on 127.0.0.1 and a free port (plain `streamlit run explorer/app.py`, or `gpt-explorer --classroom`);
   loopback only. One warm-up learner visits every page of the walk first (the model loads once per server).
3. N learners (bench/st_client.py: one websocket session each; they answer the status timer as a tab does) walk
   Inside -> Attention -> Generate -> Why this token, one interaction every 60/rate s each (start times spread):
   a page switch, then on the page a token click (Inside's pills), a head pick (Attention's Head) or a position
   move (Why this token's slider). Each waits for its run's script_finished. --quick: one in three clicks is
   followed 50-300 ms later by the next one without waiting for the first (a learner clicking fast).
4. Prints a table row per cell: interactions, median and p95 seconds (the server's answer; no drawing), errors
   (exception elements on the page, cache misses, timeouts), server CPU seconds per interaction (utime+stime of the
   server from /proc, status-poll reruns included), peak resident memory, tracebacks in the server's log.

Bounded: at most 40 learners, 600 s per cell, 30 per learner per minute; every process it starts is stopped at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from soak import SHIPPED, free_port, proc_ticks, stop_processes, wait_http
from st_client import Learner, ProtocolError

ROOT = Path(__file__).resolve().parent.parent
# --profile: the server's full script runs (not the status polls) under cProfile, summed into one pstats file
PROFILE_SCRIPT_RUNS = '''
import cProfile, os, pstats, threading
from streamlit.runtime.scriptrunner import script_runner
_orig = script_runner.ScriptRunner._run_script
_lock = threading.Lock()
_stats = [None]
def _prof(self, rerun_data):
    if rerun_data.fragment_id_queue or not os.path.exists(os.environ["GX_PROFILE"] + ".on"):
        return _orig(self, rerun_data)   # a status poll, or the warm-up: not profiled
    p = cProfile.Profile()
    p.enable()
    try:
        return _orig(self, rerun_data)
    finally:
        p.disable()
        with _lock:
            if _stats[0] is None:
                _stats[0] = pstats.Stats(p)
            else:
                _stats[0].add(p)
            _stats[0].dump_stats(os.environ["GX_PROFILE"])
script_runner.ScriptRunner._run_script = _prof
'''
MAX_LEARNERS, MAX_CELL_S, MAX_RATE = 40, 600, 30
WALK = ("inside", "attention", "generate", "why_token")
TOKEN_PILLS = "Click a token: the stages below show the prediction made at it"


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)   # interaction kind -> seconds
    errors: list[str] = field(default_factory=list)

    def add(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)

    def all(self) -> list[float]:
        return [x for xs in self.latencies.values() for x in xs]


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def widget_move(page: str, result, rng: random.Random):
    """(kind, label, new value) of the interaction a learner makes on `page`, or None (Generate: the switch only)."""
    w = result.widgets
    if page == "inside" and TOKEN_PILLS in w:
        options = [o.content for o in w[TOKEN_PILLS][1].options]
        return "token click", TOKEN_PILLS, rng.choice(options)
    if page == "attention" and "Head" in w:
        return "head pick", "Head", rng.choice(list(w["Head"][1].options))
    if page == "why_token" and "Position" in w:
        el = w["Position"][1]
        return "position move", "Position", rng.randint(int(el.min), int(el.max))
    return None


async def interact(learner: Learner, tally: Tally, kind: str, run, quick: bool) -> object:
    """One interaction (await `run`, a coroutine returning a RunResult); errors are counted, never raised."""
    try:
        result = await run
    except (asyncio.TimeoutError, TimeoutError):
        tally.errors.append(f"{kind}: no answer within {learner.timeout_s:.0f}s")
        return None
    except (ProtocolError, OSError) as e:
        tally.errors.append(f"{kind}: {type(e).__name__}: {e}")
        return None
    tally.add(kind, result.seconds)
    tally.errors.extend(f"{kind}: {e}" for e in result.exceptions)
    tally.errors.extend(f"{kind}: Cached ForwardMsg MISS {h}" for h in result.cache_misses)
    return result


async def walk(learner: Learner, index: int, deadline: float, rate: float, quick: bool, tally: Tally) -> None:
    rng = random.Random(index)
    period = 60.0 / rate
    await asyncio.sleep(rng.uniform(0, period))      # spread the learners' start times over one period
    step, result = 0, None
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        page = WALK[(step // 2) % len(WALK)]
        if step % 2 == 0 or result is None:
            result = await interact(learner, tally, "page switch", learner.rerun(page), quick)
        else:
            move = widget_move(page, result, rng)
            if move is not None:
                kind, label, value = move
                learner.set_widget(label, value, result)
                if quick and rng.random() < 1 / 3:   # a fast second click: the first request is not waited for
                    await learner.rerun(wait=False)
                    await asyncio.sleep(rng.uniform(0.05, 0.3))
                    nxt = WALK[(step // 2 + 1) % len(WALK)]
                    result = await interact(learner, tally, "quick click", learner.rerun(nxt), quick)
                    step += 1     # the quick click was the next page switch
                else:
                    result = await interact(learner, tally, kind, learner.rerun(), quick)
        step += 1
        await asyncio.sleep(max(0.0, period - (time.monotonic() - t0)))


async def learners_walk(url: str, n: int, seconds: float, rate: float, quick: bool, classroom: bool,
                        timeout_s: float, marks: list, sticky: bool = False) -> tuple[Tally, list[Learner]]:
    """Join n learners one at a time (not measured), then walk them all for `seconds`; marks gets
    (time.monotonic(), server CPU ticks) at the walk's start and end (CPU: the caller's ticks())."""
    tally = Tally()
    learners = [Learner(url, timeout_s=timeout_s, sticky=sticky) for _ in range(n)]
    for i, learner in enumerate(learners):     # join one at a time, as a class arrives (not measured)
        await learner.__aenter__()
        try:
            first = await learner.open()
            tally.errors.extend(f"open: {e}" for e in first.exceptions)
            if classroom and "Your name" in first.widgets:
                learner.set_widget("Your name", f"learner-{i:02d}", first)
                joined = await learner.rerun()
                learner.set_widget("Join", True, joined)
                await learner.rerun()
                learner.states = {k: s for k, s in learner.states.items() if not s.HasField("trigger_value")}
        except (asyncio.TimeoutError, TimeoutError, ProtocolError, OSError) as e:
            tally.errors.append(f"open: {type(e).__name__}: {e}")
    marks[0] = marks[0]()
    deadline = time.monotonic() + seconds
    try:
        await asyncio.gather(*(walk(s, i, deadline, rate, quick, tally) for i, s in enumerate(learners)))
        marks[1] = marks[1]()
    finally:
        for learner in learners:
            tally.errors.extend(f"status poll: {e}" for e in learner.timer_exceptions)
            await learner.__aexit__(None, None, None)
    return tally, learners


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Server:
    """The app in a temporary checkpoints root (with one training job unless told not), on a free loopback port."""

    def __init__(self, mode: str, training: bool, tmp: Path, profile: str | None = None):
        self.mode, self.tmp = mode, tmp
        self.root = tmp / "checkpoints"
        self.root.mkdir(parents=True)
        shutil.copytree(SHIPPED, self.root / SHIPPED.name,
                            ignore=shutil.ignore_patterns("resume.safetensors", ".tmp-*"))
        self.env = {**os.environ, "GPT_EXPLORER_CHECKPOINTS": str(self.root), "GPT_EXPLORER_CACHE": str(tmp / "cache"),
                    "PYTHONPATH": str(ROOT)}
        self.trainer = None
        server_env = dict(self.env)
        if profile:
            (tmp / "site").mkdir()
            (tmp / "site" / "sitecustomize.py").write_text(PROFILE_SCRIPT_RUNS)
            server_env.update(PYTHONPATH=os.pathsep.join([str(tmp / "site"), str(ROOT)]),
                              GX_PROFILE=str(Path(profile).resolve()))
        if training:
            self.trainer = subprocess.Popen(
                [sys.executable, "-m", "gpt.train", "--corpus", "python-docs", "--preset", "nanogpt-cpu", "--out",
                 str(self.root / "teacher-training"), "--max-iters", "1000000", "--eval-interval", "1000000",
                 "--quiet", "--threads", "1"], cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
        self.port = free_port()
        self.log = tmp / f"server-{mode}-{self.port}.log"
        if mode == "classroom":
            cmd = [sys.executable, "-m", "explorer.launch", "--classroom", "--max-jobs", "1"]
        else:
            cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "explorer" / "app.py"),
                   "--server.headless", "true", "--server.fileWatcherType", "none",
                   "--browser.gatherUsageStats", "false"]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd + ["--server.port", str(self.port), "--server.address", "127.0.0.1"],
                                         cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_http(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback (most recent call last)")

    def stop(self) -> None:
        stop_processes(self.proc, self.trainer)


def warm_up(url: str, timeout_s: float) -> None:
    async def visit():
        async with Learner(url, timeout_s=timeout_s, follow_timer=False) as s:
            await s.open()
            for page in WALK + ("circuit",):
                await s.rerun(page)
    asyncio.run(visit())


def cell(url: str, pids: list[int], mode: str, n: int, rate: float, seconds: float, quick: bool, timeout_s: float,
         log_tracebacks=None, sticky: bool = False) -> dict:
    hz = os.sysconf("SC_CLK_TCK")
    peak = [max(rss_bytes(p) for p in pids)] if pids else [0]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.5):
            try:
                peak[0] = max(peak[0], sum(rss_bytes(p) for p in pids))
            except OSError:
                return
    threading.Thread(target=sample, daemon=True).start()
    tb0 = log_tracebacks() if log_tracebacks else 0

    def now():
        return time.monotonic(), sum(proc_ticks(p) for p in pids)
    marks = [now, now]
    tally, learners = asyncio.run(learners_walk(url, n, seconds, rate, quick, mode == "classroom", timeout_s,
                                                marks, sticky))
    (t0, cpu0), (t1, cpu1) = marks
    cpu_s, wall = (cpu1 - cpu0) / hz, t1 - t0
    stop.set()
    xs = tally.all()
    return {"mode": mode, "n": n, "rate": rate, "quick": quick, "interactions": len(xs),
            "median": statistics.median(xs) if xs else float("nan"), "p95": pct(xs, 0.95), "errors": tally.errors,
            "cpu_per": cpu_s / max(1, len(xs)), "cpu_cores": cpu_s / wall, "rss_mb": peak[0] / 2**20,
            "tracebacks": (log_tracebacks() - tb0) if log_tracebacks else None,
            "timer_runs": sum(s.timer_runs for s in learners), "by_kind": tally.latencies,
            # behind scripts/classroom-cluster's proxy: learners per replica (the proxy's X-GX-Replica header)
            "replicas": Counter(s.handshake_headers.get("x-gx-replica", "-") for s in learners)}


HEADER = ("| mode | learners | per min | quick | interactions | median s | p95 s | errors | server CPU s / interaction "
          "| server cores | peak RSS MB | tracebacks |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def row(r: dict) -> str:
    return (f"| {r['mode']} | {r['n']} | {r['rate']:g} | {'yes' if r['quick'] else 'no'} | {r['interactions']} | "
            f"{r['median']:.2f} | {r['p95']:.2f} | {len(r['errors'])} | {r['cpu_per']:.3f} | {r['cpu_cores']:.2f} | "
            f"{r['rss_mb']:.0f} | {r['tracebacks'] if r['tracebacks'] is not None else '-'} |")


def by_kind(r: dict) -> str:
    return ", ".join(f"{k} {len(v)} × median {statistics.median(v):.2f} s" for k, v in sorted(r["by_kind"].items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("plain", "classroom"), default="plain")
    ap.add_argument("--learners", type=int, default=16)
    ap.add_argument("--rate", type=float, default=6.0, help="interactions per learner per minute")
    ap.add_argument("--seconds", type=float, default=60.0, help="walking time per cell")
    ap.add_argument("--quick", action="store_true", help="one click in three does not wait for its answer")
    ap.add_argument("--grid", action="store_true", help="plain and classroom x N = 1, 16, 30 x rate 6 and 12")
    ap.add_argument("--no-training", action="store_true", help="no training job during the walk")
    ap.add_argument("--url", help="bench a server already running (loopback); --pids: its processes, for CPU")
    ap.add_argument("--pids", type=int, nargs="*", default=[])
    ap.add_argument("--sticky", action="store_true", help="as a browser: load the page (its cookies) before the "
                    "websocket; for --url of scripts/classroom-cluster's proxy")
    ap.add_argument("--timeout-s", type=float, default=120.0)
    ap.add_argument("--profile", help="write a cProfile of the server's full script runs to this pstats file")
    args = ap.parse_args()
    if not (1 <= args.learners <= MAX_LEARNERS and 0 < args.seconds <= MAX_CELL_S and 0 < args.rate <= MAX_RATE):
        ap.error(f"--learners 1..{MAX_LEARNERS}, --seconds up to {MAX_CELL_S}, --rate up to {MAX_RATE}")
    if args.url and not args.url.startswith(("http://127.", "http://localhost")):
        ap.error("loopback only: --url http://127.0.0.1:<port>")

    cells = ([(m, n, r) for m in ("plain", "classroom") for n in (1, 16, 30) for r in (6, 12)] if args.grid
             else [(args.mode, args.learners, args.rate)])
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; "
          f"{args.seconds:.0f} s per cell; training job: {'no' if args.no_training else 'yes'}", flush=True)
    print(HEADER, flush=True)
    results, failed = [], False
    if args.url:
        warm_up(args.url, args.timeout_s)
        for mode, n, rate in cells:
            results.append(cell(args.url, args.pids, mode, n, rate, args.seconds, args.quick, args.timeout_s,
                                sticky=args.sticky))
            print(row(results[-1]), flush=True)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="gx-server-load-"))
        try:
            for mode in dict.fromkeys(m for m, _, _ in cells):
                server = Server(mode, not args.no_training, tmp / mode, args.profile)
                try:
                    warm_up(server.url, args.timeout_s)
                    if args.profile:
                        Path(args.profile + ".on").touch()
                    for m, n, rate in cells:
                        if m == mode:
                            results.append(cell(server.url, [server.proc.pid], mode, n, rate, args.seconds,
                                                args.quick, args.timeout_s, server.tracebacks))
                            print(row(results[-1]), flush=True)
                finally:
                    server.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if args.profile:
                Path(args.profile + ".on").unlink(missing_ok=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    for r in results:
        print(f"{r['mode']} N={r['n']} rate={r['rate']:g}: {by_kind(r)}; status-poll reruns {r['timer_runs']}; "
              f"learners per replica {dict(r['replicas'])}")
        for e in r["errors"][:5]:
            print(f"  error: {e}")
        failed |= bool(r["errors"]) or bool(r["tracebacks"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
