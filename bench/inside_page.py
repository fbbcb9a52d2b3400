"""Server-side time of the issue-12 views on the shipped model (shakespeare-char, 4 x 6 x 192, block 128).

* landing page "Inside a prediction" with a 64-token prompt: the whole page script as Streamlit runs it (AppTest:
  the script, every figure, the protobuf messages), rerun with a new clicked position each time. Goal <= 0.3 s.
* the BertViz-style line view at 128 tokens: attention trace + the Altair chart + its Vega-Lite JSON. Goal <= 0.5 s.
  The whole Attention page at 128 tokens is timed too, for context.

Each is printed as wall seconds and as this process's CPU seconds (with 1 torch thread, CPU time is the work
done; on a crowded machine wall time mostly measures the crowd), with the load average.
usage: python bench/inside_page.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from common import machine
from streamlit import dataframe_util

from explorer.figures.attention_views import line_view
from gpt.interp.attention import attention_trace
from gpt.runs import load_run
from gpt.token_display import display_token

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "explorer" / "app.py")
RUN = ROOT / "checkpoints" / "shakespeare-char"
PROMPT_64 = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo? Deny thy father"[:64]
PROMPT_128 = ("JULIET:\nO Romeo, Romeo! wherefore art thou Romeo? Deny thy father and refuse thy name; "
              "Or, if thou wilt not, be but sworn my love,")[:128]
GOALS = {"landing page, 64 tokens": 0.3, "line view, 128 tokens": 0.5, "attention page, 128 tokens": None}


def timed(fn, rounds: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of fn() over rounds."""
    walls, cpus = [], []
    for r in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        fn(r)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def page_runner(page: str | None, prompt: str, move_position: bool):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params["prompt"] = prompt
    at.run()                                   # warm: loads the model, fills caches
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    n = len(prompt)

    def rerun(r: int) -> None:
        if move_position:                      # a click on another token: what a learner does on the page
            at.query_params["pos"] = str((n - 1 - r) % n)
            at.session_state["_learner_place"]["pos"] = (n - 1 - r) % n
        at.run()
        assert not at.exception, [e.value for e in at.exception]
    return rerun


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)                   # as the app (explorer.ui.run_picker.limit_threads)
    os.environ.setdefault("GPT_EXPLORER_CHECKPOINTS", str(RUN.parent))
    run = load_run(RUN)
    ids = run.tokenizer.encode(PROMPT_128)
    labels = [display_token(run.tokenizer, i) for i in ids]

    def lines(_r: int) -> None:
        trace = attention_trace(run.model, ids)
        spec = line_view(trace.patterns[0], labels, list(range(run.config.n_head)), len(ids) - 1)
        json.dumps({k: v for k, v in spec.items() if k != "datasets"})
        for frame in spec["datasets"].values():   # what st.vega_lite_chart does with the rows
            dataframe_util.convert_anything_to_arrow_bytes(frame)

    results = {
        "landing page, 64 tokens": timed(page_runner(None, PROMPT_64, True), args.rounds),
        "line view, 128 tokens": timed(lines, args.rounds),
        "attention page, 128 tokens": timed(page_runner("views/attention.py", PROMPT_128, False), args.rounds),
    }
    print(f"{RUN.name}: {machine()}; {args.rounds} rounds, medians")
    for name, (wall, cpu) in results.items():
        goal = GOALS[name]
        verdict = "" if goal is None else f"  goal <= {goal} s: {'met' if cpu <= goal else 'MISSED'} (CPU)"
        print(f"  {name:28s} wall {wall:6.3f} s   CPU {cpu:6.3f} s{verdict}")
    print(f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
