"""Building the index: chunk the corpus, embed chunks and sentences (and, with a local model, each
chunk's content tokens), write a generation.

An index is reused while it was built from the same corpus, chunking settings and model (the
generation's manifest records them); otherwise it is rebuilt, reusing the vectors of every text
that has not changed (token vectors are made afresh: one more pass over the chunks).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import chunking
from .corpus import Corpus
from .embeddings import Embedder, token_embedder
from .errors import StoreError
from .store import FORMAT_VERSION, IndexStore, SentenceVectors, TokenVectors, chroma_version
from .text import TOKENIZER_VERSION, sentence_spans

Progress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total) while an index is built."""


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """What ``Assistant.index`` did."""

    built: bool
    generation: str
    n_documents: int
    n_chunks: int
    seconds: float
    directory: str
    skipped: tuple[tuple[str, str], ...] = ()
    repaired: str = ""
    """What was wrong with the index that this build replaced ("" when nothing was)."""


def text_key(text: str) -> str:
    """The key a vector is stored under for reuse: a hash of the exact text embedded."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class Indexer:
    """Builds (or recognises as current) the index of one corpus with one embedder."""

    def __init__(
        self,
        store: IndexStore,
        corpus: Corpus,
        embedder: Embedder,
        *,
        chunk_target_words: int,
        chunk_max_words: int,
    ) -> None:
        self.store = store
        self.corpus = corpus
        self.embedder = embedder
        self.chunk_target_words = chunk_target_words
        self.chunk_max_words = chunk_max_words
        self._tokens = token_embedder(embedder)

    def expected_manifest(self) -> dict[str, Any]:
        """What the index must have been built from to be reused as it is."""
        return {
            "format": FORMAT_VERSION,
            "corpus": self.corpus.fingerprint,
            "documents": {d.doc_id: d.sha256 for d in self.corpus.documents},
            "chunker": chunking.CHUNKER_VERSION,
            "tokenizer": TOKENIZER_VERSION,
            "chunk_target_words": self.chunk_target_words,
            "chunk_max_words": self.chunk_max_words,
            "embedder": self.embedder.name,
            # An index without token vectors is rebuilt once for an embedder that gives them
            # (its chunk and sentence vectors are reused).
            "tokens": self._tokens.token_version if self._tokens else None,
        }

    def is_current(self) -> bool:
        """Whether the live generation was built from this corpus, chunking and model, and
        this installation's Chroma reads it (asked by a probe query only when another chromadb
        version wrote it)."""
        manifest = self.store.current_manifest()
        if manifest is None:
            return False
        if any(manifest.get(k) != v for k, v in self.expected_manifest().items()):
            return False
        if manifest.get("chromadb") == chroma_version():
            return True
        try:
            generation = self.store.open()
        except StoreError:
            return False
        try:
            return generation.engine_works()
        finally:
            generation.close()

    def build(self, progress: Progress | None = None) -> None:
        """Write a new generation and make it live. Call under the store's write lock."""
        docs = self.corpus.documents
        by_id = {d.doc_id: d for d in docs}
        chunks = chunking.chunk_corpus(
            docs, target_words=self.chunk_target_words, max_words=self.chunk_max_words
        )
        texts = [
            chunking.indexed_text(c, by_id[c.doc_id].title, by_id[c.doc_id].keywords)
            for c in chunks
        ]
        rows, spans, sentence_texts = [], [], []
        for i, c in enumerate(chunks):
            doc_text = by_id[c.doc_id].text
            for a, b in sentence_spans(doc_text, c.start, c.end):
                rows.append(i)
                spans.append((a, b))
                sentence_texts.append(doc_text[a:b])
        reuse = self._previous_vectors()
        vectors = self._embed(texts, reuse, "embedding", progress)
        sentence_vectors = self._embed(sentence_texts, reuse, "sentences", progress)
        tokens = self._embed_tokens(texts, progress)
        metadatas = [
            {"doc_id": c.doc_id, "section": c.section[:500], "start": c.start, "end": c.end}
            for c in chunks
        ]
        manifest = {
            **self.expected_manifest(),
            "text_keys": [text_key(t) for t in texts],
            "sentence_keys": [text_key(t) for t in sentence_texts],
        }
        self.store.write_generation(
            manifest, chunks, vectors, metadatas,
            progress=_stored_counter(progress, len(chunks)),
            sentences=SentenceVectors(
                np.asarray(rows, dtype=np.int32),
                np.asarray(spans, dtype=np.int32).reshape(-1, 2),
                sentence_vectors,
            ),
            tokens=tokens,
        )

    def _embed_tokens(self, texts: list[str], progress: Progress | None) -> TokenVectors | None:
        """Every chunk's content-token vectors (what the retrievers see of it), when the
        embedder gives them; float16 halves their size at no measured cost."""
        if self._tokens is None:
            return None
        total = len(texts)
        done = [0]
        if progress:
            progress("tokens", 0, total)

        def step(n: int) -> None:
            done[0] += n
            if progress:
                progress("tokens", done[0], total)

        found = self._tokens.embed_tokens(texts, progress=step) if texts else []
        start = np.cumsum([0, *(len(t) for t in found)]).astype(np.int64)
        rows = [t for t in found if len(t)]
        vectors = (np.concatenate(rows) if rows else
                   np.zeros((0, self.embedder.dim), np.float32)).astype(np.float16)
        return TokenVectors(start, vectors)

    def _embed(
        self, texts: list[str], reuse: dict[str, np.ndarray], stage: str,
        progress: Progress | None,
    ) -> np.ndarray:
        """Vectors for ``texts``: each distinct text embedded once, known ones reused.

        Vectors computed here join ``reuse``, so a later stage (sentences after chunks) reuses
        them too. Progress counts texts, duplicates included.
        """
        keys = [text_key(t) for t in texts]
        todo: dict[str, str] = {}  # key -> text, first occurrence, in order
        for key, t in zip(keys, texts, strict=True):
            if key not in reuse and key not in todo:
                todo[key] = t
        total = len(texts)
        waiting = sum(1 for key in keys if key in todo)
        done = [total - waiting]
        if progress:
            progress(stage, done[0], total)
        if todo:
            copies = Counter(key for key in keys if key in todo)
            order = list(todo)
            position = [0]

            def step(n: int) -> None:
                # The embedder reports how many distinct texts it finished (not which: it may
                # sort them), each standing for its copies: exact at the end, close meanwhile.
                batch = order[position[0] : position[0] + n]
                position[0] += n
                done[0] += sum(copies[k] for k in batch)
                if progress:
                    progress(stage, done[0], total)

            found = self.embedder.embed_documents(list(todo.values()), progress=step)
            reuse.update(zip(order, found, strict=True))
        if not keys:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([reuse[key] for key in keys]).astype(np.float32, copy=False)

    def _previous_vectors(self) -> dict[str, np.ndarray]:
        """Vectors of the live generation by text, reused when the model is the same.

        Only files that still have their recorded hashes are read, so a damaged generation
        gives what is sound in it and nothing else.
        """
        gen = self.store.latest_readable()
        if gen is None or gen.manifest.get("embedder") != self.embedder.name:
            return {}
        vectors, sentences = gen.sound_vectors()
        found: dict[str, np.ndarray] = {}
        keys = gen.manifest.get("text_keys") or []
        if vectors is not None and len(keys) == len(vectors):
            found.update(zip(keys, vectors, strict=True))
        keys = gen.manifest.get("sentence_keys") or []
        if sentences is not None and len(keys) == len(sentences.vectors):
            found.update(zip(keys, sentences.vectors, strict=True))
        return found


def _stored_counter(progress: Progress | None, total: int) -> Callable[[int], None] | None:
    """Turn the store's per-batch counts into the running totals every stage reports."""
    if progress is None:
        return None
    done = [0]

    def step(n: int) -> None:
        done[0] += n
        progress("storing", done[0], total)

    return step
