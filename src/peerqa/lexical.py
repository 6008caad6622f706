"""The lexical side of the search, built once per generation and memory-mapped when opened.

``LexicalIndex`` is all the retriever asks of it: a score for every chunk given a query's stemmed
tokens. ``Bm25Index`` answers it in this process: bm25s computes each term's BM25 score in every
chunk at build time (a CSC matrix, one column per term), saved as ``.npy`` files that a process
maps instead of re-tokenising the corpus; a query adds up its terms' columns, as bm25s does.
A distributed Chroma deployment would answer the same call with its sparse index (chromadb 1.5
refuses sparse indexes in local and single-node mode; see docs/scaling.md).

``Counts`` is what the answering side asks of the corpus's words (how many chunks use a stem,
whether a word occurs at all): small, saved beside the index, and kept apart from it so it stays
local wherever BM25 goes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .text import words
from .types import Document

LEXICAL_DIR = "bm25"
"""The folder of a generation holding the BM25 index."""
COUNTS_FILE = "vocabulary.json"
"""The file of a generation holding the vocabulary's counts."""
_TERMS = "terms.json"
_ARRAYS = ("data", "indices", "indptr")


class LexicalIndex(Protocol):
    """A score for every chunk of a generation from a query's stemmed tokens."""

    @property
    def size(self) -> int:
        """How many chunks it scores."""
        ...

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """One float32 score per chunk, higher is better; 0 where no token matches."""
        ...


class Bm25Index:
    """BM25 scores of every term in every chunk (bm25s's Lucene variant, k1 1.5, b 0.75), as a
    CSC matrix: column ``t`` holds ``data[indptr[t]:indptr[t+1]]`` for the chunks ``indices[...]``.
    """

    def __init__(
        self, terms: Mapping[str, int], data: np.ndarray, indices: np.ndarray,
        indptr: np.ndarray, size: int,
    ) -> None:
        if len(indptr) != len(terms) + 1 or len(data) != len(indices):
            raise ValueError(f"{len(terms)} terms, {len(indptr)} column starts, {len(data)} "
                             f"scores and {len(indices)} rows do not agree")
        if len(indptr) and int(indptr[-1]) != len(data):
            raise ValueError(f"the last column ends at {int(indptr[-1])}, not {len(data)}")
        self._terms = terms
        self._data, self._indices, self._indptr = data, indices, indptr
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    @classmethod
    def build(cls, chunk_tokens: Sequence[Sequence[str]]) -> Bm25Index:
        """The index of each chunk's stemmed tokens, computed by bm25s."""
        if not any(chunk_tokens):
            empty = np.zeros(0, dtype=np.float32)
            return cls({}, empty, empty.astype(np.int32), np.zeros(1, dtype=np.int64),
                       len(chunk_tokens))
        import bm25s  # only builds need it: a search reads the saved arrays

        model = bm25s.BM25()
        model.index([list(t) for t in chunk_tokens], show_progress=False)
        s = model.scores
        indptr = np.asarray(s["indptr"])
        # bm25s adds "" to its vocabulary with no column of its own: no token is ever "".
        terms = {t: i for t, i in model.vocab_dict.items() if i < len(indptr) - 1}
        return cls(terms, np.asarray(s["data"], dtype=np.float32), np.asarray(s["indices"]),
                   indptr, int(s["num_docs"]))

    def save(self, folder: Path) -> None:
        """Write the index as ``terms.json`` and one ``.npy`` file per array (synced)."""
        folder.mkdir(parents=True, exist_ok=True)
        ordered = sorted(self._terms, key=self._terms.__getitem__)
        _write(folder / _TERMS, json.dumps({"chunks": self._size, "terms": ordered},
                                           ensure_ascii=False).encode("utf-8"))
        for name, array in zip(_ARRAYS, (self._data, self._indices, self._indptr), strict=True):
            with open(folder / f"{name}.npy", "wb") as f:
                np.save(f, np.ascontiguousarray(array))
                f.flush()
                os.fsync(f.fileno())

    @classmethod
    def load(cls, folder: Path) -> Bm25Index:
        """The saved index, its arrays memory-mapped (pages shared by every process reading it).
        OSError or ValueError when a file is missing or not what ``save`` wrote."""
        meta = json.loads((folder / _TERMS).read_bytes())
        terms = {t: i for i, t in enumerate(meta["terms"])}
        data, indices, indptr = (np.load(folder / f"{name}.npy", mmap_mode="r")
                                 for name in _ARRAYS)
        return cls(terms, data, indices, indptr, int(meta["chunks"]))

    def problem(self) -> str | None:
        """What is wrong with the arrays' bounds (a damaged file), or None."""
        indptr, indices = self._indptr, self._indices
        if int(indptr[0]) != 0 or (len(indptr) > 1 and bool((np.diff(indptr) < 0).any())):
            return "its column starts are out of order"
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= self._size):
            return "it scores a chunk that does not exist"
        return None

    def scores(self, tokens: Sequence[str]) -> np.ndarray:
        """Each known token's column added up, in the query's order (a repeated token counts
        again), in float32: the same arithmetic as bm25s's ``get_scores``."""
        out = np.zeros(self._size, dtype=np.float32)
        for token in tokens:
            t = self._terms.get(token)
            if t is None:
                continue
            a, b = int(self._indptr[t]), int(self._indptr[t + 1])
            np.add.at(out, self._indices[a:b], self._data[a:b])
        return out

    def document_frequency(self, token: str) -> int:
        """How many chunks use the stemmed token (its column's length)."""
        t = self._terms.get(token)
        return 0 if t is None else int(self._indptr[t + 1] - self._indptr[t])


@dataclass(frozen=True, slots=True)
class Counts:
    """The corpus's words as the answering side needs them: in how many chunks each stem occurs,
    and every (folded, unstemmed) word the documents use."""

    chunks: int
    df: Mapping[str, int]
    words: frozenset[str]

    @classmethod
    def of(cls, documents: Iterable[Document], chunk_tokens: Sequence[Sequence[str]]) -> Counts:
        """The counts of these documents and their chunks' stemmed tokens."""
        df: dict[str, int] = {}
        for toks in chunk_tokens:
            for t in set(toks):
                df[t] = df.get(t, 0) + 1
        known = {w for d in documents for w in words(f"{d.text} {' '.join(d.keywords)}")}
        return cls(len(chunk_tokens), df, frozenset(known))

    def save(self, path: Path) -> None:
        """Write the counts as one JSON file (synced)."""
        data = {"chunks": self.chunks, "df": dict(sorted(self.df.items())),
                "words": sorted(self.words)}
        _write(path, json.dumps(data, ensure_ascii=False).encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> Counts:
        """The saved counts; OSError or ValueError when the file is missing or malformed."""
        data = json.loads(path.read_bytes())
        df = {str(k): int(v) for k, v in data["df"].items()}
        return cls(int(data["chunks"]), df, frozenset(str(w) for w in data["words"]))


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
