"""The index on disk: generations of chunks and vectors, switched whole, one writer at a time.

Layout of an index folder::

    .lock                    flock held by the one process writing
    CURRENT                  JSON naming the live generation and its manifest's sha256;
                             replaced atomically
    generations/<gen>/       manifest.json (with every file's size and sha256), chunks.jsonl,
                             vectors.npy, sentence_{chunks,spans,vectors}.npy, bm25/ (the
                             lexical index), vocabulary.json, keys.json, token_{starts,vectors}.npy
                             (with a local model), chroma/ (embedded)

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
import logging
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.request import pathname2url

import numpy as np

from .errors import IndexDamagedError, IndexLockedError, IndexNotFoundError, StoreError
from .generation import (
    COLLECTION_PREFIX,
    KEYS,
    VECTORS,
    ChromaLocation,
    Generation,
    chroma_version,
    close_client,
    fatal,
    quietly,
    reason,
)
from .lexical import COUNTS_FILE, LEXICAL_DIR, Bm25Index, Counts
from .records import MANIFEST, NATIVE_LOADED, file_problems, file_records
from .tables import (
    CHUNKS,
    TABLE,
    ChunkTable,
    SentenceVectors,
    TokenVectors,
    WordVectors,
    chunk_lines,
)
from .types import Chunk

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "ChromaLocation", "Generation", "IndexStore", "SentenceVectors",
           "TokenVectors", "WordVectors", "chroma_version", "chunk_metadata"]

FORMAT_VERSION = 6
"""6: the vectors of the words the chunks use (the answer's check; an index of format 5 is
rebuilt once, every vector reused but the words'). 5: each chunk's token vectors saved for
memory-mapping (late interaction; an index of format 4 is rebuilt once, its chunk and sentence
vectors reused). 4: sentences, BM25 and the vocabulary's counts saved for memory-mapping, text
keys in keys.json (3: sentences.npz, BM25 rebuilt by every process)."""
# Chroma keeps new vectors in its log until this many have arrived, and every reader rebuilds the
# HNSW files from that log. Syncing at once makes the build write them whole: readers leave them
# alone, and their hashes hold.
_HNSW_SYNC = {"hnsw:sync_threshold": 2, "hnsw:batch_size": 2}


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
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

    def damage(self, probe: bool = True) -> str | None:
        """What is wrong with the live generation, checked in depth (``Generation.verify``:
        ``probe`` as there); None when it is sound."""
        try:
            generation = self.open()
        except IndexNotFoundError:
            return None
        except IndexDamagedError as e:
            return e.problem
        except StoreError as e:
            return str(e)
        try:
            problems = generation.verify(deep=True, probe=probe)
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
        *,
        lexical: Bm25Index | None = None,
        counts: Counts | None = None,
        keys: tuple[Sequence[str], Sequence[str]] | None = None,
        base: Generation | None = None,
        tokens: TokenVectors | None = None,
        words: WordVectors | Callable[[], WordVectors] | None = None,
    ) -> Generation:
        """Write a complete generation and make it live. Call under ``write_lock``.

        ``keys`` are the embedded texts' keys (chunks, sentences) a later build reuses vectors
        by (``tokens``, each chunk's token vectors, by the chunks' keys); ``base``, an earlier
        generation of the same chunks' vectors, whose embedded Chroma collection is copied and
        edited instead of written again when it is sound.
        """
        if len(chunks) != len(vectors) or len(chunks) != len(metadatas):
            raise StoreError("chunks, vectors and metadata differ in length")
        if tokens is not None and len(tokens.start) != len(chunks) + 1:
            raise StoreError("token vectors and chunks differ in length")
        self._remove_leftovers()
        name = time.strftime("g%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        path = self._generations / name
        path.mkdir(parents=True)
        manifest = {**manifest, "format": FORMAT_VERSION, "generation": name,
                    "collection": COLLECTION_PREFIX + name, "n_chunks": len(chunks),
                    "chromadb": chroma_version(), "created": time.time()}
        lines = chunk_lines(chunks)
        _fsync_write(path / CHUNKS, lines)
        ChunkTable.of(chunks, lines).save(path / TABLE)
        _save_array(path / VECTORS, np.asarray(vectors, dtype=np.float32))
        if sentences is not None:
            sentences.save(path)
        if tokens is not None:
            tokens.save(path)
        if lexical is not None:
            lexical.save(path / LEXICAL_DIR)
            _fsync_dir(path / LEXICAL_DIR)
        if counts is not None:
            counts.save(path / COUNTS_FILE)
        if keys is not None:
            _fsync_write(path / KEYS, json.dumps(
                {"text_keys": list(keys[0]), "sentence_keys": list(keys[1])}).encode())
        manifest.update(self._write_vectors(path, manifest["collection"], chunks, vectors,
                                            metadatas, progress, base))
        if words is not None:
            (words() if callable(words) else words).save(path)
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
        base: Generation | None,
    ) -> dict[str, Any]:
        """Put the vectors in the generation's Chroma collection, then query it once so that its
        files are complete before they are recorded; return what the manifest says of it.

        Embedded, a sound ``base`` collection is copied and edited (stale rows deleted, new ones
        added): adding one document to 26,000 chunks then costs that document, not writing the
        whole collection again (about 30 s). Whatever goes wrong with the copy, the collection
        is written afresh.
        """
        copied = self._copy_collection(path, base)
        if copied is not None:
            try:
                return self._edit_collection(path, copied, collection_name, chunks, vectors,
                                             metadatas, progress)
            except BaseException as e:
                if fatal(e):
                    raise
                log.info("writing a new Chroma collection: editing the copy failed (%s)",
                         reason(e))
                shutil.rmtree(path / "chroma", ignore_errors=True)
        client = self.location.client(path / "chroma")
        try:
            collection = quietly(lambda: client.create_collection(
                collection_name,
                metadata={"hnsw:space": "cosine", **_HNSW_SYNC, "peerqa_generation": path.name},
                embedding_function=None,
            ))
            _add(client, collection, chunks, vectors, metadatas, range(len(chunks)), progress)
        except BaseException as e:
            if fatal(e):
                raise
            raise StoreError(f"writing vectors to Chroma failed ({reason(e)})") from e
        finally:
            close_client(client)
        return {"chroma_deleted": 0}

    def _copy_collection(self, path: Path, base: Generation | None) -> Generation | None:
        """Copy ``base``'s embedded Chroma folder into the new generation when it is worth
        editing: same chromadb, deleted rows fewer than a quarter of its size (so they never
        pile up in the HNSW files), and the copy sound (HNSW files as recorded, SQLite's check
        passed). None, with nothing copied, otherwise."""
        if base is None or self.location.host or not base.chunks:
            return None
        records = {rel: r for rel, r in base.files.items() if rel.startswith(NATIVE_LOADED)}
        if (base.manifest.get("chromadb") != chroma_version() or not records
                or int(base.manifest.get("chroma_deleted", 0)) > len(base.chunks) // 4):
            return None
        target = path / "chroma"
        try:
            for rel in records:
                (path / rel).parent.mkdir(parents=True, exist_ok=True)
                if rel.endswith(".sqlite3"):
                    # SQLite's own backup: a consistent copy even while a reader has it open.
                    source = f"file:{pathname2url(str(base.path / rel))}?mode=ro"
                    with contextlib.closing(sqlite3.connect(source, uri=True)) as src, \
                            contextlib.closing(sqlite3.connect(path / rel)) as out:
                        src.backup(out)
                else:
                    shutil.copyfile(base.path / rel, path / rel)
            problems = file_problems(path, records, deep=True)
        except (OSError, sqlite3.Error) as e:
            problems = [str(e)]
        if problems:
            log.info("writing a new Chroma collection: the copy of %s is not usable (%s)",
                     base.path / "chroma", "; ".join(problems[:3]))
            shutil.rmtree(target, ignore_errors=True)
            return None
        return base

    def _edit_collection(
        self,
        path: Path,
        base: Generation,
        collection_name: str,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        metadatas: Sequence[dict[str, Any]],
        progress: Callable[[int], None] | None,
    ) -> dict[str, Any]:
        """Turn the copy of ``base``'s collection into this generation's: renamed, the rows
        that are gone or differ deleted, the new ones added."""
        stale, todo = _changes(base, chunks, vectors, metadatas)
        client = self.location.client(path / "chroma")
        try:
            collection = quietly(lambda: client.get_collection(
                base.collection_name, embedding_function=None))
            quietly(lambda: collection.modify(name=collection_name))
            for i in range(0, len(stale), 2048):
                quietly(functools.partial(collection.delete, ids=stale[i : i + 2048]))
            if progress:
                progress(len(chunks) - len(todo))
            _add(client, collection, chunks, vectors, metadatas, todo, progress)
        finally:
            close_client(client)
        return {"chroma_deleted": int(base.manifest.get("chroma_deleted", 0)) + len(stale),
                "chroma_from": base.name}

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


def chunk_metadata(chunk: Chunk) -> dict[str, Any]:
    """What Chroma keeps beside a chunk's vector: its document (searches filter on it), section
    and offsets."""
    return {"doc_id": chunk.doc_id, "section": chunk.section[:500], "start": chunk.start,
            "end": chunk.end}


def _add(
    client: ClientAPI,
    collection: Collection,
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    metadatas: Sequence[dict[str, Any]],
    rows: Sequence[int],
    progress: Callable[[int], None] | None,
) -> None:
    """Add these rows in batches Chroma accepts, then check the count and query once (so that
    the HNSW files are complete before they are recorded)."""
    batch = max(1, min(int(client.get_max_batch_size()), 2048))
    for i in range(0, len(rows), batch):
        part = list(rows[i : i + batch])
        quietly(functools.partial(
            collection.add,
            ids=[chunks[r].chunk_id for r in part],
            embeddings=np.asarray(vectors[part], dtype=np.float32),
            metadatas=[metadatas[r] for r in part],
            documents=[chunks[r].text for r in part],
        ))
        if progress:
            progress(len(part))
    if len(chunks):
        count = quietly(collection.count)
        if count != len(chunks):
            raise StoreError(f"Chroma holds {count} vectors, {len(chunks)} expected")
        quietly(lambda: collection.query(
            query_embeddings=np.asarray(vectors[:1], dtype=np.float32), n_results=1,
            include=["distances"],
        ))


def _changes(
    base: Generation, chunks: Sequence[Chunk], vectors: np.ndarray,
    metadatas: Sequence[dict[str, Any]],
) -> tuple[list[str], list[int]]:
    """What turns ``base``'s collection into one of ``chunks``: the ids to delete (gone, or
    with another text, metadata or vector) and the rows to add."""
    old_vectors = base.vectors()
    old_chunks = list(base.chunks)
    if len(old_vectors) != len(old_chunks):
        raise StoreError("the earlier generation's vectors and chunks differ in number")
    old_row = {c.chunk_id: j for j, c in enumerate(old_chunks)}
    pairs = [(i, old_row[c.chunk_id]) for i, c in enumerate(chunks)
             if c.chunk_id in old_row and old_chunks[old_row[c.chunk_id]] == c
             and metadatas[i] == chunk_metadata(c)]
    new, old = (np.array(side, dtype=np.int64) for side in zip(*pairs, strict=True)) \
        if pairs else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    same = (np.asarray(vectors)[new] == old_vectors[old]).all(axis=1)
    kept = set(new[same].tolist())
    kept_ids = {chunks[i].chunk_id for i in kept}
    stale = [c.chunk_id for c in old_chunks if c.chunk_id not in kept_ids]
    return stale, [i for i in range(len(chunks)) if i not in kept]
