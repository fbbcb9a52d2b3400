"""Reads of run-folder files that many callers repeat, kept per process and re-read only when the file changed.

A rerun of the app lists every run (and, in classroom mode, reads the settings and each run's owner) several times,
and with 30 learners that is hundreds of reads a minute of files that rarely change. A file is known by its
signature (device, inode, size, mtime in ns): every writer of these files either replaces them atomically (a new
inode) or appends to them (a larger size), so an unchanged signature means unchanged content.

metrics.jsonl only grows while a run trains (a resume rewrites it atomically: a new inode), so its rows are read
incrementally: only the complete lines appended since the last read are parsed. Thread-safe (Streamlit runs each
session's script in its own thread). What these functions return is shared between callers: do not mutate it.
"""
from __future__ import annotations

import copy
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILES = 4096   # bound on the files remembered (a class of 30 with a few runs each is ~100)
_lock = threading.Lock()


def signature(path: str | Path) -> tuple | None:
    """(device, inode, size, mtime_ns) of a file, or None when it does not exist (or cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


# ---- small JSON files (status, settings, owner, learners) ----
_json: dict[str, tuple[tuple, object]] = {}


def read_json(path: str | Path, default):
    """The parsed JSON of a small file (a deep copy, so callers may change it), or `default` when the file is missing,
    damaged or not of default's type; parsed again only when its signature changed."""
    key = str(path)
    sig = signature(key)
    if sig is None:
        return copy.deepcopy(default)
    with _lock:
        hit = _json.get(key)
    if hit is None or hit[0] != sig:
        try:
            with open(key, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            data = None
        with _lock:
            if len(_json) >= MAX_FILES:
                _json.clear()
            _json[key] = hit = (sig, data)
    data = hit[1]
    return copy.deepcopy(data) if isinstance(data, type(default)) else copy.deepcopy(default)


# ---- JSON lines that only grow (metrics.jsonl) ----
@dataclass
class _Tail:
    ident: tuple                 # (device, inode)
    offset: int = 0              # bytes parsed: up to the end of the last complete line
    mtime_ns: int = 0
    rows: list = field(default_factory=list)


_tails: dict[str, _Tail] = {}


def read_jsonl_rows(path: str | Path) -> list[dict]:
    """The JSON-object lines of a file that only grows (as gpt.runs.read_jsonl: torn or non-object lines skipped), read
    incrementally: a call parses only the complete lines appended since the previous one. A file replaced (new inode),
    shortened, or rewritten in place at the same size is read again from the start. Returns a new list of shared
    row dicts: do not mutate the rows."""
    key = str(path)
    sig = signature(key)
    if sig is None:
        with _lock:
            _tails.pop(key, None)
        return []
    dev, ino, size, mtime_ns = sig
    with _lock:
        tail = _tails.get(key)
        if tail is None or tail.ident != (dev, ino) or size < tail.offset or \
                (size == tail.offset and mtime_ns != tail.mtime_ns):
            tail = _Tail((dev, ino))
        if size > tail.offset:
            try:
                with open(key, "rb") as f:
                    f.seek(tail.offset)
                    chunk = f.read(size - tail.offset)
            except OSError:
                return list(tail.rows)
            end = chunk.rfind(b"\n") + 1          # a line still being written is left for the next call
            for line in chunk[:end].splitlines():
                try:
                    row = json.loads(line.decode("utf-8", errors="replace"))
                except json.JSONDecodeError:
                    continue                       # a torn line from a killed writer
                if isinstance(row, dict):
                    tail.rows.append(row)
            tail.offset += end
        tail.mtime_ns = mtime_ns
        if len(_tails) >= MAX_FILES:
            _tails.clear()
        _tails[key] = tail
        return list(tail.rows)
