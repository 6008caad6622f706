"""The index on disk: generations of chunks and vectors, switched whole, one writer at a time.

Layout of an index folder::

    .lock                    flock held by the one process writing
    CURRENT                  JSON naming the live generation and its manifest's sha256;
                             replaced atomically
    generations/<gen>/       manifest.json (with every file's size and sha256), chunks.jsonl,
                             vectors.npy, sentences.npz, tokens.npz (with a local model),
                             chroma/ (embedded mode)

A build writes a fresh generation, then points CURRENT at it with ``os.replace``: a build killed
half way leaves the previous generation live, and the next build removes the leftovers.
The generation before the live one is kept so that a process still reading it is not cut off.
With ``chroma_host`` set, vectors go to a ``chroma run`` server, one collection per generation,
and the folder keeps the manifest, the chunks and the pointer. What one generation holds and how
it is checked is ``generation.py``'s job.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IndexDamagedError, IndexLockedError, IndexNotFoundError, StoreError
from .generation import (
    COLLECTION_PREFIX,
    MANIFEST,
    ChromaLocation,
    Generation,
    SentenceVectors,
    TokenVectors,
    chroma_version,
    close_client,
    fatal,
    file_records,
    quietly,
    reason,
)
from .types import Chunk

__all__ = ["FORMAT_VERSION", "ChromaLocation", "Generation", "IndexStore", "SentenceVectors",
           "TokenVectors", "chroma_version"]

FORMAT_VERSION = 3
# Chroma keeps new vectors in its log until this many have arrived, and every reader rebuilds the
# HNSW files from that log. Syncing at once makes the build write them whole: readers leave them
# alone, and their hashes hold.
_HNSW_SYNC = {"hnsw:sync_threshold": 2, "hnsw:batch_size": 2}


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IndexStore:
    """An index folder: open the live generation, or write a new one under the write lock."""

    def __init__(self, directory: str | Path, location: ChromaLocation | None = None) -> None:
        self.directory = Path(directory).expanduser()
        self.location = location or ChromaLocation()

    @property
    def _current_file(self) -> Path:
        return self.directory / "CURRENT"

    @property
    def _generations(self) -> Path:
        return self.directory / "generations"

    def pointer(self) -> dict[str, Any] | None:
        """CURRENT's content; None before any build; StoreError when it is unreadable."""
        try:
            data = json.loads(self._current_file.read_text())
            str(data["generation"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreError(
                f"{self._current_file} is unreadable ({reason(e)}): run `peerqa index` to "
                "repair it"
            ) from e
        return dict(data)

    def current_name(self) -> str | None:
        pointer = self.pointer()
        return str(pointer["generation"]) if pointer else None

    def pointer_stamp(self) -> tuple[int, int, int] | None:
        """A cheap fingerprint of CURRENT (inode, size, mtime): it changes when a build
        replaces it, so a long-running reader notices a new generation with one stat call."""
        try:
            st = self._current_file.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _pointer_for_writing(self) -> dict[str, Any]:
        """CURRENT's content, or {} when it is missing or corrupt (a rebuild replaces it)."""
        try:
            data = json.loads(self._current_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def current_manifest(self) -> dict[str, Any] | None:
        """The live generation's manifest, or None when there is no readable one."""
        try:
            name = self.current_name()
        except StoreError:
            return None
        if not name:
            return None
        try:
            manifest = json.loads((self._generations / name / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def open(self) -> Generation:
        """The live generation, its file sizes checked; IndexNotFoundError before any build,
        IndexDamagedError (saying what to run) when its files do not match their records."""
        pointer = self.pointer()
        name = str(pointer["generation"]) if pointer else None
        if not name or not (self._generations / name).is_dir():
            if pointer:
                raise IndexDamagedError(
                    f"the index at {self.directory} names a generation that is gone "
                    f"({name}): run `peerqa index` to repair it",
                    f"its live generation {name} is gone",
                )
            raise IndexNotFoundError(
                f"no index at {self.directory}: run `peerqa index` to build it"
            )
        assert pointer is not None
        return Generation(self._generations / name, self.location, pointer.get("manifest_sha256"))

    def damage(self) -> str | None:
        """What is wrong with the live generation, checked in depth; None when it is sound."""
        try:
            generation = self.open()
        except IndexNotFoundError:
            return None
        except IndexDamagedError as e:
            return e.problem
        except StoreError as e:
            return str(e)
        try:
            problems = generation.verify(deep=True)
        finally:
            generation.close()
        return "; ".join(problems[:3]) or None

    def latest_readable(self) -> Generation | None:
        """The live generation, or when CURRENT is unreadable the newest one with a readable
        manifest, opened leniently (for vectors worth reusing); None when there is none."""
        try:
            live = self.current_name()
        except StoreError:
            live = None
        names = [live] if live else []
        if self._generations.is_dir():
            names += sorted((p.name for p in self._generations.iterdir()), reverse=True)
        for name in dict.fromkeys(names):
            with contextlib.suppress(StoreError):
                return Generation(self._generations / name, self.location, strict=False)
        return None

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the index's write lock, or fail at once if another process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise IndexLockedError(
                    f"another process is building the index at {self.directory}: "
                    "wait for it to finish, then try again"
                ) from e
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def write_generation(
        self,
        manifest: dict[str, Any],
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
        progress: Callable[[int], None] | None = None,
        sentences: SentenceVectors | None = None,
        tokens: TokenVectors | None = None,
    ) -> Generation:
        """Write a complete generation and make it live. Call under ``write_lock``."""
        if len(chunks) != len(vectors) or len(chunks) != len(metadatas):
            raise StoreError("chunks, vectors and metadata differ in length")
        self._remove_leftovers()
        name = time.strftime("g%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        path = self._generations / name
        path.mkdir(parents=True)
        manifest = {**manifest, "format": FORMAT_VERSION, "generation": name,
                    "collection": COLLECTION_PREFIX + name, "n_chunks": len(chunks),
                    "chromadb": chroma_version(), "created": time.time()}
        lines = "".join(json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in chunks)
        _fsync_write(path / "chunks.jsonl", lines.encode("utf-8"))
        with open(path / "vectors.npy", "wb") as f:
            np.save(f, np.asarray(vectors, dtype=np.float32))
            f.flush()
            os.fsync(f.fileno())
        if sentences is not None:
            with open(path / "sentences.npz", "wb") as f:
                np.savez(f, chunk=sentences.chunk.astype(np.int32),
                         spans=sentences.spans.astype(np.int32),
                         vectors=sentences.vectors.astype(np.float32))
                f.flush()
                os.fsync(f.fileno())
        if tokens is not None:
            with open(path / "tokens.npz", "wb") as f:
                np.savez(f, start=tokens.start.astype(np.int64),
                         vectors=tokens.vectors.astype(np.float16))
                f.flush()
                os.fsync(f.fileno())
        self._write_vectors(path, manifest["collection"], chunks, vectors, metadatas, progress)
        # Recorded last, once every file (Chroma's included) is complete.
        manifest["files"] = file_records(path)
        data = json.dumps(manifest, indent=1).encode()
        _fsync_write(path / MANIFEST, data)
        _fsync_dir(path)
        previous = self._pointer_for_writing().get("generation")
        tmp = self.directory / f"CURRENT.{os.getpid()}.tmp"
        pointer = {"generation": name, "previous": previous,
                   "manifest_sha256": hashlib.sha256(data).hexdigest()}
        _fsync_write(tmp, json.dumps(pointer).encode())
        os.replace(tmp, self._current_file)
        _fsync_dir(self.directory)
        self._prune(keep={name, previous})
        return Generation(path, self.location, pointer["manifest_sha256"])

    def _write_vectors(
        self,
        path: Path,
        collection_name: str,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
        progress: Callable[[int], None] | None,
    ) -> None:
        """Add the vectors to a new Chroma collection in batches it accepts, then query it once
        so that its files are complete before they are recorded."""
        client = self.location.client(path / "chroma")
        try:
            collection = quietly(lambda: client.create_collection(
                collection_name,
                metadata={"hnsw:space": "cosine", **_HNSW_SYNC,
                          "peerqa_generation": path.name},
                embedding_function=None,
            ))
            batch = max(1, min(int(client.get_max_batch_size()), 2048))

            def add(part: slice) -> None:
                collection.add(
                    ids=[c.chunk_id for c in chunks[part]],
                    embeddings=np.asarray(vectors[part], dtype=np.float32),
                    metadatas=list(metadatas[part]),
                    documents=[c.text for c in chunks[part]],
                )

            for i in range(0, len(chunks), batch):
                part = slice(i, i + batch)
                quietly(functools.partial(add, part))
                if progress:
                    progress(len(chunks[part]))
            if len(chunks):
                quietly(lambda: collection.query(
                    query_embeddings=np.asarray(vectors[:1], dtype=np.float32), n_results=1,
                    include=["distances"],
                ))
        except BaseException as e:
            if fatal(e):
                raise
            raise StoreError(f"writing vectors to Chroma failed ({reason(e)})") from e
        finally:
            close_client(client)

    def _remove_leftovers(self) -> None:
        """Remove generations a killed build left behind (never the live or previous one)."""
        pointer = self._pointer_for_writing()
        self._prune(keep={k for k in (pointer.get("generation"), pointer.get("previous")) if k})
        for tmp in self.directory.glob("CURRENT.*.tmp"):
            tmp.unlink(missing_ok=True)

    def _prune(self, keep: set[str | None]) -> None:
        if not self._generations.is_dir():
            return
        for path in self._generations.iterdir():
            if path.name in keep:
                continue
            if self.location.host:
                with contextlib.suppress(Exception):  # never created, or already gone
                    self.location.client().delete_collection(COLLECTION_PREFIX + path.name)
            shutil.rmtree(path, ignore_errors=True)
