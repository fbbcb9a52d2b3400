"""Models a transformers user already has: the local Hugging Face hub cache, read offline (nothing is downloaded).

The cache holds one folder per repository, `models--<owner>--<name>/`, with `refs/main` naming the revision and
`snapshots/<revision>/` holding the files (symlinks into `blobs/`). `resolve(repo_id)` gives that snapshot folder,
which gpt.hf.import_gpt2 reads like any GPT-2 folder; `gpt2_family()` lists what the cache holds of GPT-2's kind.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class HFCacheError(ValueError):
    """A repository the cache cannot give; the message says where it looked and how to get the model."""


def hub_cache_dir() -> Path:
    """HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub (huggingface_hub's own order)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def looks_like_repo_id(src: str) -> bool:
    """"gpt2" or "openai-community/gpt2": not an existing path, and shaped like a repository id."""
    return not Path(src).exists() and bool(REPO_ID.match(src)) and not src.startswith(".")


def how_to_get(repo_id: str, cache: Path) -> str:
    return (f"on a machine with network, run `python -c \"from huggingface_hub import snapshot_download; "
            f"snapshot_download('{repo_id}', allow_patterns=['*.json', '*.txt', '*.safetensors'])\"` and copy its "
            f"models--{repo_id.replace('/', '--')} folder into {cache}")


def resolve(repo_id: str, cache: Path | None = None) -> Path:
    """The snapshot folder of repo_id in the cache: the revision refs/main names, else the newest snapshot."""
    cache = cache or hub_cache_dir()
    if not REPO_ID.match(repo_id):
        raise HFCacheError(f"{repo_id!r} is not a repository id (like gpt2 or openai-community/gpt2)")
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    if not folder.is_dir():
        raise HFCacheError(f"{repo_id} is not in the Hugging Face cache ({cache}); nothing is downloaded here: "
                           + how_to_get(repo_id, cache))
    snapshots = folder / "snapshots"
    ref = folder / "refs" / "main"
    if ref.is_file():
        revision = ref.read_text(encoding="utf-8").strip()
        if (snapshots / revision).is_dir():
            return snapshots / revision
    found = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime) \
        if snapshots.is_dir() else []
    if not found:
        raise HFCacheError(f"{folder} has no snapshot (an interrupted download?): " + how_to_get(repo_id, cache))
    return found[-1]


def gpt2_family(cache: Path | None = None) -> list[tuple[str, Path]]:
    """[(repo id, snapshot folder)] of every cached model whose config.json says model_type "gpt2" (gpt2,
    distilgpt2, gpt2-medium...), by name; unreadable entries are skipped."""
    cache = cache or hub_cache_dir()
    out = []
    if not cache.is_dir():
        return out
    for folder in sorted(cache.glob("models--*")):
        repo_id = folder.name[len("models--"):].replace("--", "/")
        try:
            snapshot = resolve(repo_id, cache)
            config = json.loads((snapshot / "config.json").read_text(encoding="utf-8"))
        except (HFCacheError, OSError, ValueError):
            continue
        if config.get("model_type") == "gpt2":
            out.append((repo_id, snapshot))
    return out
