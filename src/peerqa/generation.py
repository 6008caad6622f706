"""One index generation on disk: its files and their records, its checks, its Chroma collection.

A generation's manifest records what it holds: the size and sha256 of every file in its folder
(whatever files a build writes, so new ones are covered without a change here) and the chromadb
version that wrote it. Opening checks the sizes (and the hashes of Chroma's HNSW files, which
its native code would crash on); ``Generation.verify(deep=True)``, run by ``peerqa index``,
checks every hash, SQLite's own structure check and a probe query. Chroma writes to its SQLite
file whenever it opens it (a lock row), so that one file is judged by SQLite and by the probe,
not by its hash. Chroma's native code reports a panic on the process's
stderr before Python sees the exception: every call that opens Chroma runs with stderr captured
(``quietly``), and whatever Chroma raises becomes a one-line ``StoreError``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import sqlite3
import sys
import tempfile
import threading
import weakref
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.request import pathname2url

import numpy as np

from .errors import IndexDamagedError, StoreError
from .types import Chunk

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)
T = TypeVar("T")

MANIFEST = "manifest.json"
COLLECTION_PREFIX = "peerqa-"
_SCRATCH = ("-journal", "-wal", "-shm")  # SQLite's transient files: never recorded
_ENGINE_WRITES = (".sqlite3",)  # files Chroma writes to as it reads
# Chroma's native code loads its HNSW files whole and crashes the process (a segfault, measured
# with chromadb 1.5) on a damaged one, so they are hashed at every open, not only in depth.
_NATIVE_LOADED = "chroma/"
_NUMPY_FAILURES = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


@functools.lru_cache(maxsize=1)
def chroma_version() -> str:
    """The installed chromadb's version, read without importing chromadb."""
    try:
        return importlib.metadata.version("chromadb")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- Chroma's stderr

_NATIVE = threading.RLock()  # reentrant: a captured call may open Chroma itself


def quietly(call: Callable[[], T]) -> T:
    """``call()`` with the process's stderr (file descriptor 2) captured.

    Chroma's Rust code prints a panic's report there before Python sees the exception; that
    report is not for the user. What was captured is written back when the call succeeds, and
    logged at debug level when it fails.
    """
    with _NATIVE, tempfile.TemporaryFile() as tmp:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all (a daemon): nothing to keep quiet
            return call()
        os.dup2(tmp.fileno(), 2)
        ok = False
        try:
            result = call()
            ok = True
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured = tmp.read()
            if captured and ok:
                with contextlib.suppress(OSError):
                    os.write(2, captured)
            elif captured:
                log.debug("Chroma wrote to stderr:\n%s", captured.decode("utf-8", "replace"))
        return result


