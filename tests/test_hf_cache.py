"""GPT-2 from the local Hugging Face cache, offline (gpt/hf/cache.py), and the refusals of gpt.hf.gpt2's import: a
pickle, a truncated or disagreeing folder, another architecture, an entry without a snapshot. A refused import
leaves nothing behind."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from gpt2_support import fake_hf_cache, gpt2_tokenizer, write_gpt2_folder

from gpt import runs
from gpt.hf import cache as hf_cache
from gpt.hf import gpt2 as hf


@pytest.fixture(scope="module")
def folder(tmp_path_factory, corpus_text):
    return write_gpt2_folder(tmp_path_factory.mktemp("hf") / "gpt2", gpt2_tokenizer(corpus_text[:20_000], 280),
                             block_size=64)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    return path


def copy_of(folder, tmp_path, name="copy"):
    out = tmp_path / name
    shutil.copytree(folder, out)
    return out


def nothing_imported(root) -> bool:
    return not root.exists() or not any(root.iterdir())


def test_the_cache_location_follows_huggingface_hubs_variables(monkeypatch, tmp_path):
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hf_cache.hub_cache_dir() == tmp_path / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hf_cache.hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf_cache.hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hf_cache.hub_cache_dir() == tmp_path / "hub"


def test_a_repo_id_resolves_to_the_revision_refs_main_names(folder, cache):
    old = fake_hf_cache(cache, "gpt2", folder, revision="a" * 40)
    new = fake_hf_cache(cache, "gpt2", folder, revision="b" * 40, ref=False)
    os.utime(new, (1, 1))                                    # refs/main names the older-looking one: it wins
    (cache / "models--gpt2" / "refs" / "main").write_text("a" * 40)
    assert hf_cache.resolve("gpt2") == old
    (cache / "models--gpt2" / "refs" / "main").unlink()      # no ref: the newest snapshot
    os.utime(new, None)
    assert hf_cache.resolve("gpt2") == new
    org = fake_hf_cache(cache, "openai-community/gpt2", folder)
    assert hf_cache.resolve("openai-community/gpt2") == org


def test_import_by_repo_id_reads_the_cached_snapshot(folder, cache, tmp_path, capsys):
    fake_hf_cache(cache, "gpt2", folder)
    out = tmp_path / "checkpoints" / "gpt2"
    assert hf.main(["import", "gpt2", str(out)]) == 0
    run = runs.load_run(out)
    model, _, _ = hf.load_gpt2(folder)
    ids = torch.tensor([[1, 5, 9, 200]])
    assert torch.allclose(run.model(ids)[0], model(ids)[0], atol=1e-5)
    config = json.loads((out / "config.json").read_text())
    assert config["hf_repo"] == "gpt2" and "models--gpt2/snapshots" in config["imported_from"]


def test_a_model_not_in_the_cache_says_how_to_get_it_and_nothing_is_downloaded(cache, tmp_path, capsys):
    assert hf.main(["import", "gpt2-medium", str(tmp_path / "ck" / "m")]) == 2
    err = capsys.readouterr().err
    assert "'gpt2-medium' is not in the Hugging Face cache" in err and "huggingface-cli download gpt2-medium" in err
    assert nothing_imported(tmp_path / "ck")


def test_a_cache_entry_without_a_snapshot_is_named(cache, tmp_path):
    fake_hf_cache(cache, "distilgpt2", None)
    with pytest.raises(hf.HFError, match=r"models--distilgpt2 has no snapshot"):
        hf.import_gpt2("distilgpt2", tmp_path / "ck" / "d")
    assert nothing_imported(tmp_path / "ck")


def test_the_cache_listing_shows_the_gpt2_family_and_what_is_wrong(folder, cache, tmp_path):
    fake_hf_cache(cache, "gpt2", folder)
    fake_hf_cache(cache, "distilgpt2", None)
    pickled = copy_of(folder, tmp_path, "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    fake_hf_cache(cache, "someone/my-gpt2", pickled)
    bert = copy_of(folder, tmp_path, "bert")
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    fake_hf_cache(cache, "bert-base-uncased", bert)
    listed = {m.repo_id: m for m in hf_cache.cached_models()}
    assert set(listed) == {"gpt2", "distilgpt2", "someone/my-gpt2"}
    assert listed["gpt2"].problem is None
    assert "no snapshot" in listed["distilgpt2"].problem
    assert "pickle" in listed["someone/my-gpt2"].problem


def test_a_pickle_only_folder_is_refused_with_the_reason_and_the_conversion(folder, tmp_path):
    pickled = copy_of(folder, tmp_path)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not read")
    with pytest.raises(hf.HFError) as e:
        hf.import_gpt2(pickled, tmp_path / "ck" / "p")
    message = str(e.value)
    assert "pytorch_model.bin" in message and "can run any code" in message
    assert "save_pretrained(" in message and "from_pretrained(" in message
    assert nothing_imported(tmp_path / "ck")


@pytest.mark.parametrize("damage, named", [
    ("truncate", "model.safetensors"), ("vocab", "vocab.json has"), ("arch", "config.json describes a 'llama'"),
    ("shape", "model.safetensors does not match config.json")])
def test_a_damaged_folder_is_refused_naming_the_file_and_nothing_is_half_imported(folder, tmp_path, damage, named):
    bad = copy_of(folder, tmp_path)
    config = json.loads((bad / "config.json").read_text())
    if damage == "truncate":
        data = (bad / "model.safetensors").read_bytes()
        (bad / "model.safetensors").write_bytes(data[:len(data) // 2])
    elif damage == "vocab":
        config["vocab_size"] += 7
    elif damage == "arch":
        config["model_type"] = "llama"
    else:
        config["n_embd"], config["n_head"] = 48, 4
    (bad / "config.json").write_text(json.dumps(config))
    root = tmp_path / "ck"
    with pytest.raises(hf.HFError, match=named):
        hf.import_gpt2(bad, root / "bad")
    assert nothing_imported(root) and runs.list_runs(root) == []


def test_an_import_that_fails_while_writing_leaves_nothing(folder, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(runs, "atomic_save_model", disk_full)
    root = tmp_path / "ck"
    with pytest.raises(hf.HFError, match="No space left on device; nothing was imported"):
        hf.import_gpt2(folder, root / "full")
    assert nothing_imported(root)
