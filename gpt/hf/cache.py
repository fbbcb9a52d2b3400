"""GPT-2 models already in the local Hugging Face cache, found offline (nothing is ever downloaded here).

huggingface_hub keeps a repo as

    $HF_HUB_CACHE/models--ORG--NAME/refs/main          the revision (commit hash) `main` pointed at when downloaded
    $HF_HUB_CACHE/models--ORG--NAME/snapshots/REV/     the files of that revision (links into ../../blobs/)

and the cache is HF_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub (~/.cache/huggingface/hub).
`resolve("gpt2")` gives the snapshot folder that refs/main names (else the newest one), which gpt.hf.gpt2 imports like
any GPT-2 folder.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gpt.hf.files import HF_CONFIG, HF_WEIGHTS, PICKLE_WEIGHTS, HFError, pickle_refusal

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# the GPT-2 family on the Hub (bare names are the old aliases of the openai-community/ and distilbert/ repos)
GPT2_FAMILY = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2", "openai-community/gpt2",
               "openai-community/gpt2-medium", "openai-community/gpt2-large", "openai-community/gpt2-xl",
               "distilbert/distilgpt2")


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloaded repos, by its own rules (its environment variables first)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def is_repo_id(text: str) -> bool:
    """True for "gpt2" or "openai-community/gpt2" that is not also a folder here (a folder always wins)."""
    return bool(REPO_ID.match(text)) and not Path(text).exists()


def entry_dir(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def how_to_get(repo_id: str) -> str:
    return (f"on a machine with internet, `huggingface-cli download {repo_id} config.json model.safetensors "
            f"vocab.json merges.txt` puts it in the cache (then copy ~/.cache/huggingface/hub here, or point "
            f"HF_HUB_CACHE at it); or import any local folder that holds those four files")


def resolve(repo_id: str, cache: Path | None = None) -> Path:
    """The snapshot folder of repo_id in the cache: the revision refs/main names, else the newest snapshot. Raises
    HFError naming what is missing (the repo, or any snapshot of it) and how to get it."""
    cache = cache or hub_cache_dir()
    entry = entry_dir(repo_id, cache)
    if not entry.is_dir():
        raise HFError(f"{repo_id!r} is not in the Hugging Face cache ({cache}); nothing is downloaded here: "
                      + how_to_get(repo_id))
    snapshots = entry / "snapshots"
    found = [p for p in snapshots.iterdir() if p.is_dir()] if snapshots.is_dir() else []
    if not found:
        raise HFError(f"{entry} has no snapshot ({snapshots.name}/ is missing or empty: an interrupted download?); "
                      + how_to_get(repo_id))
    try:
        revision = (entry / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        revision = ""
    named = snapshots / revision if revision and "/" not in revision else None
    if named is not None and named.is_dir():
        return named
    return max(found, key=lambda p: p.stat().st_mtime)   # no usable refs/main: the newest download


@dataclass(frozen=True)
class CachedModel:
    repo_id: str
    snapshot: Path | None     # None when the entry has no snapshot
    problem: str | None       # why it cannot be imported as it is, or None


def cached_models(cache: Path | None = None) -> list[CachedModel]:
    """Every GPT-2-family model in the cache (a name of GPT2_FAMILY, or a config.json with model_type "gpt2"), with
    what is wrong with it, if anything; sorted by name."""
    cache = cache or hub_cache_dir()
    if not cache.is_dir():
        return []
    found = []
    for entry in sorted(cache.glob("models--*")):
        repo_id = entry.name.removeprefix("models--").replace("--", "/")
        try:
            snapshot = resolve(repo_id, cache)
        except (HFError, OSError) as e:
            if repo_id in GPT2_FAMILY:
                found.append(CachedModel(repo_id, None, str(e)))
            continue
        try:
            model_type = json.loads((snapshot / HF_CONFIG).read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            model_type = None
        if model_type != "gpt2" and repo_id not in GPT2_FAMILY:
            continue
        found.append(CachedModel(repo_id, snapshot, weights_problem(snapshot)))
    return found


def weights_problem(folder: Path) -> str | None:
    """Why a folder's weights cannot be read safely, or None when model.safetensors is there."""
    if (folder / HF_WEIGHTS).is_file():
        return None
    if (folder / PICKLE_WEIGHTS).exists():
        return pickle_refusal(folder)
    return f"{folder} has no {HF_WEIGHTS}"
