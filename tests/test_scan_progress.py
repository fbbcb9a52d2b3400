"""The long scans report progress and can be stopped (issue 21): MLP top contexts, a dictionary's feature cards and
the patching grids call progress(fraction) after every batch, rising to 1.0; an exception raised from progress (what
Streamlit does when the learner presses Stop) ends the scan, and the cached variants then write nothing."""
from __future__ import annotations

import pytest
import torch
from model_support import model_and_text, model_for, pair, random_dictionary, tiny_model

from gpt.interp.features.cards import cached_scan, is_card_scanned, scan_features
from gpt.interp.features.dictionary import LoadedDictionary
from gpt.interp.neurons import cache_path, cached_top_contexts, top_contexts
from gpt.interp.patching import patch_heads, patch_residual


class Stop(Exception):
    """Stands in for Streamlit's StopException (raised from the progress bar's update)."""


def recorder(stop_after: int | None = None):
    seen = []

    def progress(fraction):
        seen.append(fraction)
        if stop_after is not None and len(seen) >= stop_after:
            raise Stop
    return seen, progress


def check_rises_to_one(seen, batches):
    assert len(seen) == batches, seen
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and 0 < seen[0] < 1


def test_neuron_scan_reports_each_batch_and_a_stopped_one_writes_nothing(tmp_path, monkeypatch):
    import gpt.interp.neurons as neurons
    monkeypatch.setattr(neurons, "TOKENS_PER_BATCH", 32 * 8)
    model, seq = model_and_text()          # 40 windows of 8 tokens and a last one of 3
    seen, progress = recorder()
    with_progress = top_contexts(model, seq, k=3, progress=progress)
    check_rises_to_one(seen, 3)            # 32 windows per batch: two batches, then the shorter last window
    assert torch.equal(with_progress.positions, top_contexts(model, seq, k=3).positions)

    class Run:
        path, step, config = tmp_path, 3, model.config
    Run.model = model
    seen, stop = recorder(stop_after=1)
    with pytest.raises(Stop):
        cached_top_contexts(Run, seq, progress=stop)
    assert seen == [pytest.approx(32 * 8 / len(seq))] and not cache_path(tmp_path, 3, seq).exists()


def test_feature_card_scan_reports_progress_and_a_stopped_one_writes_nothing(tmp_path):
    model = tiny_model()
    seq = torch.randint(0, 12, (16 * 70 + 5,), generator=torch.Generator().manual_seed(2))
    loaded = LoadedDictionary("d", tmp_path, random_dictionary().config, random_dictionary(), None)
    seen, progress = recorder()
    scan = scan_features(model, loaded.module, seq, progress=progress)
    check_rises_to_one(seen, 4)            # 70 windows in batches of 32 (3), then the 4-token tail
    assert torch.equal(scan.density, scan_features(model, loaded.module, seq).density)
    with pytest.raises(Stop):
        cached_scan(model, loaded, seq, progress=recorder(stop_after=2)[1])
    assert not is_card_scanned(loaded, seq)
    cached_scan(model, loaded, seq)
    assert is_card_scanned(loaded, seq)


def test_patching_reports_progress_and_stops():
    model = model_for("gpt")
    clean, corrupted = pair()
    seen, progress = recorder()
    grid = patch_residual(model, clean, corrupted, 3, 7, progress=progress)
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    assert torch.equal(grid, patch_residual(model, clean, corrupted, 3, 7))
    with pytest.raises(Stop):
        patch_heads(model, clean, corrupted, 3, 7, progress=recorder(stop_after=1)[1])
