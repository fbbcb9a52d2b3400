"""A config.json that does not match its weights even though every tensor shape does (n_head 2 -> 4 cuts the
same matrices into other heads: a silently different model). Every weights file the library writes carries
the model config in its safetensors metadata; loading compares it with config.json and names what differs,
in the library, the trainer's --resume and the app. Files without that metadata (older runs, other tools)
still load through the shape checks."""
from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from conftest import ROOT, checkpoints_env, open_page
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gpt import runs
from gpt import train as train_cli
from gpt.runs import RunError, load_run

N_HEAD_MESSAGE = "config.json says n_head=4 but the weights were trained with n_head=2"


@pytest.fixture
def run_copy(tmp_path, tiny_run) -> Path:
    path = tmp_path / "checkpoints" / "edited"
    shutil.copytree(tiny_run, path)
    return path


def metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def edit_model_config(run: Path, **changes) -> None:
    cfg = json.loads((run / runs.CONFIG).read_text())
    cfg["model"].update(changes)
    (run / runs.CONFIG).write_text(json.dumps(cfg))


def weight_files(run: Path) -> list[Path]:
    return [run / runs.WEIGHTS, run / runs.RESUME] + [runs.snapshot_path(run, s) for s in runs.list_snapshots(run)]


def test_every_weights_file_carries_the_config_it_was_trained_with(tiny_run):
    model_cfg = json.loads((tiny_run / runs.CONFIG).read_text())["model"]
    files = weight_files(tiny_run)
    assert len(files) >= 4  # latest, resume, and snapshots
    for path in files:
        assert json.loads(metadata(path)[runs.CONFIG_META]) == model_cfg, path.name
    run = load_run(tiny_run)  # and a normal run round-trips
    assert run.config.to_dict() == model_cfg and run.step == 60
    assert load_run(tiny_run, step=20).step == 20


def test_the_shipped_model_carries_its_config():
    shipped = ROOT / "checkpoints" / "shakespeare-char"
    model_cfg = json.loads((shipped / runs.CONFIG).read_text())["model"]
    files = [shipped / runs.WEIGHTS] + [runs.snapshot_path(shipped, s) for s in runs.list_snapshots(shipped)]
    for path in files:
        assert json.loads(metadata(path)[runs.CONFIG_META]) == model_cfg, path.name


@pytest.mark.parametrize("step", [None, 20])
def test_an_n_head_edit_is_refused_with_the_differing_field(run_copy, step):
    assert json.loads((run_copy / runs.CONFIG).read_text())["model"]["n_head"] == 2
    edit_model_config(run_copy, n_head=4)  # 32 % 4 == 0: a valid config, and every tensor shape still fits
    with pytest.raises(RunError, match=N_HEAD_MESSAGE):
        load_run(run_copy, step=step)


def test_every_differing_field_is_named_and_dropout_may_change(run_copy):
    edit_model_config(run_copy, n_head=4, activation="gelu_tanh", layer_norm_eps=1e-6)
    with pytest.raises(RunError) as refused:
        load_run(run_copy)
    message = str(refused.value)
    assert ('config.json says n_head=4, activation="gelu_tanh", layer_norm_eps=1e-06 but the weights were trained '
            'with n_head=2, activation="gelu", layer_norm_eps=1e-05') in message, message
    edit_model_config(run_copy, n_head=2, activation="gelu", layer_norm_eps=1e-5, dropout=0.2)
    assert load_run(run_copy).config.dropout == 0.2  # only acts in training: the weights compute the same


def test_resume_with_an_edited_config_is_refused_and_changes_nothing(run_copy, capsys):
    saved = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    edit_model_config(run_copy, n_head=4)
    before = {p: p.read_bytes() for p in weight_files(run_copy) + [run_copy / runs.METRICS, run_copy / runs.STATUS]}
    try:
        assert train_cli.main(["--out", str(run_copy), "--resume", "--quiet"]) == 2
    finally:
        signal.signal(signal.SIGTERM, saved[0])
        signal.signal(signal.SIGINT, saved[1])
    err = capsys.readouterr().err
    assert N_HEAD_MESSAGE in err and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in before} == before


def strip_metadata(path: Path) -> None:
    """The file as an older version of the library (or another tool) wrote it: tensors and a step only."""
    step = metadata(path).get("step", "0")
    save_file(load_file(str(path)), str(path), metadata={"step": step})


def test_an_older_file_without_the_config_still_loads_through_the_shape_checks(run_copy):
    strip_metadata(run_copy / runs.WEIGHTS)
    assert runs.CONFIG_META not in metadata(run_copy / runs.WEIGHTS)
    assert load_run(run_copy).step == 60
    edit_model_config(run_copy, n_embd=64)  # a shape change is still caught from the header
    with pytest.raises(RunError, match="does not match config.json: the file holds 2 layer"):
        load_run(run_copy)


def test_damaged_config_metadata_is_corrupt(run_copy):
    weights = run_copy / runs.WEIGHTS
    save_file(load_file(str(weights)), str(weights), metadata={"step": "60", runs.CONFIG_META: "{n_head: 2"})
    with pytest.raises(RunError, match="corrupt: its model_config metadata is not a JSON object"):
        load_run(run_copy)


# ---- in the app ----
def test_the_app_shows_the_mismatch_and_keeps_working(run_copy, fresh_caches):
    edit_model_config(run_copy, n_head=4)
    with checkpoints_env(run_copy.parent):
        at = open_page(run="edited")
        for page in ("generate", "attention"):
            at.switch_page(f"views/{page}.py")
            at.run()
            assert not at.exception, (page, [e.value for e in at.exception])
            warnings = [w.value for w in at.warning]
            assert any("Cannot load **edited**" in w and N_HEAD_MESSAGE in w for w in warnings), (page, warnings)
