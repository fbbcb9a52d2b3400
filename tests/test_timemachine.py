import math
import shutil

import pytest
import torch

from gpt import runs
from gpt.interp.detectors import DETECTORS
from gpt.interp.timemachine import (
    aligned_projections,
    embedding_frames,
    loss_curve,
    procrustes_rotation,
    score_curves,
    snapshot_steps,
)


def test_procrustes_recovers_a_rotation_and_reflection():
    torch.manual_seed(0)
    target = torch.randn(30, 2)
    angle = 1.1
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    flip = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    source = target @ (rot @ flip).T
    R = procrustes_rotation(source, target)
    assert torch.allclose(source @ R, target, atol=1e-5)
    assert torch.allclose(R @ R.T, torch.eye(2), atol=1e-5)


def test_aligned_projections_do_not_jump_when_embeddings_barely_change():
    torch.manual_seed(0)
    base = torch.randn(40, 16) * torch.linspace(3, 0.1, 16)  # clear main directions
    frames = [base + 0.01 * torch.randn(40, 16) for _ in range(3)]
    frames.append(-base)  # a sign flip of everything: PCA may flip axes, alignment must undo it
    points = aligned_projections(frames)
    assert len(points) == 4 and all(p.shape == (40, 2) for p in points)
    for a, b in zip(points, points[1:]):
        assert (a - b).norm(dim=1).max() < 0.1 * a.norm(dim=1).mean()


def test_curves_and_frames_over_a_real_run(tiny_run):
    steps = snapshot_steps(tiny_run)
    assert steps == [0, 20, 40, 60]
    curves = score_curves(tiny_run)
    assert curves.steps == steps and curves.scores.shape == (4, 4, 2, 2)
    layer, head, curve = curves.best_curve("induction")
    final = curves.scores[-1, DETECTORS.index("induction")]  # (L, H) at the last snapshot
    assert float(final[layer, head]) == float(final.max())  # the best head is the strongest at the end ...
    assert curve == curves.scores[:, DETECTORS.index("induction"), layer, head].tolist()  # ... followed back
    loss_steps, losses = loss_curve(tiny_run)
    assert loss_steps == steps and losses[-1] < losses[0]
    frame_steps, frames = embedding_frames(tiny_run, [0, 60])
    assert frame_steps == [0, 60] and frames[0].shape == (runs.load_run(tiny_run).config.vocab_size, 2)


def test_a_run_still_training_shows_the_snapshots_it_has(tmp_path, tiny_run):
    """Copy a run as if training had only reached step 20; a new snapshot appears on the next call."""
    partial = tmp_path / "partial"
    shutil.copytree(tiny_run, partial)
    for step in (40, 60):
        runs.snapshot_path(partial, step).unlink()
    assert snapshot_steps(partial) == [0, 20]
    assert score_curves(partial).steps == [0, 20]
    shutil.copy(runs.snapshot_path(tiny_run, 40), runs.snapshot_path(partial, 40))
    assert score_curves(partial).steps == [0, 20, 40]
    with pytest.raises(runs.RunError, match="no snapshot at step 60"):
        score_curves(partial, [60])


def test_a_run_without_snapshots_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(runs.RunError, match="no snapshots"):
        score_curves(tmp_path / "empty")
