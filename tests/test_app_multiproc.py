"""The Train page offers torchrun with N processes only where N > 1 devices exist, and jobs build that command."""
from __future__ import annotations

from pathlib import Path

from conftest import open_page

from explorer.jobs import training as jobs
from gpt.training import distributed


def test_train_command_uses_torchrun_for_several_processes():
    single = jobs.train_command(Path("/tmp/run"), {"max_iters": 5, "nproc": 1})
    assert single[1:3] == ["-m", "gpt.train"] and "--max-iters" in single and "--nproc" not in single
    multi = jobs.train_command(Path("/tmp/run"), {"max_iters": 5, "nproc": 2})
    assert multi[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert multi[5:7] == ["-m", "gpt.train"]
    assert multi[multi.index("--max-iters") + 1] == "5"


def test_app_trainers_leave_a_core_to_the_ui_on_small_machines():
    assert [jobs.trainer_threads(n) for n in (1, 2, 4, 8)] == [1, 1, 3, 8]
    cmd = jobs.train_command(Path("/tmp/run"), {"max_iters": 5})
    assert cmd[cmd.index("--threads") + 1] == str(jobs.trainer_threads())
    cmd = jobs.train_command(Path("/tmp/run"), {"max_iters": 5, "threads": 2})
    assert cmd[cmd.index("--threads") + 1] == "2"


def test_process_count_shown_only_with_several_devices(root, monkeypatch):
    at = open_page("train")
    assert not [n for n in at.number_input if n.key == "tf_nproc"]
    monkeypatch.setattr(distributed, "device_count", lambda: 4)
    at = open_page("train")
    [nproc] = [n for n in at.number_input if n.key == "tf_nproc"]
    assert nproc.value == 4 and nproc.max == 4
