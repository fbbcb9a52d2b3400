"""Hyperparameter sweeps with seeds: the plan (which runs), and the results (final validation loss per setting,
mean and spread over seeds, Welch's t-test between two settings). Starting the runs under the app's job limit is
explorer/jobs/sweeps.py's job; this module only computes.

A sweep is stored as a manifest, checkpoints/.sweeps/<name>.json: {"name", "params": {hyperparameter: [values]},
"seeds": [...], "base": {gpt.train options}, "runs": [{"run", "values": {hyperparameter: value}, "seed",
"state": pending | started | failed, "error"}], "runner_pid"}. Each run is an ordinary run folder.
"""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from gpt import runs
from gpt.lab.stats import mean_std, welch_t_test

SWEEPS_DIR = ".sweeps"
# what a sweep may vary: the gpt.train option and the type of its values
SWEEPABLE = {"lr": float, "weight_decay": float, "dropout": float, "batch_size": int, "max_iters": int,
             "warmup_iters": int, "n_layer": int, "n_head": int, "n_embd": int, "block_size": int}
MAX_RUNS = 48


class SweepError(ValueError):
    """A sweep that cannot be planned or read; the message says what to change."""


def parse_values(name: str, text: str) -> list:
    """'1e-3, 3e-3' -> [0.001, 0.003] for a sweepable hyperparameter; clear messages for anything else."""
    if name not in SWEEPABLE:
        raise SweepError(f"{name!r} cannot be swept; choose one of {', '.join(SWEEPABLE)}")
    kind = SWEEPABLE[name]
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    if not parts:
        raise SweepError(f"give at least one value for {name}, separated by commas")
    values = []
    for part in parts:
        try:
            value = kind(float(part)) if kind is int and float(part).is_integer() else kind(part)
        except ValueError:
            raise SweepError(f"{part!r} is not a valid {'whole number' if kind is int else 'number'} for {name}") from None
        if value in values:
            raise SweepError(f"{name} lists {part} twice")
        values.append(value)
    return values


def format_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class PlannedRun:
    run: str
    values: dict
    seed: int


def plan(name: str, params: dict[str, list], seeds: list[int]) -> list[PlannedRun]:
    """Every combination of the values of one or two hyperparameters, times every seed."""
    name = runs.sanitize_run_name(name)
    if not 1 <= len(params) <= 2:
        raise SweepError("a sweep varies one or two hyperparameters")
    if not seeds or len(set(seeds)) != len(seeds):
        raise SweepError("give one or more distinct seeds")
    for key, values in params.items():
        if key not in SWEEPABLE:
            raise SweepError(f"{key!r} cannot be swept; choose one of {', '.join(SWEEPABLE)}")
        if not values:
            raise SweepError(f"give at least one value for {key}")
    combos = list(itertools.product(*params.values()))
    if len(combos) * len(seeds) > MAX_RUNS:
        raise SweepError(f"{len(combos)} settings x {len(seeds)} seeds = {len(combos) * len(seeds)} runs; "
                         f"the limit is {MAX_RUNS}: drop values or seeds")
    planned = []
    for combo in combos:
        values = dict(zip(params, combo))
        tag = "-".join(f"{k}{format_value(v)}" for k, v in values.items())
        for seed in seeds:
            planned.append(PlannedRun(runs.sanitize_run_name(f"{name}-{tag}-s{seed}"), values, seed))
    return planned


def manifest_path(name: str, root: str | Path | None = None) -> Path:
    return Path(root or runs.checkpoints_root()) / SWEEPS_DIR / f"{runs.sanitize_run_name(name)}.json"


def read_manifest(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SweepError(f"cannot read the sweep {Path(path).name}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or not isinstance(data.get("params"), dict):
        raise SweepError(f"{Path(path).name} is not a sweep manifest")
    return data


def list_sweeps(root: str | Path | None = None) -> list[Path]:
    folder = Path(root or runs.checkpoints_root()) / SWEEPS_DIR
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)


def final_val_loss(run_dir: str | Path) -> float | None:
    """The validation loss of the run's last evaluation (None before its first)."""
    rows = [r for r in runs.read_jsonl(Path(run_dir) / runs.METRICS) if isinstance(r.get("val_loss"), (int, float))]
    return float(rows[-1]["val_loss"]) if rows else None


@dataclass
class SettingResult:
    values: dict          # hyperparameter -> value
    losses: list[float]   # final validation loss of each finished seed
    seeds: list[int]
    mean: float | None
    std: float | None

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={format_value(v)}" for k, v in self.values.items())


def sweep_results(manifest: dict, root: str | Path | None = None) -> list[SettingResult]:
    """Per setting (in plan order): the final validation losses of its finished runs, their mean and spread."""
    root = Path(root or runs.checkpoints_root())
    grouped: dict[str, SettingResult] = {}
    for entry in manifest["runs"]:
        key = json.dumps(entry["values"], sort_keys=True)
        res = grouped.setdefault(key, SettingResult(dict(entry["values"]), [], [], None, None))
        run_dir = root / entry["run"]
        if runs.read_status(run_dir).get("state") != "finished":
            continue
        loss = final_val_loss(run_dir)
        if loss is not None:
            res.losses.append(loss)
            res.seeds.append(entry["seed"])
    for res in grouped.values():
        if res.losses:
            res.mean, res.std = mean_std(res.losses)
    return list(grouped.values())


def compare(a: SettingResult, b: SettingResult):
    """Welch's t-test of two settings' final validation losses (SweepError with fewer than 2 seeds each)."""
    try:
        return welch_t_test(a.losses, b.losses)
    except ValueError as e:
        raise SweepError(str(e)) from e
