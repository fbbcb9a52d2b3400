"""Run bundles: export/import round trip, hostile archives refused with nothing left behind, the offline report."""
import io
import json
import stat
import tarfile
import zipfile

import pytest
import torch

from explorer import launch, report
from explorer.report import report_html
from gpt import runs
from gpt.config import GPTConfig, TrainConfig
from gpt.model import GPT
from gpt.runs import bundle
from gpt.tokenizers import CharTokenizer, save_tokenizer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small run folder written directly (no training): weights, two snapshots, metrics and samples."""
    folder = tmp_path_factory.mktemp("runs") / "my-run"
    folder.mkdir()
    tok = CharTokenizer(list(" \nabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,:;!?'<>/&"))
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)
    torch.manual_seed(0)
    model = GPT(cfg)
    runs.write_config(folder, cfg, TrainConfig(max_iters=20), tokenizer="char", corpus="test")
    save_tokenizer(tok, folder / runs.TOKENIZER)
    (folder / runs.SNAPSHOTS).mkdir()
    for step in (0, 10):
        runs.atomic_save_model(model, runs.snapshot_path(folder, step), {"step": str(step)})
        with torch.no_grad():
            model.wte.weight.add_(0.01)
    runs.atomic_save_model(model, folder / runs.WEIGHTS, {"step": "20"})
    for step in (0, 10, 20):
        runs.append_jsonl(folder / runs.METRICS, {"step": step, "val_loss": 4.0 - step / 10, "eval_train_loss": 4.0})
        runs.append_jsonl(folder / runs.METRICS, {"step": step + 1, "train_loss": 3.9 - step / 10, "lr": 1e-3})
    runs.append_jsonl(folder / runs.SAMPLES, {"step": 20, "text": "To be </script><b>bold</b> & more"})
    (folder / runs.RESUME).write_bytes(b"optimizer state stays behind")
    return folder


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_round_trip(run_dir, tmp_path, suffix):
    archive = bundle.export_bundle(run_dir, tmp_path / f"b{suffix}")
    root = tmp_path / "checkpoints"
    imported = bundle.import_bundle(archive, root=root)
    assert imported == root / "my-run"
    original, back = files_of(run_dir), files_of(imported)
    for name in ("config.json", "tokenizer.json", "model.safetensors", "metrics.jsonl", "samples.jsonl",
                 "snapshots/step_0000000.safetensors", "snapshots/step_0000010.safetensors"):
        assert back[name] == original[name], name
    assert "resume.safetensors" not in back and "bundle.json" in back
    assert runs.read_status(imported)["state"] == "finished"
    assert runs.list_snapshots(imported) == [0, 10]
    assert [r.name for r in runs.list_runs(root)] == ["my-run"]
    again = bundle.import_bundle(archive, name="copy of run!", root=root)  # sanitised
    assert again.name == "copy-of-run"
    with pytest.raises(bundle.BundleError, match="already exists"):
        bundle.import_bundle(archive, root=root)
    assert sorted(p.name for p in root.iterdir()) == ["copy-of-run", "my-run"]  # no temp folders left


def test_export_without_snapshots_and_bad_names(run_dir, tmp_path):
    archive = bundle.export_bundle(run_dir, tmp_path / "b.zip", snapshots=False)
    assert not any(n.startswith("snapshots/") for n in zipfile.ZipFile(archive).namelist())
    with pytest.raises(bundle.BundleError, match=r"\.tar\.gz"):
        bundle.export_bundle(run_dir, tmp_path / "b.rar")
    with pytest.raises(runs.RunError):
        bundle.export_bundle(tmp_path, tmp_path / "c.zip")
    assert not (tmp_path / "c.zip").exists()


def good_members(run_dir, tmp_path):
    """(name, bytes) of a valid bundle, to be tampered with."""
    archive = bundle.export_bundle(run_dir, tmp_path / "good.tar.gz", snapshots=False)
    with tarfile.open(archive) as t:
        return [(m.name, t.extractfile(m).read()) for m in t.getmembers()]


def write_tar(path, members, extra=()):
    with tarfile.open(path, "w:gz") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for info in extra:
            t.addfile(info)
    return path


def special(name, kind, target=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


HOSTILE_TAR = {
    "parent": ([("../evil.json", b"{}")], (), "escape"),
    "nested parent": ([("snapshots/../../evil", b"x")], (), "escape"),
    "absolute": ([("/tmp/evil.json", b"{}")], (), "absolute"),
    "unexpected": ([("evil.py", b"import os")], (), "not part of a run bundle"),
    "symlink": ([], (special("model.safetensors", tarfile.SYMTYPE, "/etc/passwd"),), "link"),
    "hardlink": ([], (special("metrics.jsonl", tarfile.LNKTYPE, "config.json"),), "link"),
    "device": ([], (special("samples.jsonl", tarfile.CHRTYPE),), "not a regular file"),
    "fifo": ([], (special("samples.jsonl", tarfile.FIFOTYPE),), "not a regular file"),
    "duplicate": ([("config.json", b"{}")], (), "twice"),
}


@pytest.mark.parametrize("case", list(HOSTILE_TAR))
def test_hostile_tar_is_refused_and_leaves_nothing(run_dir, tmp_path, case):
    added, extra, message = HOSTILE_TAR[case]
    path = write_tar(tmp_path / "evil.tar.gz", good_members(run_dir, tmp_path) + added, extra)
    root = tmp_path / "checkpoints"
    with pytest.raises(bundle.BundleError, match=message):
        bundle.import_bundle(path, root=root)
    assert list(root.iterdir()) == []
    assert not (tmp_path / "evil.json").exists() and not (tmp_path / "evil").exists()


def write_zip(path, members, mode=None):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            if mode is not None and name == "samples.jsonl":
                info.external_attr = mode << 16
            z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return path


@pytest.mark.parametrize("case,extra,mode,message", [
    ("parent", [("../evil.json", b"{}")], None, "escape"),
    ("backslash", [("..\\evil.json", b"{}")], None, "escape"),
    ("unexpected", [("snapshots/evil.sh", b"rm")], None, "not part of a run bundle"),
    ("symlink", [("samples.jsonl", b"/etc/passwd")], stat.S_IFLNK | 0o777, "link"),
])
def test_hostile_zip_is_refused(run_dir, tmp_path, case, extra, mode, message):
    members = [(n, d) for n, d in good_members(run_dir, tmp_path) if n != "samples.jsonl" or not extra]
    path = write_zip(tmp_path / "evil.zip", members + extra, mode)
    root = tmp_path / "checkpoints"
    with pytest.raises(bundle.BundleError, match=message):
        bundle.import_bundle(path, root=root)
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_size_cap_stops_zip_bombs(run_dir, tmp_path, suffix):
    members = good_members(run_dir, tmp_path)
    bomb = [(n, d) for n, d in members if n != "samples.jsonl"] + [("samples.jsonl", b"\0" * 3_000_000)]
    path = (write_tar if suffix == ".tar.gz" else write_zip)(tmp_path / f"bomb{suffix}", bomb)
    assert path.stat().st_size < 100_000  # it compresses to almost nothing
    root = tmp_path / "checkpoints"
    with pytest.raises(bundle.BundleError, match="MB"):
        bundle.import_bundle(path, root=root, max_bytes=1_000_000)
    assert list(root.iterdir()) == []


def test_tampered_or_foreign_archives_are_refused(run_dir, tmp_path):
    members = good_members(run_dir, tmp_path)
    root = tmp_path / "checkpoints"
    tampered = [(n, d + b"\n" if n == "metrics.jsonl" else d) for n, d in members]
    with pytest.raises(bundle.BundleError, match="checksum"):
        bundle.import_bundle(write_tar(tmp_path / "t.tar.gz", tampered), root=root)
    unlisted = members + [("snapshots/step_0000099.safetensors", b"x")]
    with pytest.raises(bundle.BundleError, match="do not match"):
        bundle.import_bundle(write_tar(tmp_path / "u.tar.gz", unlisted), root=root)
    no_manifest = [(n, d) for n, d in members if n != "bundle.json"]
    with pytest.raises(bundle.BundleError, match="bundle.json"):
        bundle.import_bundle(write_tar(tmp_path / "m.tar.gz", no_manifest), root=root)
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive at all")
    with pytest.raises(bundle.BundleError, match="neither"):
        bundle.import_bundle(tmp_path / "junk.tar.gz", root=root)
    assert list(root.iterdir()) == []


def test_report_is_self_contained_and_escaped(run_dir):
    import plotly.offline
    page = report_html(run_dir)
    plotly_js = plotly.offline.get_plotlyjs()
    assert plotly_js in page  # embedded, not fetched
    rest = page.replace(plotly_js, "")
    assert "<script src" not in rest and "://" not in rest and "<link" not in rest
    assert "default-src 'none'" in rest  # the page itself forbids any network fetch
    assert page.count("Plotly.newPlot(") == 3  # loss, attention overview, head scores
    assert "L1H1" in page and "induction" in page
    assert "<h2>Why this token</h2>" in page and "all parts sum to the logit" in page  # DLA of the sample prompt
    assert "To be &lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; more" in page
    assert "</script><b>" not in rest  # neither in the samples nor in the figures' token labels


def test_cli(run_dir, tmp_path, capsys):
    archive = tmp_path / "b.tar.gz"
    assert bundle.main(["export", str(run_dir), str(archive)]) == 0
    root = tmp_path / "root"
    assert bundle.main(["import", str(archive), "--name", "shared", "--root", str(root)]) == 0
    assert runs.load_run(root / "shared").step == 20
    assert bundle.main(["import", str(archive), "--name", "shared", "--root", str(root)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert json.loads((root / "shared" / "bundle.json").read_text())["run_name"] == "my-run"


def test_report_command_writes_the_page_and_bundle_points_to_it(run_dir, tmp_path, capsys):
    """The HTML report is the app's command (gpt-report, or gpt-explorer report): the library's bundle export no
    longer writes it, and its old --html flag says where the report went instead of half-working."""
    html_path = tmp_path / "r.html"
    assert report.main([str(run_dir), "--out", str(html_path)]) == 0
    assert html_path.stat().st_size > 3_000_000 and "Plotly.newPlot(" in html_path.read_text()
    via_launcher = tmp_path / "launcher.html"
    assert launch.main(["report", str(run_dir), "--out", str(via_launcher)]) == 0
    assert via_launcher.read_text() == html_path.read_text()
    assert report.main([str(tmp_path / "no-such-run"), "--out", str(tmp_path / "x.html")]) == 2
    assert "is it a run folder" in capsys.readouterr().err and not (tmp_path / "x.html").exists()
    archive = tmp_path / "b.tar.gz"
    assert bundle.main(["export", str(run_dir), str(archive), "--html", str(tmp_path / "old.html")]) == 2
    assert "gpt-report" in capsys.readouterr().err and not archive.exists()
