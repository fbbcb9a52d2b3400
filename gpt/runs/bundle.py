"""Offline, shareable run bundles: one archive per run and a careful import.

    python -m gpt.runs.bundle export RUN_DIR OUT.tar.gz|OUT.zip [--no-snapshots]
    python -m gpt.runs.bundle import ARCHIVE [--name NAME]

The run's offline HTML report is the app's (its figures are): `gpt-report RUN_DIR --out report.html`.

An archive holds the run's config.json, tokenizer.json, model.safetensors, metrics.jsonl, samples.jsonl and
snapshots/step_NNNNNNN.safetensors at its top level, plus bundle.json: each file's size and sha256. The optimizer
state (resume.safetensors) and status.json stay behind: a bundle is for looking at, or fine-tuning from.

Import treats an archive as hostile: only regular files with exactly the expected names are accepted (no paths
that escape, no absolute paths, links or device files), the uncompressed total is capped while streaming (zip
bombs), every file must match bundle.json, and the run must load before it is moved into checkpoints/.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import time
import uuid
import zipfile
from pathlib import Path

from gpt import runs
from gpt.runs import atomic

MANIFEST = "bundle.json"
FORMAT = "gpt-explorer-bundle"
RUN_FILES = (runs.CONFIG, runs.TOKENIZER, runs.WEIGHTS, runs.METRICS, runs.SAMPLES)
REQUIRED = (runs.CONFIG, runs.TOKENIZER, runs.WEIGHTS, MANIFEST)
ALLOWED_NAME = re.compile(r"^(config\.json|tokenizer\.json|model\.safetensors|metrics\.jsonl|samples\.jsonl|"
                          r"bundle\.json|snapshots/step_\d{7}\.safetensors)$")
MAX_BUNDLE_BYTES = 4 * 2**30  # uncompressed total; a GPT-2 small run with a few snapshots fits
MAX_MEMBERS = 10_000
CHUNK = 1 << 20


class BundleError(ValueError):
    """An archive that cannot be written or imported; the message says why. Nothing is left behind."""


# ---- export ----
def bundle_files(run_dir: Path, snapshots: bool = True) -> list[str]:
    """Archive names of the run's files that go into a bundle, in a stable order."""
    names = [n for n in RUN_FILES if (run_dir / n).is_file()]
    missing = [n for n in (runs.CONFIG, runs.TOKENIZER, runs.WEIGHTS) if n not in names]
    if missing:
        raise BundleError(f"{run_dir} lacks {', '.join(missing)}; is it a run folder with saved weights?")
    if snapshots:
        names += [f"{runs.SNAPSHOTS}/{runs.snapshot_path(run_dir, s).name}" for s in runs.list_snapshots(run_dir)]
    return names


def archive_kind(path: str | Path) -> str:
    name = str(path).lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise BundleError(f"{path}: the archive name must end in .tar.gz, .tgz or .zip")


def export_bundle(run_dir: str | Path, out: str | Path, snapshots: bool = True) -> Path:
    """Write the run as one archive (written to a temporary name, then renamed into place)."""
    run_dir, out = Path(run_dir), Path(out)
    kind = archive_kind(out)
    runs.read_config(run_dir)  # a clear error for a folder that is not a run
    names = bundle_files(run_dir, snapshots)
    manifest = {"format": FORMAT, "version": 1, "run_name": run_dir.resolve().name, "created_at": time.time(),
                "files": {}}
    with atomic.replacing(out) as tmp:
        with _ArchiveWriter(tmp, kind) as writer:
            for name in names:
                # one open handle: hash and copy the same bytes even if the trainer replaces the file meanwhile
                with open(run_dir / name, "rb") as f:
                    digest, size = _hash_stream(f)
                    f.seek(0)
                    writer.add(name, f, size)
                manifest["files"][name] = {"size": size, "sha256": digest}
            data = json.dumps(manifest, indent=1).encode()
            writer.add(MANIFEST, io.BytesIO(data), len(data))
    return out


