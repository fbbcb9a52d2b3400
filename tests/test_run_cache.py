"""gpt/runs/cached.py: reads kept per process must still see every change a writer makes (issue 30)."""
import json
import os
import shutil

import pytest

from gpt.runs import METRICS, STATUS, append_jsonl, atomic_write_json, atomic_write_text, cached, truncate_metrics


def test_metrics_rows_are_read_incrementally_and_follow_appends_torn_lines_and_rewrites(tmp_path):
    path = tmp_path / METRICS
    assert cached.read_jsonl_rows(path) == []
    for step in range(3):
        append_jsonl(path, {"step": step})
    assert [r["step"] for r in cached.read_jsonl_rows(path)] == [0, 1, 2]
    with open(path, "a") as f:            # a line being written: not parsed until complete
        f.write('{"step": 3, "val')
    assert [r["step"] for r in cached.read_jsonl_rows(path)] == [0, 1, 2]
    with open(path, "a") as f:
        f.write('_loss": 1.5}\n')
    rows = cached.read_jsonl_rows(path)
    assert rows[-1] == {"step": 3, "val_loss": 1.5}
    truncate_metrics(tmp_path, 1)          # a resume rewrites the file atomically (a new inode)
    assert [r["step"] for r in cached.read_jsonl_rows(path)] == [0, 1]
    path.write_text('{"step": 7}\n')       # rewritten in place, shorter
    assert [r["step"] for r in cached.read_jsonl_rows(path)] == [7]
    path.write_text('{"step": 8}\n')       # same size, rewritten in place: the mtime tells
    os.utime(path, ns=(1, 10**18))
    assert [r["step"] for r in cached.read_jsonl_rows(path)] == [8]
    path.unlink()
    assert cached.read_jsonl_rows(path) == []


def test_a_cached_json_file_is_read_again_when_replaced_and_callers_get_their_own_copy(tmp_path):
    path = tmp_path / "settings.json"
    assert cached.read_json(path, {}) == {}
    atomic_write_json(path, {"share_runs": False})
    first = cached.read_json(path, {})
    first["share_runs"] = True             # a caller changing its copy changes nothing for the next caller
    assert cached.read_json(path, {}) == {"share_runs": False}
    atomic_write_json(path, {"share_runs": True})
    assert cached.read_json(path, {}) == {"share_runs": True}
    atomic_write_text(path, "[1, 2]")      # not of the default's type: the default
    assert cached.read_json(path, {}) == {}
    atomic_write_text(path, "{damaged")
    assert cached.read_json(path, {"x": 1}) == {"x": 1}


@pytest.mark.slow   # the session's tiny run is trained on first use
def test_run_summary_follows_new_metrics_and_status(tiny_run, tmp_path):
    from gpt.runs import run_summary
    tiny_run = shutil.copytree(tiny_run, tmp_path / "run")   # the session's run is shared: change a copy
    before = run_summary(tiny_run)
    append_jsonl(tiny_run / METRICS, {"step": before.step + 5, "val_loss": 0.001})
    after = run_summary(tiny_run)
    assert after.step == before.step + 5 and after.best_val == 0.001
    status = json.loads((tiny_run / STATUS).read_text()) if (tiny_run / STATUS).exists() else {}
    atomic_write_json(tiny_run / STATUS, {**status, "state": "running", "pid": 999999999})
    assert run_summary(tiny_run).state == "orphaned"     # no such trainer: checked on every call
    atomic_write_json(tiny_run / STATUS, {**status, "state": "stopped"})
    assert run_summary(tiny_run).state == "stopped"
