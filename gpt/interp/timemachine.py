"""Time machine: replay a run through its weight snapshots.

Snapshots are listed afresh on every call, so a run that is still training shows each new snapshot as soon as
the trainer has renamed it into place (writes are atomic). Embedding projections are aligned across steps
with orthogonal Procrustes, so a token's point moves only as much as its embedding really changed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gpt import runs
from gpt.interp.detectors import DETECTORS, detector_grid, head_scores, strongest_head
from gpt.interp.embeddings import pca


def snapshot_steps(run_dir: str | Path) -> list[int]:
    """Steps with a snapshot, ascending (empty for a run without snapshots)."""
    return runs.list_snapshots(run_dir)


def load_step(run_dir: str | Path, step: int):
    """The run at a snapshot step, with a clear message when that snapshot does not exist."""
    steps = snapshot_steps(run_dir)
    if step not in steps:
        raise runs.RunError(f"{Path(run_dir).name} has no snapshot at step {step}; it has {steps or 'none'}")
    return runs.load_run(run_dir, step=step)


def scores_at(run_dir: str | Path, step: int, probe: torch.Tensor | None = None) -> torch.Tensor:
    """Detector scores (4, L, H) of the snapshot at step."""
    return head_scores(load_step(run_dir, step).model, probe).scores


@dataclass
class ScoreCurves:
    steps: list[int]
    scores: torch.Tensor  # (S, 4, L, H): detector scores at each snapshot step

    def curve(self, detector: str, layer: int, head: int) -> list[float]:
        return self.scores[:, DETECTORS.index(detector), layer, head].tolist()

    def best_curve(self, detector: str) -> tuple[int, int, list[float]]:
        """The head with the highest final score on a detector, and its curve."""
        layer, head, _ = strongest_head(detector_grid(self.scores[-1], detector))
        return layer, head, self.curve(detector, layer, head)


def score_curves(run_dir: str | Path, steps: list[int] | None = None, score_fn=None) -> ScoreCurves:
    """Head-detector scores at every snapshot (or the given steps). score_fn(run_dir, step) lets a caller
    cache per-step results (the app does); it defaults to `scores_at`."""
    score_fn = score_fn or scores_at
    steps = snapshot_steps(run_dir) if steps is None else list(steps)
    if not steps:
        raise runs.RunError(f"{Path(run_dir).name} has no snapshots yet")
    return ScoreCurves(steps, torch.stack([score_fn(run_dir, s) for s in steps]))


def loss_curve(run_dir: str | Path) -> tuple[list[int], list[float]]:
    """(steps, validation losses) from metrics.jsonl, as far as the run has got."""
    rows = [r for r in runs.read_jsonl(Path(run_dir) / runs.METRICS) if isinstance(r.get("val_loss"), (int, float))]
    return [r["step"] for r in rows], [r["val_loss"] for r in rows]


# ---- embeddings ----
def procrustes_rotation(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The orthogonal matrix R (rotation or reflection) minimising ||source @ R - target|| (Schoenemann 1966)."""
    u, _, vt = torch.linalg.svd(source.T @ target)
    return u @ vt


def aligned_projections(embeddings: list[torch.Tensor]) -> list[torch.Tensor]:
    """2-D projections of token embeddings at successive steps, each rotated onto the one after it.

    Working back from the last step keeps the final picture in its natural PCA orientation and makes each
    frame as close as an orthogonal map allows to its neighbour, so points move only when embeddings do."""
    if not embeddings:
        return []
    points = [torch.as_tensor(pca(e.float().numpy(), 2).points, dtype=torch.float32) for e in embeddings]
    for i in range(len(points) - 2, -1, -1):
        points[i] = points[i] @ procrustes_rotation(points[i], points[i + 1])
    return points


def embedding_frames(run_dir: str | Path, steps: list[int] | None = None) -> tuple[list[int], list[torch.Tensor]]:
    """(steps, aligned (V, 2) token-embedding projections) over the run's snapshots."""
    steps = snapshot_steps(run_dir) if steps is None else list(steps)
    if not steps:
        raise runs.RunError(f"{Path(run_dir).name} has no snapshots yet")
    weights = [load_step(run_dir, s).model.wte.weight.detach().float() for s in steps]
    return steps, aligned_projections(weights)
