"""DistributedDataParallel on CPU: 2 gloo processes under torchrun reproduce one process with the same global batch."""
import os
import subprocess

import pytest
import torch
from conftest import ROOT

from gpt import runs
from gpt.data import get_batch
from gpt.training import distributed

DDP_TRAIN = ("--arch", "gpt", "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
             "--eval-iters", "2", "--log-interval", "1", "--sample-tokens", "10", "--dtype", "float32", "--quiet",
             "--max-iters", "12", "--eval-interval", "6", "--grad-accum", "2", "--lr", "0.01",
             "--warmup-iters", "0", "--threads", "1")


def test_rank_slices_make_up_the_single_process_batch():
    data = torch.arange(1000)
    one = get_batch(data, 16, 8, torch.Generator().manual_seed(3))
    parts = [distributed.rank_batch(data, 16, 4, torch.Generator().manual_seed(3), "cpu", rank, 2)
             for rank in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), one[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), one[1])
    assert not torch.equal(parts[0][0], parts[1][0])  # each rank trains on different windows


def test_env_info_reads_torchrun_variables():
    assert distributed.env_info({}) == distributed.DistInfo(0, 0, 1)
    info = distributed.env_info({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (info.rank, info.local_rank, info.world_size, info.enabled, info.is_main) == (3, 1, 4, True, False)
    with pytest.raises(RuntimeError, match="inconsistent"):
        distributed.env_info({"RANK": "2", "WORLD_SIZE": "2"})


def test_launch_command():
    assert distributed.launch_command(["--out", "x"], 1, "py") == ["py", "-m", "gpt.train", "--out", "x"]
    cmd = distributed.launch_command(["--out", "x"], 2, "py")
    assert cmd[:3] == ["py", "-m", "torch.distributed.run"] and "--nproc_per_node=2" in cmd
    assert cmd[-4:] == ["-m", "gpt.train", "--out", "x"]
    with pytest.raises(ValueError):
        distributed.launch_command([], 0)


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = distributed.launch_command(list(args), nproc)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc


def curve(run_dir, key):
    return [(m["step"], m[key]) for m in runs.read_jsonl(run_dir / "metrics.jsonl") if key in m]


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_and_resume(tmp_path, corpus_file):
    from conftest import run_cli
    common = ("--corpus", str(corpus_file), *DDP_TRAIN)
    single = tmp_path / "single"
    run_cli("-m", "gpt.train", "--out", str(single), "--batch-size", "8", *common)
    # 2 ranks x batch 4 = the same global batch; stop halfway and resume to cover DDP resume too
    double = tmp_path / "double"
    torchrun("--out", str(double), "--batch-size", "4", "--stop-after", "6", *common)
    assert runs.read_status(double)["state"] == "stopped"
    torchrun("--out", str(double), "--resume", "--quiet")

    status = runs.read_status(double)
    assert status["state"] == "finished" and status["world_size"] == 2
    train_1, train_2 = curve(single, "train_loss"), curve(double, "train_loss")
    assert [s for s, _ in train_2] == list(range(1, 13))  # rank 0 alone logged: no duplicate rows
    assert [s for s, _ in train_1] == [s for s, _ in train_2]
    assert [v for _, v in train_2] == pytest.approx([v for _, v in train_1], abs=2e-4)
    assert train_1[-1][1] < train_1[0][1] - 0.1  # the curve moves, so matching it means something
    val_1, val_2 = curve(single, "val_loss"), curve(double, "val_loss")
    assert [s for s, _ in val_2] == [0, 6, 12]
    assert [v for _, v in val_2] == pytest.approx([v for _, v in val_1], abs=2e-4)
    assert [r["step"] for r in runs.read_jsonl(double / "samples.jsonl")] == [0, 6, 12]
    x = torch.randint(0, runs.load_run(single).config.vocab_size, (1, 16))
    logits_1 = runs.load_run(single).model(x)[0]
    logits_2 = runs.load_run(double).model(x)[0]
    # The claim is the loss curves above (within 2e-4 at every step). The final logits (|x| up to ~2) drift ~1e-3
    # apart after 12 optimizer steps under a different all-reduce order; on clean-clone full-suite runs the drift was
    # larger than 2e-3 at some entries (deterministically; not seen when the module runs alone), so this only guards
    # against a broken DDP, which moves them by O(0.1-1).
    assert torch.allclose(logits_1, logits_2, rtol=1e-2, atol=2e-2), float((logits_1 - logits_2).abs().max())