class _ArchiveWriter:
    def __init__(self, path: Path, kind: str):
        self.kind = kind
        self.archive = tarfile.open(path, "w:gz") if kind == "tar" else \
            zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)

    def add(self, name: str, f, size: int) -> None:
        if self.kind == "tar":
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, int(time.time())
            self.archive.addfile(info, f)
        else:
            info = zipfile.ZipInfo(name, time.localtime()[:6])
            info.external_attr = (stat.S_IFREG | 0o644) << 16  # a regular file, as import insists
            info.compress_type = zipfile.ZIP_DEFLATED
            with self.archive.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(f, dst, CHUNK)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.archive.close()


def _hash_stream(f) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    while chunk := f.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


# ---- import ----
def check_member_name(name: str) -> None:
    """Refuse any name that is not exactly one of the expected files, naming escapes explicitly."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise BundleError(f"archive entry {name!r} is an absolute path; refusing the archive")
    if ".." in parts:
        raise BundleError(f"archive entry {name!r} would escape its folder; refusing the archive")
    if not ALLOWED_NAME.match(name):
        raise BundleError(f"archive entry {name!r} is not part of a run bundle; refusing the archive")


def _members(archive) -> list[tuple[str, object, int]]:
    """(name, handle, declared size) of every regular file, after checking every entry's type and name."""
    out, seen = [], set()
    entries = archive.getmembers() if isinstance(archive, tarfile.TarFile) else archive.infolist()
    if len(entries) > MAX_MEMBERS:
        raise BundleError(f"archive has {len(entries)} entries; a run bundle has far fewer")
    for entry in entries:
        if isinstance(entry, tarfile.TarInfo):
            name, is_dir, size = entry.name, entry.isdir(), entry.size
            if entry.issym() or entry.islnk():
                raise BundleError(f"archive entry {name!r} is a link; refusing the archive")
            if not (entry.isreg() or is_dir):
                raise BundleError(f"archive entry {name!r} is not a regular file (device, fifo, ...); refusing")
        else:
            name, is_dir, size = entry.filename, entry.is_dir(), entry.file_size
            mode = entry.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BundleError(f"archive entry {name!r} is a link; refusing the archive")
            if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # no type bits: a file
                raise BundleError(f"archive entry {name!r} is not a regular file; refusing the archive")
            if entry.flag_bits & 0x1:
                raise BundleError(f"archive entry {name!r} is encrypted; refusing the archive")
        if is_dir:
            if name.rstrip("/") != runs.SNAPSHOTS:
                check_member_name(name.rstrip("/"))  # refuses with the right message
            continue
        check_member_name(name)
        if name in seen:
            raise BundleError(f"archive holds {name!r} twice; refusing the archive")
        seen.add(name)
        out.append((name, entry, size))
    return out


def _open_archive(path: Path):
    if not path.is_file():
        raise BundleError(f"{path} is not a file")
    try:
        if zipfile.is_zipfile(path):
            return zipfile.ZipFile(path)
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise BundleError(f"{path.name} is neither a .tar.gz nor a .zip archive ({e})") from e


