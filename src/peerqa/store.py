"""The index on disk: generations of chunks and vectors, switched whole, one writer at a time.

Layout of an index folder::

    .lock                    flock held by the one process writing
    CURRENT                  JSON naming the live generation; replaced atomically
    generations/<gen>/       manifest.json, chunks.jsonl, vectors.npy, sentences.npz,
                             chroma/ (embedded mode)

A build writes a fresh generation, then points CURRENT at it with ``os.replace``: a build killed
half way leaves the previous generation live, and the next build removes the leftovers.
The generation before the live one is kept so that a process still reading it is not cut off.
With ``chroma_host`` set, vectors go to a ``chroma run`` server, one collection per generation,
and the folder keeps the manifest, the chunks and the pointer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import IndexLockedError, IndexNotFoundError, StoreError
from .types import Chunk

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

FORMAT_VERSION = 2
_COLLECTION_PREFIX = "peerqa-"


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


@dataclass(frozen=True, slots=True)
class SentenceVectors:
    """One vector per sentence of every chunk: its chunk's index, its document offsets."""

    chunk: np.ndarray  # (n,) int32, index into the generation's chunks
    spans: np.ndarray  # (n, 2) int32, document offsets of the sentence
    vectors: np.ndarray  # (n, dim) float32, L2-normalised


@dataclass(frozen=True, slots=True)
class ChromaLocation:
    """Where vectors live: an embedded folder (host None) or a Chroma server."""

    host: str | None = None
    port: int = 8000

    def client(self, path: Path | None = None) -> ClientAPI:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if self.host:
                return chromadb.HttpClient(host=self.host, port=self.port, settings=settings)
            assert path is not None
            return chromadb.PersistentClient(path=str(path), settings=settings)
        except Exception as e:  # chromadb raises plain ValueError/ConnectionError variants
            where = (
                f"Chroma server at {self.host}:{self.port}" if self.host else f"Chroma at {path}"
            )
            hint = (
                "start it with `chroma run --path DIR --port PORT` or unset PEERQA_CHROMA_HOST"
                if self.host
                else "delete the index folder to rebuild it"
            )
            raise StoreError(f"cannot open {where} ({e}): {hint}") from e


