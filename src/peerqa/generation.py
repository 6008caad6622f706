"""One index generation on disk: its files and their records, its checks, its Chroma collection.

A generation's manifest records what it holds: the size and sha256 of every file in its folder
(``records.py``: whatever files a build writes) and the chromadb version that wrote it. Opening
checks the sizes; the hashes of Chroma's HNSW files, which its native code would crash on, are
checked before Chroma first opens them (an embedded search never does: it scans
``vectors.npy``). ``Generation.verify(deep=True)``, run by ``peerqa index``, checks every hash,
SQLite's own structure check and a probe query. What a search or an answer reads (chunk,
sentence, token and word vectors, the BM25 arrays) is memory-mapped and checked for shape and
bounds when opened. Chroma's native code reports a panic on stderr before Python sees the
exception: every call that opens Chroma runs with stderr captured (``quietly``), and whatever
Chroma raises becomes a one-line ``StoreError``."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import sys
import tempfile
import threading
import weakref
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from tokenize import TokenError
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .errors import IndexDamagedError, StoreError
from .lexical import COUNTS_FILE, LEXICAL_DIR, Bm25Index, Counts
from .records import MANIFEST, NATIVE_LOADED, file_problems
from .tables import (
    CHUNKS,
    SENTENCE_FILES,
    TABLE,
    TOKEN_FILES,
    WORD_FILES,
    ChunkList,
    ChunkTable,
    SentenceVectors,
    TokenVectors,
    WordVectors,
)
from .types import Chunk

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)
T = TypeVar("T")

COLLECTION_PREFIX = "peerqa-"
# What reading a damaged .npy/.npz raises (numpy parses the header with ast.literal_eval).
_NUMPY_FAILURES = (OSError, ValueError, EOFError, KeyError, TypeError, MemoryError,
                   SyntaxError, TokenError, zipfile.BadZipFile)
VECTORS = "vectors.npy"
OLD_SENTENCES = "sentences.npz"  # format 3's, read only for vectors worth reusing
KEYS = "keys.json"
"""The key of each embedded text (chunks, then sentences), by which a later build reuses it."""


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


# --------------------------------------------------------------------------- generations


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
            problems = file_problems(path, self.files, deep=False, native=False)
            if problems:
                raise self.damaged("; ".join(problems[:3]))
        self.chunks: Sequence[Chunk] = []
        self.table = ChunkTable([], np.zeros(0, np.int32), np.zeros((0, 2), np.int64),
                                np.zeros(0, np.int64))
        name = TABLE if (path / TABLE).exists() else CHUNKS
        try:
            if name == TABLE:  # format 4: chunks parsed when asked for
                self.table = ChunkTable.load(path / TABLE)
                self.chunks = ChunkList(path / CHUNKS, self.table, self.damaged)
            else:
                data = (path / CHUNKS).read_bytes()
                self.chunks = [Chunk(**json.loads(line)) for line in data.splitlines()
                               if line.strip()]
                self.table = ChunkTable.of(self.chunks, data)
        except _NUMPY_FAILURES as e:
            if strict:
                raise self.damaged(f"{name}: {reason(e)}") from e
        if strict and len(self.chunks) != manifest.get("n_chunks", len(self.chunks)):
            raise self.damaged(
                f"{CHUNKS} holds {len(self.chunks)} chunks, {manifest['n_chunks']} expected"
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
        """The chunk vectors, memory-mapped from ``vectors.npy``, one row per chunk."""
        try:
            vectors: np.ndarray = np.load(self.path / VECTORS, mmap_mode="r")
        except _NUMPY_FAILURES as e:
            raise self.damaged(f"{VECTORS}: {reason(e)}") from e
        if vectors.ndim != 2:
            raise self.damaged(f"{VECTORS} holds an array of {vectors.ndim} dimensions")
        return vectors

    def sentences(self) -> SentenceVectors | None:
        """The sentence-level vectors of this generation, memory-mapped (None without them)."""
        if not (self.path / SENTENCE_FILES["table"]).exists():
            return None
        try:
            return SentenceVectors.load(self.path, self.table.bounds if self.chunks else None)
        except _NUMPY_FAILURES as e:
            raise self.damaged(f"sentence files: {reason(e)}") from e

    def tokens(self) -> TokenVectors | None:
        """The chunks' token vectors, memory-mapped (None for an index built without them)."""
        if not (self.path / TOKEN_FILES["vectors"]).exists():
            return None
        try:
            return TokenVectors.load(self.path, len(self.chunks))
        except _NUMPY_FAILURES as e:
            raise self.damaged(f"token files: {reason(e)}") from e

    def sound_tokens(self) -> TokenVectors | None:
        """The token vectors (memory-mapped) if their files still have their recorded hashes
        and their starts are sound, else None: what a build may reuse."""
        with contextlib.suppress(*_NUMPY_FAILURES):
            if self.sound(*TOKEN_FILES.values()):
                return TokenVectors.load(self.path, None)
        return None

    def words(self, *, sound: bool = False) -> WordVectors | None:
        """The chunks' words and their vectors: None without them, or (``sound``, what a build
        reuses) when their files lack their recorded hashes."""
        if not (self.path / WORD_FILES["vectors"]).exists() \
                or (sound and not self.sound(*WORD_FILES.values())):
            return None
        try:
            return WordVectors.load(self.path)
        except _NUMPY_FAILURES as e:
            if sound:
                return None
            raise self.damaged(f"word files: {reason(e)}") from e

    def lexical(self) -> Bm25Index:
        """The BM25 index saved at build time, memory-mapped."""
        try:
            index = Bm25Index.load(self.path / LEXICAL_DIR)
        except _NUMPY_FAILURES as e:
            raise self.damaged(f"{LEXICAL_DIR}/: {reason(e)}") from e
        problem = index.problem()
        if index.size != len(self.chunks):
            problem = f"it scores {index.size} chunks, not {len(self.chunks)}"
        if problem:
            raise self.damaged(f"{LEXICAL_DIR}/: {problem}")
        return index

    def counts(self) -> Counts:
        """The vocabulary's counts saved at build time."""
        try:
            counts = Counts.load(self.path / COUNTS_FILE)
        except (*_NUMPY_FAILURES, AttributeError) as e:
            raise self.damaged(f"{COUNTS_FILE}: {reason(e)}") from e
        if counts.chunks != len(self.chunks):
            raise self.damaged(f"{COUNTS_FILE} counts {counts.chunks} chunks, not "
                               f"{len(self.chunks)}")
        return counts

    def keys(self) -> tuple[list[str], list[str]]:
        """The keys of the embedded texts: chunks', sentences' (empty when unreadable)."""
        try:
            data = json.loads((self.path / KEYS).read_bytes())
        except FileNotFoundError:
            data = self.manifest  # format 3 kept them in its manifest
        except (OSError, ValueError):
            return [], []
        try:
            return ([str(k) for k in data.get("text_keys") or []],
                    [str(k) for k in data.get("sentence_keys") or []])
        except (AttributeError, TypeError):
            return [], []

    def sound(self, *names: str) -> bool:
        """Whether these files are recorded and still have their recorded hashes."""
        records = {name: self.files.get(name) for name in names}
        return all(records.values()) and not file_problems(self.path, records, deep=True)

    def sound_vectors(self) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
        """The chunk vectors, and the sentence vector table with each sentence's row in it
        (memory-mapped), each only if its files still have their recorded hashes."""
        vectors = sentences = None
        with contextlib.suppress(*_NUMPY_FAILURES):
            if self.sound(VECTORS):
                vectors = np.load(self.path / VECTORS, mmap_mode="r")
        with contextlib.suppress(*_NUMPY_FAILURES):
            names = SENTENCE_FILES["table"], SENTENCE_FILES["rows"]
            if self.sound(*names):
                table, rows = (np.load(self.path / name, mmap_mode="r") for name in names)
                sentences = table, rows
            elif self.sound(OLD_SENTENCES):
                with np.load(self.path / OLD_SENTENCES) as data:
                    table = data["vectors"]
                sentences = table, np.arange(len(table))
        return vectors, sentences

    @property
    def collection(self) -> Collection:
        with self._lock:
            if self._collection is None:
                # Chroma's native code crashes on a damaged HNSW file: hashed before it loads.
                native = {rel: record for rel, record in self.files.items()
                          if rel.startswith(NATIVE_LOADED)}
                problems = file_problems(self.path, native, deep=False)
                if problems:
                    raise self.damaged("; ".join(problems[:3]))
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

    @property
    def scans_locally(self) -> bool:
        """Whether a search scans this generation's own vectors (embedded) rather than asking
        a Chroma server."""
        return not self.location.host

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        """Every chunk's cosine similarity to ``vector``, exactly, from the memory-mapped
        ``vectors.npy`` (Chroma's vectors, written by the same build): at 26,000 chunks about
        the cost of one Chroma query, and neither chromadb nor its HNSW files are loaded."""
        with self._lock:
            if self._vectors is None:
                vectors = self.vectors()
                if len(vectors) != len(self.chunks):
                    raise self.damaged(f"{VECTORS} holds {len(vectors)} vectors for "
                                       f"{len(self.chunks)} chunks")
                self._vectors = vectors
        sims: np.ndarray = self._vectors @ np.asarray(vector, dtype=np.float32)
        return sims

    def query(
        self, vector: np.ndarray, n: int, doc_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """Nearest chunks to ``vector`` as (chunk_id, cosine similarity), best first.

        When every chunk is asked for in embedded mode, the answer is the exact scan of
        ``similarities``, without starting embedded Chroma (importing chromadb alone costs
        ~0.5 s). Otherwise, and always on a Chroma server, Chroma's index answers.
        """
        where: Any = {"doc_id": {"$in": list(doc_ids)}} if doc_ids else None
        n = min(n, len(self.chunks))
        if n <= 0:
            return []
        if n == len(self.chunks) and self.scans_locally:
            sims = self.similarities(vector)
            rows = np.argsort(-sims, kind="stable")
            if doc_ids:
                codes = [i for i, d in enumerate(self.table.doc_ids) if d in set(doc_ids)]
                rows = rows[np.isin(self.table.doc[rows], codes)]
            return [(self.chunks[i].chunk_id, s)
                    for i, s in zip(rows.tolist(), sims[rows].tolist(), strict=True)]
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
            vector = np.load(self.path / VECTORS, mmap_mode="r")[0]
            found = quietly(lambda: self.query(np.asarray(vector), 1))
        except BaseException as e:
            if fatal(e):
                raise
            return f"a probe query failed: {reason(e)}"
        if not found or found[0][1] < 0.999:
            return "a probe query did not find a stored vector"
        return None

    def verify(self, deep: bool, probe: bool = True) -> list[str]:
        """What is wrong with this generation: file sizes, or when ``deep`` hashes, SQLite's
        check and a probe query. Empty when it is sound.

        Without ``probe``, an embedded generation that the installed chromadb wrote and whose
        every file has its recorded hash is taken as sound without starting Chroma (importing
        chromadb alone costs a one-shot command about 0.4 s); a server's collection is always
        probed, since no file of it is here to hash."""
        problems = file_problems(self.path, self.files, deep=deep)
        if not self.files:
            problems.append(f"{MANIFEST} records no files (written by an older peerqa)")
        if not probe and self.location.host is None \
                and self.manifest.get("chromadb") == chroma_version():
            return problems
        if deep and not problems:
            failed = self.probe()
            if failed:
                problems.append(failed)
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
