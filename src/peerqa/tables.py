"""What a generation holds per chunk and per sentence, in forms a process reads without loading.

``chunks.jsonl`` stays the record of the chunks (one JSON object per line, readable by
anything). Beside it, ``chunk_table.npz`` holds what a search needs of every chunk without
reading them all: its document (a code into the document ids), its offsets, where its line
ends and its section (a number per document and section, for the section pull). Opening a
generation of 26,000 chunks then parses none of them (parsing them all took 0.2 s, a third of
opening); a search parses the few it returns.

``SentenceVectors`` are every chunk's sentences with their vectors, saved as ``.npy`` files
that are memory-mapped. Each distinct vector is stored once (a second edition of a document
repeats most of its sentences; the 100x benchmark corpus, 46% of them), so a search's scan of
every sentence reads each distinct one once.

``TokenVectors`` are each chunk's content-token vectors (late interaction), int8 with a scale per
row, saved and memory-mapped the same way: a search reads the rows of the few hundred chunks it
reranks.

``WordVectors`` are the vectors of the words the chunks use, each word read alone: the answer's
check compares a question's unmatched words with the evidence's by them (``answer/meaning``).
"""

from __future__ import annotations

import json
import mmap
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import overload

import numpy as np

from .types import Chunk

CHUNKS = "chunks.jsonl"
TABLE = "chunk_table.npz"
SENTENCE_FILES = {"chunk": "sentence_chunks.npy", "spans": "sentence_spans.npy",
                  "rows": "sentence_rows.npy", "table": "sentence_vectors.npy"}
TOKEN_FILES = {"start": "token_starts.npy", "vectors": "token_vectors.npy",
               "scale": "token_scales.npy"}
WORD_FILES = {"words": "words.json", "vectors": "word_vectors.npy"}
TOKENS_KEPT = 64 * 2**20
"""Bytes of token vectors a process keeps mapped in after a search (``TokenVectors.forget``)."""
ALIGN = 64
"""Rows the sentence vector table is padded to a multiple of (with zero rows): a product over
any aligned block of 64 rows then gives each row exactly what the product over the whole table
does (BLAS's matrix-vector kernels take rows in blocks of 4 to 16, and a last, partial block
is summed differently)."""
_FIELDS = [f.name for f in fields(Chunk)]


def chunk_lines(chunks: Sequence[Chunk]) -> bytes:
    """``chunks.jsonl``'s content: one JSON object per chunk, one per line."""
    return "".join(
        json.dumps({f: getattr(c, f) for f in _FIELDS}, ensure_ascii=False) + "\n"
        for c in chunks
    ).encode("utf-8")


@dataclass(frozen=True, slots=True)
class ChunkTable:
    """Per chunk: its document's code, its (start, end) offsets, where its line ends, its
    section's number."""

    doc_ids: list[str]
    doc: np.ndarray  # (n,) int32 index into doc_ids
    bounds: np.ndarray  # (n, 2) int64 document offsets
    ends: np.ndarray  # (n,) int64 byte offset just past each line of chunks.jsonl
    section: np.ndarray | None = None
    """(n,) int64: chunks of one document and section share a number, numbered in order of
    first chunk (None in a table of format 4, written without it)."""

    @classmethod
    def of(cls, chunks: Sequence[Chunk], data: bytes) -> ChunkTable:
        """The table of ``chunks``, whose ``chunks.jsonl`` content is ``data``."""
        codes: dict[str, int] = {}
        doc = np.array([codes.setdefault(c.doc_id, len(codes)) for c in chunks], dtype=np.int32)
        bounds = np.array([(c.start, c.end) for c in chunks], dtype=np.int64).reshape(-1, 2)
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10).astype(np.int64) + 1
        numbers: dict[tuple[str, str], int] = {}
        section = np.array([numbers.setdefault((c.doc_id, c.section), len(numbers))
                            for c in chunks], dtype=np.int64)
        return cls(list(codes), doc, bounds, ends, section)

    def save(self, path: Path) -> None:
        """Write the table (synced)."""
        with open(path, "wb") as f:
            doc_ids = np.array(self.doc_ids, dtype=str)
            if self.section is None:  # a table read from format 4
                np.savez(f, doc_ids=doc_ids, doc=self.doc, bounds=self.bounds, ends=self.ends)
            else:
                np.savez(f, doc_ids=doc_ids, doc=self.doc, bounds=self.bounds, ends=self.ends,
                         section=self.section)
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, path: Path) -> ChunkTable:
        """The saved table; OSError, ValueError or KeyError when it is damaged."""
        with np.load(path, allow_pickle=False) as data:
            table = cls([str(d) for d in data["doc_ids"].tolist()], data["doc"], data["bounds"],
                        data["ends"], data["section"] if "section" in data.files else None)
        n = len(table.doc)
        if table.bounds.shape != (n, 2) or table.ends.shape != (n,) or (
                table.section is not None and table.section.shape != (n,)):
            raise ValueError(f"its arrays disagree ({n} chunks)")
        if n and table.section is not None and (
                int(table.section.min()) < 0 or int(table.section.max()) >= n):
            raise ValueError("a chunk's section number is out of range")
        if n and (int(table.doc.min()) < 0 or int(table.doc.max()) >= len(table.doc_ids)
                  or bool((np.diff(table.ends) <= 0).any()) or int(table.ends[0]) <= 0):
            raise ValueError("it points outside its own lists")
        return table