class Generation:
    """One complete, immutable build: its manifest, chunks, vectors and Chroma collection."""

    def __init__(self, path: Path, location: ChromaLocation) -> None:
        self.path = path
        self.location = location
        try:
            self.manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
            with open(path / "chunks.jsonl", encoding="utf-8") as f:
                self.chunks = [Chunk(**json.loads(line)) for line in f if line.strip()]
        except (OSError, ValueError, TypeError) as e:
            raise StoreError(
                f"index generation {path} is unreadable ({e}): run `peerqa index --rebuild`"
            ) from e
        self._collection: Collection | None = None
        self._vectors: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def collection_name(self) -> str:
        return str(self.manifest.get("collection", _COLLECTION_PREFIX + self.name))

    def vectors(self) -> np.ndarray:
        vectors: np.ndarray = np.load(self.path / "vectors.npy")
        return vectors

    def sentences(self) -> SentenceVectors | None:
        """The sentence-level vectors of this generation (None for an index without them)."""
        path = self.path / "sentences.npz"
        if not path.exists():
            return None
        with np.load(path) as data:
            return SentenceVectors(data["chunk"], data["spans"], data["vectors"])

    def _scan(
        self, vector: np.ndarray, doc_ids: Sequence[str] | None
    ) -> list[tuple[str, float]]:
        if self._vectors is None:
            self._vectors = self.vectors()
            if len(self._vectors) != len(self.chunks):
                raise StoreError(f"index generation {self.path} has {len(self._vectors)} vectors "
                                 f"for {len(self.chunks)} chunks: run `peerqa index --rebuild`")
        sims = self._vectors @ np.asarray(vector, dtype=np.float32)
        rows = np.argsort(-sims, kind="stable")
        if doc_ids:
            wanted = set(doc_ids)
            rows = rows[[self.chunks[i].doc_id in wanted for i in rows.tolist()]]
        chunks = self.chunks
        return [(chunks[i].chunk_id, s) for i, s in zip(rows.tolist(), sims[rows].tolist(),
                                                        strict=True)]

    @property
    def collection(self) -> Collection:
        if self._collection is None:
            client = self.location.client(self.path / "chroma")
            try:
                collection = client.get_collection(self.collection_name, embedding_function=None)
            except Exception as e:
                raise StoreError(
                    f"the index's Chroma collection {self.collection_name!r} is missing ({e}): "
                    "run `peerqa index --rebuild`"
                ) from e
            self._collection = collection
        return self._collection

    def query(
        self, vector: np.ndarray, n: int, doc_ids: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """Nearest chunks to ``vector`` as (chunk_id, cosine similarity), best first."""
        where: Any = {"doc_id": {"$in": list(doc_ids)}} if doc_ids else None
        n = min(n, len(self.chunks))
        if n <= 0:
            return []
        if n == len(self.chunks) and not self.location.host:
            # Every chunk is asked for: the answer is an exhaustive scan, which numpy does exactly
            # over this generation's vectors.npy in well under a millisecond at 1x, without
            # starting embedded Chroma (importing chromadb alone costs ~0.5 s of CPU).
            return self._scan(vector, doc_ids)
        try:
            res = self.collection.query(
                query_embeddings=np.asarray(vector, dtype=np.float32)[None, :],
                n_results=n,
                where=where,
                include=["distances"],
            )
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"vector search failed ({e}): check the Chroma store") from e
        distances = res["distances"] or [[]]
        pairs = zip(res["ids"][0], distances[0], strict=True)
        return [(i, 1.0 - float(d)) for i, d in pairs]


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

    def current_name(self) -> str | None:
        try:
            return str(json.loads(self._current_file.read_text())["generation"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreError(
                f"{self._current_file} is unreadable ({e}): run `peerqa index --rebuild`"
            ) from e

    def _pointer_for_writing(self) -> dict[str, Any]:
        """CURRENT's content, or {} when it is missing or corrupt (a rebuild replaces it)."""
        try:
            data = json.loads(self._current_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def current_manifest(self) -> dict[str, Any] | None:
        """The live generation's manifest, or None when there is no readable one."""
        name = self.current_name()
        if not name:
            return None
        try:
            manifest = json.loads((self._generations / name / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def open(self) -> Generation:
        """The live generation; IndexNotFoundError when nothing has been built yet."""
        name = self.current_name()
        if not name or not (self._generations / name).is_dir():
            raise IndexNotFoundError(
                f"no index at {self.directory}: run `peerqa index` to build it"
            )
        return Generation(self._generations / name, self.location)

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
    ) -> Generation:
        """Write a complete generation and make it live. Call under ``write_lock``."""
        if len(chunks) != len(vectors) or len(chunks) != len(metadatas):
            raise StoreError("chunks, vectors and metadata differ in length")
        self._remove_leftovers()
        name = time.strftime("g%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        path = self._generations / name
        path.mkdir(parents=True)
        manifest = {**manifest, "format": FORMAT_VERSION, "generation": name,
                    "collection": _COLLECTION_PREFIX + name, "n_chunks": len(chunks),
                    "created": time.time()}
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
        client = self.location.client(path / "chroma")
        try:
            collection = client.create_collection(
                manifest["collection"],
                metadata={"hnsw:space": "cosine", "peerqa_generation": name},
                embedding_function=None,
            )
            batch = max(1, min(int(client.get_max_batch_size()), 2048))
            for i in range(0, len(chunks), batch):
                part = slice(i, i + batch)
                collection.add(
                    ids=[c.chunk_id for c in chunks[part]],
                    embeddings=np.asarray(vectors[part], dtype=np.float32),
                    metadatas=list(metadatas[part]),
                    documents=[c.text for c in chunks[part]],
                )
                if progress:
                    progress(len(chunks[part]))
        except Exception as e:
            raise StoreError(f"writing vectors to Chroma failed ({e})") from e
        _fsync_write(path / "manifest.json", json.dumps(manifest, indent=1).encode())
        _fsync_dir(path)
        previous = self._pointer_for_writing().get("generation")
        tmp = self.directory / f"CURRENT.{os.getpid()}.tmp"
        _fsync_write(tmp, json.dumps({"generation": name, "previous": previous}).encode())
        os.replace(tmp, self._current_file)
        _fsync_dir(self.directory)
        self._prune(keep={name, previous})
        return Generation(path, self.location)

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
                    self.location.client().delete_collection(_COLLECTION_PREFIX + path.name)
            shutil.rmtree(path, ignore_errors=True)
