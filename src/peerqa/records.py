"""A folder's file records: the size and sha256 of every file, and what differs from them.

A generation's manifest holds these records (``generation.py``). Opening a generation compares
sizes; ``peerqa index`` compares hashes too, and asks SQLite to check Chroma's database, which
Chroma writes to whenever it opens it (a lock row), so that file is judged by SQLite, not by its
hash.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

MANIFEST = "manifest.json"
_SCRATCH = ("-journal", "-wal", "-shm")  # SQLite's transient files: never recorded
_ENGINE_WRITES = (".sqlite3",)  # files Chroma writes to as it reads
# Chroma's native code loads its HNSW files whole and crashes the process (a segfault, measured
# with chromadb 1.5) on a damaged one, so they are hashed before Chroma opens them.
NATIVE_LOADED = "chroma/"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file of a generation folder except its manifest."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST or not path.is_file() or path.name.endswith(_SCRATCH):
            continue
        records[rel] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return records


def file_problems(
    folder: Path, records: dict[str, Any], deep: bool, native: bool = True
) -> list[str]:
    """What differs between a folder's files and their records: sizes, and hashes when ``deep``
    (and, with ``native``, always for the files Chroma's native code loads)."""
    problems: list[str] = []
    for rel, record in records.items():
        path = folder / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{rel} is missing")
            continue
        except OSError as e:
            problems.append(f"{rel} is unreadable ({e.strerror or e})")
            continue
        if rel.endswith(_ENGINE_WRITES):
            problem = _sqlite_problem(path) if deep else None
            if problem:
                problems.append(f"{rel} is damaged ({problem})")
        elif size != record.get("size"):
            problems.append(f"{rel} is {size:,} bytes, {record.get('size')} expected")
        elif ((deep or (native and rel.startswith(NATIVE_LOADED)))
              and _sha256(path) != record.get("sha256")):
            problems.append(f"{rel} has changed since it was written")
    return problems


def _sqlite_problem(path: Path) -> str | None:
    """SQLite's own structure check of a database, opened read-only."""
    try:
        con = sqlite3.connect(f"file:{pathname2url(str(path))}?mode=ro", uri=True)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        return str(e)
    return None if rows == [("ok",)] else str(rows[0][0] if rows else "no answer")