def reason(exc: BaseException) -> str:
    """An exception's first line, for a one-line message."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def fatal(exc: BaseException) -> bool:
    """Exceptions that must pass through; everything else Chroma raises (its Rust panics derive
    from BaseException) becomes a StoreError."""
    return isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))


# --------------------------------------------------------------------------- file records


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


def file_problems(folder: Path, records: dict[str, Any], deep: bool) -> list[str]:
    """What differs between a folder's files and their records: sizes, and hashes when ``deep``
    (always for the files Chroma's native code loads)."""
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
        elif (deep or rel.startswith(_NATIVE_LOADED)) and _sha256(path) != record.get("sha256"):
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


# --------------------------------------------------------------------------- generations


@dataclass(frozen=True, slots=True)
class SentenceVectors:
    """One vector per sentence of every chunk: its chunk's index, its document offsets."""

    chunk: np.ndarray  # (n,) int32, index into the generation's chunks
    spans: np.ndarray  # (n, 2) int32, document offsets of the sentence
    vectors: np.ndarray  # (n, dim) float32, L2-normalised


@dataclass(frozen=True, slots=True)
class TokenVectors:
    """The contextual vector of each content token of every chunk (late interaction): rows of
    one chunk are contiguous, ``start[i]:start[i + 1]``."""

    start: np.ndarray  # (chunks + 1,) int64, where each chunk's rows begin
    vectors: np.ndarray  # (n, dim) float16, L2-normalised (to float16's precision)

    def owner(self) -> np.ndarray:
        """The chunk index of every row."""
        return np.repeat(np.arange(len(self.start) - 1), np.diff(self.start))


@dataclass(frozen=True, slots=True)
class ChromaLocation:
    """Where vectors live: an embedded folder (host None) or a Chroma server."""

    host: str | None = None
    port: int = 8000

    def client(self, path: Path | None = None) -> ClientAPI:
        """A Chroma client; StoreError (with what to do) when Chroma cannot be opened."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if self.host:
                return chromadb.HttpClient(host=self.host, port=self.port, settings=settings)
            assert path is not None
            return quietly(lambda: chromadb.PersistentClient(path=str(path), settings=settings))
        except BaseException as e:  # plain ValueError/ConnectionError variants, Rust panics
            if fatal(e):
                raise
            if self.host:
                raise StoreError(
                    f"cannot open the Chroma server at {self.host}:{self.port} ({reason(e)}): "
                    "start it with `chroma run --path DIR --port PORT` or unset PEERQA_CHROMA_HOST"
                ) from e
            raise IndexDamagedError(
                f"Chroma cannot open the index's vectors at {path} ({reason(e)}): "
                "run `peerqa index` to repair it"
            ) from e


class Generation:
    """One complete, immutable build: its manifest, chunks, vectors and Chroma collection.

    ``strict`` (the default) refuses a generation whose files do not have their recorded sizes;
    a lenient one is only read for vectors worth reusing.
    """

    def __init__(
        self,
        path: Path,
        location: ChromaLocation,
        manifest_sha256: str | None = None,
        strict: bool = True,
    ) -> None:
        self.path = path
        self.location = location
        self._client: ClientAPI | None = None
        self._collection: Collection | None = None
        self._vectors: np.ndarray | None = None
        self._lock = threading.Lock()
        try:
            raw = (path / MANIFEST).read_bytes()
            if manifest_sha256 and hashlib.sha256(raw).hexdigest() != manifest_sha256:
                raise ValueError("it has changed since it was written")
            manifest = json.loads(raw)
            if not isinstance(manifest, dict):
                raise ValueError("it is not a JSON object")
        except (OSError, ValueError) as e:
            raise self.damaged(f"{MANIFEST}: {e}") from e
        self.manifest: dict[str, Any] = manifest
        files = manifest.get("files")
        self.files: dict[str, Any] = files if isinstance(files, dict) else {}
        if strict:
            problems = file_problems(path, self.files, deep=False)
            if problems:
                raise self.damaged("; ".join(problems[:3]))
        try:
            with open(path / "chunks.jsonl", encoding="utf-8") as f:
                self.chunks = [Chunk(**json.loads(line)) for line in f if line.strip()]
        except (OSError, ValueError, TypeError) as e:
            if strict:
                raise self.damaged(f"chunks.jsonl: {reason(e)}") from e
            self.chunks = []
        if strict and len(self.chunks) != manifest.get("n_chunks", len(self.chunks)):
            raise self.damaged(
                f"chunks.jsonl holds {len(self.chunks)} chunks, {manifest['n_chunks']} expected"
            )

    def damaged(self, problem: str) -> IndexDamagedError:
        """The one-line error for a damaged generation, saying what to run."""
        return IndexDamagedError(
            f"the index at {self.path.parent.parent} is damaged ({problem}): "
            "run `peerqa index` to repair it",
            problem,
        )

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def collection_name(self) -> str:
        return str(self.manifest.get("collection", COLLECTION_PREFIX + self.name))

    def vectors(self) -> np.ndarray:
        try:
            vectors: np.ndarray = np.load(self.path / "vectors.npy")
        except _NUMPY_FAILURES as e:
            raise self.damaged(f"vectors.npy: {reason(e)}") from e
        return vectors

    def sentences(self) -> SentenceVectors | None:
        """The sentence-level vectors of this generation (None for an index without them)."""
        path = self.path / "sentences.npz"
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                return SentenceVectors(data["chunk"], data["spans"], data["vectors"])
        except _NUMPY_FAILURES as e:
            raise self.damaged(f"sentences.npz: {reason(e)}") from e

    def tokens(self) -> TokenVectors | None:
        """The chunks' token vectors (None for an index built without them)."""
        path = self.path / "tokens.npz"
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                return TokenVectors(data["start"], data["vectors"])
        except _NUMPY_FAILURES as e:
            raise self.damaged(f"tokens.npz: {reason(e)}") from e

    def sound_vectors(self) -> tuple[np.ndarray | None, SentenceVectors | None]:
        """The chunk and sentence vectors, each only if its file still has its recorded hash."""
        def sound(name: str) -> bool:
            record = self.files.get(name)
            return record is not None and not file_problems(self.path, {name: record}, deep=True)

        vectors = sentences = None
        with contextlib.suppress(StoreError):
            vectors = self.vectors() if sound("vectors.npy") else None
        with contextlib.suppress(StoreError):
            sentences = self.sentences() if sound("sentences.npz") else None
        return vectors, sentences

    @property
    def collection(self) -> Collection:
        with self._lock:
            if self._collection is None:
                client = self.location.client(self.path / "chroma")
                try:
                    collection = quietly(
                        lambda: client.get_collection(self.collection_name, embedding_function=None)
                    )
                except BaseException as e:
                    if fatal(e):
                        raise
                    raise self.damaged(
                        f"Chroma has no readable collection {self.collection_name!r}: "
                        f"{reason(e)}"
                    ) from e
                self._client, self._collection = client, collection
                # The client is closed when the last user of this generation lets it go.
                weakref.finalize(self, close_client, client)
            return self._collection

    def close(self) -> None:
        """Release Chroma's hold on this generation's files (it reopens on the next query)."""
        with self._lock:
            client, self._client, self._collection = self._client, None, None
        if client is not None:
            close_client(client)

    def _scan(
        self, vector: np.ndarray, doc_ids: Sequence[str] | None
    ) -> list[tuple[str, float]]:
        """Every chunk by cosine similarity, exactly, from this generation's vectors.npy."""
        with self._lock:
            if self._vectors is None:
                vectors = self.vectors()
                if len(vectors) != len(self.chunks):
                    raise self.damaged(f"vectors.npy holds {len(vectors)} vectors for "
                                       f"{len(self.chunks)} chunks")
                self._vectors = vectors
        sims = self._vectors @ np.asarray(vector, dtype=np.float32)
        rows = np.argsort(-sims, kind="stable")
        if doc_ids:
            wanted = set(doc_ids)
            rows = rows[[self.chunks[i].doc_id in wanted for i in rows.tolist()]]
        chunks = self.chunks
        return [(chunks[i].chunk_id, s)
                for i, s in zip(rows.tolist(), sims[rows].tolist(), strict=True)]

    def query(
        self, vector: np.ndarray, n: int, doc_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """Nearest chunks to ``vector`` as (chunk_id, cosine similarity), best first.

        When every chunk is asked for (a small corpus: the retriever asks for up to 1,000), the
        answer is an exhaustive scan, which numpy does exactly over vectors.npy in well under a
        millisecond, without starting embedded Chroma (importing chromadb alone costs ~0.5 s).
        Otherwise, and always on a Chroma server, Chroma's index answers.
        """
        where: Any = {"doc_id": {"$in": list(doc_ids)}} if doc_ids else None
        n = min(n, len(self.chunks))
        if n <= 0:
            return []
        if n == len(self.chunks) and not self.location.host:
            return self._scan(vector, doc_ids)
        collection = self.collection
        try:
            res = collection.query(
                query_embeddings=np.asarray(vector, dtype=np.float32)[None, :],
                n_results=n,
                where=where,
                include=["distances"],
            )
        except BaseException as e:
            if fatal(e):
                raise
            raise StoreError(
                f"vector search failed ({reason(e)}): run `peerqa index` to check and repair "
                "the index"
            ) from e
        distances = res["distances"] or [[]]
        pairs = zip(res["ids"][0], distances[0], strict=True)
        return [(i, 1.0 - float(d)) for i, d in pairs]

    def probe(self) -> str | None:
        """None when Chroma answers as it was written: every vector there, and the first chunk's
        own vector finding it. Otherwise what failed."""
        if not self.chunks:
            return None
        try:
            count = quietly(lambda: self.collection.count())
            if count != len(self.chunks):
                return f"Chroma holds {count} vectors, {len(self.chunks)} expected"
            vector = np.load(self.path / "vectors.npy", mmap_mode="r")[0]
            found = quietly(lambda: self.query(np.asarray(vector), 1))
        except BaseException as e:
            if fatal(e):
                raise
            return f"a probe query failed: {reason(e)}"
        if not found or found[0][1] < 0.999:
            return "a probe query did not find a stored vector"
        return None

    def verify(self, deep: bool) -> list[str]:
        """What is wrong with this generation: file sizes, or when ``deep`` hashes, SQLite's
        check and a probe query. Empty when it is sound."""
        problems = file_problems(self.path, self.files, deep=deep)
        if not self.files:
            problems.append(f"{MANIFEST} records no files (written by an older peerqa)")
        if deep and not problems:
            probe = self.probe()
            if probe:
                problems.append(probe)
        return problems

    def engine_works(self) -> bool:
        """Whether this installation's Chroma reads the generation: at once when the same
        chromadb version wrote it, otherwise by a probe query, after which its files must still
        be as recorded (chromadb 1.5 rewrites a 0.6 collection's HNSW files when it opens them:
        such a generation is rebuilt, not trusted)."""
        if self.manifest.get("chromadb") == chroma_version():
            return True
        problem = self.probe() or "; ".join(file_problems(self.path, self.files, deep=False))
        if problem:
            log.info("index %s (chromadb %s) does not work with chromadb %s: %s", self.name,
                     self.manifest.get("chromadb"), chroma_version(), problem)
        return not problem


def close_client(client: ClientAPI) -> None:
    """Close a Chroma client, whatever state it is in."""
    close = getattr(client, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
