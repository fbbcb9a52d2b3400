"""Offline: the shipped corpus needs no network, and every page works on the shipped model with outbound
connections refused and an empty cache folder."""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest
from conftest import ROOT, open_page, run_cli

from gpt import data


def refuse_network(monkeypatch) -> None:
    """Every outbound connection attempt raises, as on a machine without network."""
    def refused(*args, **kwargs):
        raise OSError("network is unreachable (test: outbound connections refused)")
    monkeypatch.setattr(socket.socket, "connect", refused)
    monkeypatch.setattr(socket.socket, "connect_ex", refused)
    monkeypatch.setattr(socket, "create_connection", refused)


def test_tiny_shakespeare_ships_in_the_package_and_is_checked(monkeypatch, tmp_path):
    refuse_network(monkeypatch)
    monkeypatch.setenv("GPT_EXPLORER_CACHE", str(tmp_path / "empty-cache"))
    data.tiny_shakespeare.cache_clear()
    text = data.tiny_shakespeare()
    assert len(text.encode("utf-8")) == 1_115_394
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == data.TINY_SHAKESPEARE_SHA256
    assert data.load_corpus("tiny-shakespeare")[0] == text
    packaged = ROOT / "gpt" / "corpora" / data.TINY_SHAKESPEARE_FILE
    assert packaged.stat().st_size < 600_000      # compressed: a few hundred KB in the repository
    assert not (tmp_path / "empty-cache").exists()  # nothing was written to (or needed from) a cache


@pytest.mark.slow
def test_an_installed_package_reads_tiny_shakespeare_offline(tmp_path):
    """The wheel `pip install` would build carries the corpus: built here (no build isolation, so no download),
    unpacked on its own and imported from outside the repository, it reads tiny Shakespeare with the network
    refused and an empty cache."""
    import shutil
    import zipfile
    source = tmp_path / "source"   # a copy: building writes build/ and *.egg-info next to pyproject.toml
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "checkpoints", "tests", "test-artifacts", "bench", "__pycache__", "*.egg-info", "build"))
    built = run_cli("-c", "import sys; from setuptools import build_meta; "
                          f"print(build_meta.build_wheel({str(tmp_path / 'dist')!r}))", cwd=source)
    wheel = tmp_path / "dist" / built.stdout.split()[-1]
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    read = run_cli("-c", "import hashlib, gpt.data as d; t = d.tiny_shakespeare().encode(); "
                         "print(d.__file__, len(t), hashlib.sha256(t).hexdigest() == d.TINY_SHAKESPEARE_SHA256)",
                   cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site), "GPT_EXPLORER_CACHE": str(tmp_path / "empty-cache")})
    module, size, checked = read.stdout.split()
    assert Path(module).is_relative_to(site)       # the installed copy, not the repository's
    assert (int(size), checked) == (1_115_394, "True")
    assert not (tmp_path / "empty-cache").exists()


def test_a_damaged_shipped_corpus_is_refused_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(data, "TINY_SHAKESPEARE_SHA256", "0" * 64)
    data.tiny_shakespeare.cache_clear()
    try:
        with pytest.raises(data.CorpusError, match="reinstall"):
            data.tiny_shakespeare()
    finally:
        monkeypatch.undo()
        data.tiny_shakespeare.cache_clear()


def test_cli_processes_of_the_suite_cannot_reach_the_network():
    """run_cli starts every command of the suite (the session's tiny_run is trained through it) with the offline
    guard: a connection beyond loopback or a DNS look-up fails at once, so a command that needed the network
    would fail its test."""
    probe = ("import socket\n"
             "for attempt in (lambda: socket.create_connection(('192.0.2.1', 80), timeout=5),\n"
             "                lambda: socket.getaddrinfo('huggingface.co', 443)):\n"
             "    try:\n"
             "        attempt()\n"
             "    except OSError as e:\n"
             "        print(e)\n")
    refused = run_cli("-c", probe).stdout.splitlines()
    assert len(refused) == 2 and all("offline test guard" in line for line in refused), refused
    served = run_cli("-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
                           "c = socket.create_connection(s.getsockname(), timeout=5); print('loopback ok')")
    assert served.stdout.strip() == "loopback ok"   # torch.distributed's rendezvous still works


@pytest.mark.slow
def test_the_sampling_command_works_offline(tiny_run, tmp_path):
    """The sampler under the offline guard with an empty cache (the trainer ran under it too: tiny_run)."""
    env = {**os.environ, "GPT_EXPLORER_CACHE": str(tmp_path / "empty-cache")}
    sample = run_cli("-m", "gpt.sample", str(tiny_run), "--prompt", "To be", "--max-new-tokens", "20", "--seed", "1",
                     env=env)
    assert sample.stdout.startswith("To be") and len(sample.stdout.rstrip("\n")) >= len("To be") + 20
    assert not (tmp_path / "empty-cache").exists()


def test_failed_and_half_created_runs_are_listed_with_their_error(tmp_path, tiny_run):
    import json
    import shutil

    from gpt import runs
    shutil.copytree(tiny_run, tmp_path / "good")
    no_config = tmp_path / "failed-start"      # the trainer refused its corpus before writing config.json
    no_config.mkdir()
    (no_config / "status.json").write_text(json.dumps({"state": "starting", "pid": 999999999, "updated_at": 0}))
    (no_config / "train.log").write_text("error: corpus 'x' is neither a built-in nor a file\n")
    no_weights = tmp_path / "no-weights"      # killed before its first checkpoint
    no_weights.mkdir()
    shutil.copy(tiny_run / "config.json", no_weights / "config.json")
    (no_weights / "status.json").write_text(json.dumps({"state": "failed", "error": "MemoryError: out of memory"}))
    (tmp_path / "not-a-run").mkdir()
    broken = {b.name: b.error for b in runs.broken_runs(tmp_path)}
    assert broken == {"failed-start": "corpus 'x' is neither a built-in nor a file",
                      "no-weights": "MemoryError: out of memory"}
    assert [r.name for r in runs.list_runs(tmp_path) if (r.path / "model.safetensors").exists()] == ["good"]


# ---- every page on the shipped model, offline, with an empty cache ----
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"
VIEWS = sorted(p.stem for p in (ROOT / "explorer" / "views").glob("*.py"))


@pytest.fixture
def offline_shipped(tmp_path, monkeypatch, fresh_caches):
    import shutil
    root = tmp_path / "checkpoints"
    shutil.copytree(SHIPPED, root / SHIPPED.name)
    monkeypatch.setenv("GPT_EXPLORER_CHECKPOINTS", str(root))
    monkeypatch.setenv("GPT_EXPLORER_CACHE", str(tmp_path / "empty-cache"))
    refuse_network(monkeypatch)
    data.tiny_shakespeare.cache_clear()
    return root


@pytest.mark.slow
def test_every_page_works_offline_on_the_shipped_model(offline_shipped):
    at = open_page(timeout=300)
    for view in VIEWS:
        at.switch_page(f"views/{view}.py").run()
        assert not at.exception, (view, [(e.message, e.stack_trace) for e in at.exception])
        assert not at.error, (view, [e.value for e in at.error])
        assert at.title, view   # the page drew its content, not only the sidebar
