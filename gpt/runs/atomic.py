"""Atomic file writes: write to a temporary name in the same folder, then rename into place.

Readers (the app, a resuming trainer) see the old file or the new one, never half of one; a crash leaves only a
temporary file, named `.tmp-<name>.<pid>` so runs.remove_stale_temp_files can tell whose it was.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import save_file, save_model

TMP_PREFIX = ".tmp-"


def temp_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")


def _test_pause() -> None:
    """Test hook: GPT_EXPLORER_TEST_SAVE_PAUSE=seconds sleeps between writing a weights temp file and renaming
    it, so tests/test_reliability.py can kill -9 the trainer inside that window deterministically."""
    pause = os.environ.get("GPT_EXPLORER_TEST_SAVE_PAUSE")
    if pause:
        time.sleep(float(pause))


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """`with replacing(path) as tmp:` write tmp; on success it replaces path, on any error it is removed."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1))


def save_module(module: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """A module's weights as safetensors (tied weights handled by safetensors' save_model)."""
    with replacing(path) as tmp:
        save_model(module, str(tmp), metadata=metadata)
        _test_pause()


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        _test_pause()