class ChunkList(Sequence[Chunk]):
    """The chunks of ``chunks.jsonl``, each parsed when first asked for (the last few thousand
    kept). A line that is not the chunk the table names raises ``damaged(problem)``."""

    KEEP = 4096

    def __init__(
        self, path: Path, table: ChunkTable, damaged: Callable[[str], Exception]
    ) -> None:
        self.table = table
        self._path = path
        self._damaged = damaged
        self._fd: int | None = None
        self._parsed: dict[int, Chunk] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.table.ends)

    @overload
    def __getitem__(self, i: int) -> Chunk: ...

    @overload
    def __getitem__(self, i: slice) -> list[Chunk]: ...

    def __getitem__(self, i: int | slice) -> Chunk | list[Chunk]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        chunk = self._parsed.get(i)
        if chunk is None:
            try:
                chunk = self._parse(i)
            except (OSError, ValueError, TypeError) as e:
                raise self._damaged(f"{CHUNKS}: {str(e).splitlines()[0][:200]}") from e
            if len(self._parsed) >= self.KEEP:
                self._parsed.clear()
            self._parsed[i] = chunk
        return chunk

    def __iter__(self) -> Iterator[Chunk]:
        return (self[i] for i in range(len(self)))

    def _parse(self, i: int) -> Chunk:
        """Chunk ``i`` from its line; ValueError when the line is not the chunk the table names
        (a damaged file)."""
        with self._lock:
            if self._fd is None:
                fd = os.open(self._path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                size = os.fstat(fd).st_size
                if size != int(self.table.ends[-1]):
                    os.close(fd)
                    raise ValueError(f"it is {size} bytes, its table says "
                                     f"{int(self.table.ends[-1])}")
                self._fd = fd
                weakref.finalize(self, os.close, fd)
        # One read per chunk (a memory map would count 64 KB around each line as resident).
        start = int(self.table.ends[i - 1]) if i else 0
        line = os.pread(self._fd, int(self.table.ends[i]) - start, start)
        chunk = Chunk(**json.loads(line))
        doc = self.table.doc_ids[int(self.table.doc[i])]
        if (chunk.doc_id, chunk.start, chunk.end) != (doc, *self.table.bounds[i].tolist()):
            raise ValueError(f"line {i + 1} is not the chunk its table names")
        return chunk


@dataclass(frozen=True, slots=True)
class SentenceVectors:
    """Every chunk's sentences: chunk index, document offsets and vector of each.

    ``table`` holds each distinct vector once (zero rows pad it to a multiple of ``ALIGN``);
    ``rows`` says which row is each sentence's.
    """

    chunk: np.ndarray  # (n,) int32, index into the generation's chunks
    spans: np.ndarray  # (n, 2) int32, document offsets of the sentence
    table: np.ndarray  # (m, dim) float32, L2-normalised rows; m a multiple of ALIGN
    rows: np.ndarray  # (n,) int32, index into table

    @classmethod
    def of(cls, chunk: np.ndarray, spans: np.ndarray, vectors: np.ndarray) -> SentenceVectors:
        """From one vector per sentence; identical vectors stored once, in order of first use."""
        vectors = np.asarray(vectors, dtype=np.float32)
        first: dict[bytes, int] = {}
        rows = np.array([first.setdefault(v.tobytes(), i) for i, v in enumerate(vectors)],
                        dtype=np.int64)
        kept = np.array(sorted(set(rows.tolist())), dtype=np.int64)
        position = np.zeros(len(vectors), dtype=np.int32)
        position[kept] = np.arange(len(kept), dtype=np.int32)
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        table = np.zeros((-(-len(kept) // ALIGN) * ALIGN, dim), dtype=np.float32)
        table[: len(kept)] = vectors[kept]
        return cls(np.asarray(chunk, dtype=np.int32), np.asarray(spans, np.int32).reshape(-1, 2),
                   table, position[rows])

    @property
    def vectors(self) -> np.ndarray:
        """One vector per sentence, in sentence order (a copy)."""
        vectors: np.ndarray = np.asarray(self.table)[np.asarray(self.rows)]
        return vectors

    def save(self, folder: Path) -> None:
        """Write one ``.npy`` file per array (synced)."""
        for part, name in SENTENCE_FILES.items():
            with open(folder / name, "wb") as f:
                np.save(f, np.ascontiguousarray(getattr(self, part)))
                f.flush()
                os.fsync(f.fileno())

    @classmethod
    def load(cls, folder: Path, bounds: np.ndarray | None) -> SentenceVectors:
        """The saved sentences, memory-mapped; ValueError (saying what is wrong) when their
        shapes disagree or, given the chunks' (start, end) ``bounds``, a sentence is not inside
        its chunk. OSError when a file is missing."""
        p = {part: np.load(folder / name, mmap_mode="r") for part, name in SENTENCE_FILES.items()}
        s = cls(p["chunk"], p["spans"], p["table"], p["rows"])
        n = len(s.chunk)
        if s.chunk.ndim != 1 or s.spans.shape != (n, 2) or s.rows.shape != (n,) \
                or s.table.ndim != 2 or len(s.table) % ALIGN:
            raise ValueError(f"{n} sentences with {len(s.spans)} spans, {len(s.rows)} rows "
                             f"and a table of {len(s.table)}")
        if not n:
            return s
        rows, chunk, spans = np.asarray(s.rows), np.asarray(s.chunk), np.asarray(s.spans)
        if int(rows.min()) < 0 or int(rows.max()) >= len(s.table):
            raise ValueError("a sentence's vector is outside the table")
        if bounds is not None and len(bounds):
            if int(chunk.min()) < 0 or int(chunk.max()) >= len(bounds):
                raise ValueError("a sentence of a chunk that does not exist")
            inside = bounds[chunk]
            if not ((inside[:, 0] <= spans[:, 0]) & (spans[:, 0] < spans[:, 1])
                    & (spans[:, 1] <= inside[:, 1])).all():
                raise ValueError("a sentence outside its chunk")
        return s


def quantised(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float rows as int8, each row's largest component as +-127, and each row's scale (row =
    values * scale, within half a step)."""
    rows = np.asarray(rows, dtype=np.float32)
    rows = rows.reshape(len(rows), -1)
    scale = np.abs(rows).max(axis=1, initial=0.0) / 127
    safe = np.where(scale > 0, scale, 1).astype(np.float32)
    return (np.clip(np.rint(rows / safe[:, None]), -127, 127).astype(np.int8),
            scale.astype(np.float32))


@dataclass(frozen=True, slots=True)
class TokenVectors:
    """The contextual vector of each content token of every chunk (late interaction): rows of
    one chunk are contiguous, ``start[i]:start[i + 1]``.

    Each row is stored as int8 with its own scale (row = vectors[i] * scale[i]): a search
    multiplies the rows of the chunks it reranks as integers (``late.maxsim``); scores move by at
    most 0.0013 from float rows' (their spread over the bundled corpus: 0.043).
    """

    start: np.ndarray  # (chunks + 1,) int64, where each chunk's rows begin
    vectors: np.ndarray  # (n, dim) int8
    scale: np.ndarray  # (n,) float32, each row's scale
    mapping: mmap.mmap | None = None
    """The file ``vectors`` is mapped from, when loaded (``forget``)."""

    def forget(self) -> None:
        """Drop the pages a search read from this process's memory (they stay in the page
        cache, shared, and are read back on the next access), when the file is larger than
        ``TOKENS_KEPT``. Every search reads other candidates' rows: at 100x, 300 a question,
        and after a hundred questions most of the file (773 MB) would count as the process's
        own. A smaller file is kept: the bundled corpus's (7.9 MB) is read whole by every
        search, and faulting it back in took about 0.6 ms of a search's 4.4 (the query read
        before)."""
        if self.mapping is not None and len(self.mapping) > TOKENS_KEPT \
                and hasattr(mmap, "MADV_DONTNEED"):
            self.mapping.madvise(mmap.MADV_DONTNEED)

    @classmethod
    def of(cls, start: np.ndarray, vectors: np.ndarray) -> TokenVectors:
        """From float rows: each row's largest component stored as +-127 (``quantised``)."""
        rows, scale = quantised(vectors)
        return cls(np.asarray(start, dtype=np.int64), rows, scale)

    def rows(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``i``'s stored rows and their scales (views: memory-mapped ones stay on disk)."""
        a, b = int(self.start[i]), int(self.start[i + 1])
        return self.vectors[a:b], self.scale[a:b]

    def save(self, folder: Path) -> None:
        """Write one ``.npy`` file per array (synced)."""
        arrays = {"start": np.asarray(self.start, dtype=np.int64),
                  "vectors": np.asarray(self.vectors, dtype=np.int8),
                  "scale": np.asarray(self.scale, dtype=np.float32)}
        for part, name in TOKEN_FILES.items():
            with open(folder / name, "wb") as f:
                np.save(f, np.ascontiguousarray(arrays[part]))
                f.flush()
                os.fsync(f.fileno())

    @classmethod
    def load(cls, folder: Path, chunks: int | None) -> TokenVectors:
        """The saved token vectors, memory-mapped; ValueError (saying what is wrong) when the
        starts do not run from 0 up to the rows there are, one per chunk of ``chunks``, or the
        arrays are not of their kinds and shapes. OSError when a file is missing."""
        p = {part: np.load(folder / name, mmap_mode="r") for part, name in TOKEN_FILES.items()}
        vectors, mapping = _own_mapping(folder / TOKEN_FILES["vectors"], p["vectors"])
        t = cls(p["start"], vectors, p["scale"], mapping)
        if t.start.ndim != 1 or not len(t.start) or t.start.dtype != np.int64 \
                or t.vectors.ndim != 2 or t.vectors.dtype != np.int8 \
                or t.scale.shape != (len(t.vectors),) or t.scale.dtype != np.float32:
            raise ValueError(f"starts {t.start.shape} {t.start.dtype}, vectors "
                             f"{t.vectors.shape} {t.vectors.dtype}, scales {t.scale.shape} "
                             f"{t.scale.dtype}")
        if chunks is not None and len(t.start) != chunks + 1:
            raise ValueError(f"token starts for {len(t.start) - 1} chunks, not {chunks}")
        start = np.asarray(t.start)
        if int(start[0]) != 0 or int(start[-1]) != len(t.vectors) \
                or bool((np.diff(start) < 0).any()):
            raise ValueError("a chunk's token rows are outside the table")
        return t


@dataclass(frozen=True, slots=True)
class WordVectors:
    """Each word the chunks use (folded, as ``text.words`` gives it) and its vector, the word
    embedded alone. Built with the index, so a question embeds only the words the corpus never
    uses (embedding an answer's new evidence words was a third of its time)."""

    words: tuple[str, ...]
    vectors: np.ndarray  # (n, dim) float32 unit rows, memory-mapped when loaded
    position: dict[str, int]

    @classmethod
    def of(cls, words: Sequence[str], vectors: np.ndarray) -> WordVectors:
        words = tuple(words)
        return cls(words, np.asarray(vectors, dtype=np.float32).reshape(len(words), -1),
                   {w: i for i, w in enumerate(words)})

    def get(self, word: str) -> np.ndarray | None:
        """The word's vector, or None when the chunks never use it."""
        i = self.position.get(word)
        return None if i is None else np.asarray(self.vectors[i])

    def save(self, folder: Path) -> None:
        """``words.json`` and ``word_vectors.npy`` (synced)."""
        with open(folder / WORD_FILES["words"], "wb") as f:
            f.write(json.dumps(list(self.words), ensure_ascii=False).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        with open(folder / WORD_FILES["vectors"], "wb") as f:
            np.save(f, np.ascontiguousarray(self.vectors, dtype=np.float32))
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, folder: Path) -> WordVectors:
        """The saved words, their vectors memory-mapped; ValueError (saying what is wrong) when
        the words are not a list of distinct strings, one per float32 row. OSError when a file
        is missing."""
        words = json.loads((folder / WORD_FILES["words"]).read_text(encoding="utf-8"))
        vectors = np.load(folder / WORD_FILES["vectors"], mmap_mode="r")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError("words.json is not a list of words")
        if vectors.ndim != 2 or vectors.dtype != np.float32 or len(vectors) != len(words):
            raise ValueError(f"{len(words)} words and vectors {vectors.shape} {vectors.dtype}")
        found = cls(tuple(words), vectors, {w: i for i, w in enumerate(words)})
        if len(found.position) != len(words):
            raise ValueError("a word is listed twice")
        return found


def _own_mapping(path: Path, header: np.ndarray) -> tuple[np.ndarray, mmap.mmap | None]:
    """``header`` (an ``np.load`` memory map of ``path``) as an array over a mapping of our
    own, which ``TokenVectors.forget`` can advise; ``header`` itself when that is not possible."""
    offset = getattr(header, "offset", None)
    if offset is None or header.size == 0:
        return header, None
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    array = np.frombuffer(mapping, dtype=header.dtype, count=header.size, offset=offset)
    return array.reshape(header.shape), mapping
