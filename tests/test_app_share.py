"""The Import & export page: build an archive and an HTML report of the selected run; import a GPT-2 folder."""
from __future__ import annotations

import torch
from conftest import button, open_page

from gpt.runs import bundle, load_run


def text_input(at, label: str):
    return next(t for t in at.text_input if t.label == label)


def test_export_archive_and_report_then_reimport(root, tmp_path):
    at = open_page("share")
    button(at, "Build archive (.tar.gz)").click().run()
    assert not at.exception, [e.message for e in at.exception]
    downloads = at.get("download_button")
    assert any("tiny.tar.gz" in d.proto.label for d in downloads)
    name, data = at.session_state["share_archive"]
    archive = tmp_path / name
    archive.write_bytes(data)
    again = bundle.import_bundle(archive, name="tiny-again", root=root)
    assert load_run(again).step == load_run(root / "tiny").step

    button(at, "Build HTML report").click().run()
    assert not at.exception
    _, page = at.session_state["share_report"]
    assert page.startswith(b"<!DOCTYPE html>") and b"Plotly.newPlot" in page
    assert b"<script src=" not in page  # plotly.js is embedded: the report opens offline


def test_gpt2_export_then_import_roundtrip(root):
    at = open_page("share")
    out_dir = root / "exports" / "tiny-gpt2"
    button(at, f"Export tiny to {out_dir}").click().run()
    assert not at.exception
    assert (out_dir / "model.safetensors").exists() and (out_dir / "config.json").exists()
    text_input(at, "Folder on this machine").input(str(out_dir))
    text_input(at, "Run name").input("tiny-from-gpt2").run()
    button(at, "Import GPT-2").click().run()
    assert not at.exception, [e.message for e in at.exception]
    errors = [e.value for e in at.error]
    assert not errors, errors
    original, imported = load_run(root / "tiny"), load_run(root / "tiny-from-gpt2")
    assert imported.tokenizer.vocab() == original.tokenizer.vocab()  # a char run comes back as a char run
    ids = torch.tensor([original.tokenizer.encode("the ")])
    assert torch.allclose(imported.model(ids)[0], original.model(ids)[0], atol=1e-5)


def test_refuses_a_folder_that_is_not_gpt2(root, tmp_path):
    at = open_page("share")
    text_input(at, "Folder on this machine").input(str(tmp_path)).run()
    button(at, "Import GPT-2").click().run()
    assert not at.exception
    assert any("Could not import" in e.value for e in at.error)
    assert not (root / "gpt2-import").exists()
