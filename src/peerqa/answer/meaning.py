"""Words matched by meaning: is "payroll" in evidence that says "paid employment"?

The answerability check asks, for each specific word of a question that the evidence does not
use, how close in meaning the evidence's words come. Each word is embedded once with the
index's own embedder (all-MiniLM-L6-v2 offline) and kept, so a warm assistant embeds only the
words it has never seen. Names and numbers are never matched by meaning: "Germany" is close
to "Scotland" in a vector space and nowhere near it as an answer.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol, TypeVar

import numpy as np

from ..embeddings import Embedder

MAX_WORDS = 50_000
"""Words kept before the cache starts again (a corpus's vocabulary is far smaller)."""


V = TypeVar("V")


class Deferred(Mapping[str, V]):
    """Values of ``keys``, worked out by ``make`` (given the keys wanted, together) when first
    read, then kept: for measures that cost an encoder pass and that a decision may never read.
    A key ``make`` leaves out has no value."""

    __slots__ = ("_keys", "_make", "_items", "_done")

    def __init__(self, keys: Iterable[str],
                 make: Callable[[list[str]], Mapping[str, V]]) -> None:
        self._keys = tuple(dict.fromkeys(keys))
        self._make = make
        self._items: dict[str, V] = {}
        self._done: set[str] = set()

    def want(self, keys: Iterable[str]) -> None:
        """Work out the values of ``keys`` not yet worked out, in one call of ``make``."""
        missing = [k for k in dict.fromkeys(keys) if k in self._keys and k not in self._done]
        if missing:
            found = self._make(missing)
            self._items.update((k, found[k]) for k in missing if k in found)
            self._done.update(missing)

    def __getitem__(self, key: str) -> V:
        self.want([key])
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        self.want(self._keys)
        return iter(self._items)

    def __len__(self) -> int:
        self.want(self._keys)
        return len(self._items)

    def __repr__(self) -> str:
        return f"Deferred({self._items}, {len(self._keys) - len(self._done)} not read yet)"


def want(values: Mapping[str, V], keys: Iterable[str]) -> Mapping[str, V]:
    """``values``, with those of ``keys`` worked out together when it is ``Deferred``."""
    if isinstance(values, Deferred):
        values.want(keys)
    return values


def literal_only(word: str) -> bool:
    """Whether a word must be matched as written: a name, an acronym or a number."""
    return word[:1].isupper() or any(ch.isdigit() for ch in word)


class Meaning(Protocol):
    """Words compared by meaning (``answer.meaning.WordMeaning`` is one)."""

    def __call__(self, terms: Sequence[str], words: Sequence[str]) -> list[float]:
        """For each term, its best similarity to any of ``words``."""
        ...

    def focus(self, question: str, terms: Sequence[str]) -> list[float]:
        """For each term, how much of the question's meaning goes with it."""
        ...


class KnownWords(Protocol):
    """Words whose vectors are already known (``tables.WordVectors``, built with the index)."""

    def get(self, word: str) -> np.ndarray | None: ...


class WordMeaning:
    """Similarity of words by their vectors, each word embedded once.

    ``known`` gives the index's word vectors (every word its chunks use, embedded at build
    time): then only words the corpus never uses are embedded here. ``question`` gives a
    question's vector when something already holds it (the retriever keeps the vector it
    searched with): ``focus`` then encodes only the question's variants.
    """

    def __init__(self, embedder: Embedder,
                 question: Callable[[str], np.ndarray] | None = None,
                 known: Callable[[], KnownWords | None] | None = None) -> None:
        self.embedder = embedder
        self.question = question if question is not None else embedder.embed_query
        self.known = known
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _embed(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        table = self.known() if self.known is not None else None
        with self._lock:
            new = sorted({w for w in words if w not in self._vectors})
            if new and len(self._vectors) + len(new) > MAX_WORDS:
                self._vectors.clear()
            if new and table is not None:
                held = {w: v for w in new if (v := table.get(w)) is not None}
                self._vectors.update(held)
                new = [w for w in new if w not in held]
            if new:
                vectors = np.asarray(self.embedder.embed_documents(new), dtype=np.float32)
                self._vectors.update(zip(new, vectors, strict=True))
            return {w: self._vectors[w] for w in words}

    def __call__(self, terms: Sequence[str], words: Sequence[str]) -> list[float]:
        """For each term, its best cosine similarity to any of ``words`` (0 for a name)."""
        if not terms or not words:
            return [0.0] * len(terms)
        pool = [w.lower() for w in words]
        asked = [t for t in terms if not literal_only(t)]
        vectors = self._embed([*{t.lower() for t in asked}, *pool])
        matrix = np.stack([vectors[w] for w in pool])
        out = []
        for term in terms:
            if literal_only(term):
                out.append(0.0)
                continue
            out.append(float(np.max(matrix @ vectors[term.lower()])))
        return out

    def focus(self, question: str, terms: Sequence[str]) -> list[float]:
        """How much each term carries the question's meaning: 1 minus the cosine between the
        question and the question without it ("What professional indemnity insurance ...?"
        loses most of its meaning without "insurance", far less without "should")."""
        if not terms:
            return []
        variants = [re.sub(rf"(?<![\w'’-]){re.escape(t)}(?![\w'’-])", " ", question, flags=re.I)
                    for t in terms]
        whole = np.asarray(self.question(question), dtype=np.float32)
        vectors = np.asarray(self.embedder.embed_documents(variants), dtype=np.float32)
        return [max(0.0, 1.0 - float(whole @ v)) for v in vectors]