def _extract(archive, members, dest: Path, max_bytes: int) -> None:
    """Stream each member into dest, counting real bytes (headers can lie) against max_bytes."""
    declared = sum(size for _, _, size in members)
    if declared > max_bytes:
        raise BundleError(f"archive would unpack to {declared / 2**20:.0f} MB; the limit is "
                          f"{max_bytes / 2**20:.0f} MB")
    total = 0
    for name, entry, _ in members:
        target = dest / name
        target.parent.mkdir(exist_ok=True)
        src = archive.extractfile(entry) if isinstance(archive, tarfile.TarFile) else archive.open(entry)
        with src, open(target, "xb") as dst:
            while chunk := src.read(CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise BundleError(f"archive unpacks to more than {max_bytes / 2**20:.0f} MB; refusing it")
                dst.write(chunk)


def _verify(dest: Path) -> dict:
    """bundle.json must list exactly the extracted files with matching sizes and hashes; the run must load."""
    try:
        manifest = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"archive has no readable {MANIFEST}; it was not written by gpt.runs.bundle") from e
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if manifest.get("format") != FORMAT or not isinstance(files, dict):
        raise BundleError(f"{MANIFEST} is not a {FORMAT} manifest")
    present = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} - {MANIFEST}
    if set(files) != present:
        raise BundleError(f"archive files do not match {MANIFEST}: {sorted(set(files) ^ present)[:5]}")
    for name in REQUIRED:
        if not (dest / name).is_file():
            raise BundleError(f"archive lacks {name}")
    for name, info in files.items():
        with open(dest / name, "rb") as f:
            digest, size = _hash_stream(f)
        if not isinstance(info, dict) or info.get("sha256") != digest or info.get("size") != size:
            raise BundleError(f"{name} does not match its checksum in {MANIFEST}; the archive is damaged")
    try:
        run = runs.load_run(dest)  # config, tokenizer and weights belong together
        for step in runs.list_snapshots(dest):
            runs.load_weights(run.model, runs.snapshot_path(dest, step))
    except runs.RunError as e:
        raise BundleError(f"the bundled run does not load: {e}") from e
    return manifest


def import_bundle(archive_path: str | Path, name: str | None = None, root: str | Path | None = None,
                  max_bytes: int = MAX_BUNDLE_BYTES) -> Path:
    """Unpack a bundle into checkpoints/NAME (default: the bundled run's name); returns the new run folder."""
    archive_path = Path(archive_path)
    root = Path(root or runs.checkpoints_root())
    root.mkdir(parents=True, exist_ok=True)
    if name is not None:
        target = runs.run_path(name, root)
        if target.exists():
            raise BundleError(f"a run named {target.name!r} already exists; choose another --name")
    tmp = root / f"{runs.TMP_PREFIX}import-{uuid.uuid4().hex[:8]}"
    try:
        with _open_archive(archive_path) as archive:
            members = _members(archive)
            tmp.mkdir()
            _extract(archive, members, tmp, max_bytes)
        manifest = _verify(tmp)
        if name is None:
            target = runs.run_path(str(manifest.get("run_name") or archive_path.name.split(".")[0]), root)
        if target.exists():
            raise BundleError(f"a run named {target.name!r} already exists; import with --name NEW_NAME")
        metrics = runs.read_jsonl(tmp / runs.METRICS)
        step = max([r["step"] for r in metrics if isinstance(r.get("step"), int)], default=0)
        max_iters = runs.read_config(tmp)["train"].max_iters
        runs.write_status(tmp, state="finished" if step >= max_iters else "stopped", step=step,
                          max_iters=max_iters, imported_from=archive_path.name)
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---- CLI ----
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpt.bundle", description="Export/import offline run bundles")
    sub = p.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="run folder -> .tar.gz or .zip")
    exp.add_argument("run")
    exp.add_argument("archive", help="OUT.tar.gz or OUT.zip")
    # --html moved to the app's side (explorer/report.py): kept hidden only to say where it went
    exp.add_argument("--html", help=argparse.SUPPRESS)
    exp.add_argument("--no-snapshots", action="store_true", help="leave the weight snapshots out")
    imp = sub.add_parser("import", help="archive -> checkpoints/NAME")
    imp.add_argument("archive")
    imp.add_argument("--name", help="run name (default: the bundled run's name)")
    imp.add_argument("--root", help="checkpoints folder (default: checkpoints/)")
    args = p.parse_args(argv)
    if args.command == "export" and args.html:
        print(f"error: the HTML report has its own command now: gpt-report {args.run} --out {args.html}",
              file=sys.stderr)
        return 2
    try:
        if args.command == "export":
            print(export_bundle(args.run, args.archive, snapshots=not args.no_snapshots))
        else:
            print(import_bundle(args.archive, args.name, args.root))
    except (BundleError, runs.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
