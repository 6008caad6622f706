"""Building the index: chunk the corpus, embed chunks and sentences (and, with a local model, each
chunk's content tokens), write a generation.

An index is reused while it was built from the same corpus, chunking settings and model (the
generation's manifest records them); otherwise it is rebuilt, reusing the vectors (and token
vectors) of every text that has not changed.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import chunking
from .corpus import Corpus
from .embeddings import Embedder, token_embedder
from .errors import StoreError
from .generation import KEYS
from .lexical import Bm25Index, Counts
from .store import (
    FORMAT_VERSION,
    Generation,
    IndexStore,
    SentenceVectors,
    TokenVectors,
    WordVectors,
    chroma_version,
    chunk_metadata,
)
from .text import TOKENIZER_VERSION, sentence_spans, tokenize, words
from .types import Chunk, Document

Progress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total) while an index is built."""
TOKEN_BLOCK = 1024
"""Chunks whose token vectors are read per call (with their vectors, or alone): each block's
float32 states are stored as int8 at once, so a build holds no more than one block's in float32
(at 26,000 chunks all of them would be about 3 GB). The bundled corpus (260 chunks) is one
block, read in the same batches as ``embed_documents`` alone."""


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


def chunking_key(doc: Document) -> str:
    """What a document's chunks depend on besides the settings: its id, text and page breaks."""
    return hashlib.sha1(f"{doc.doc_id}\0{doc.sha256}\0{list(doc.page_starts)}".encode()).hexdigest()


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
        """Write a new generation and make it live. Call under the store's write lock.

        Besides chunks and vectors, the generation gets what every process would otherwise
        recompute on open: the BM25 index and the vocabulary's counts (from each chunk's
        stemmed tokens), the sentence and token vectors as memory-mappable arrays.
        """
        docs = self.corpus.documents
        by_id = {d.doc_id: d for d in docs}
        base = self.store.latest_readable()
        chunks = self._chunks(base)
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
        if base is not None and base.manifest.get("embedder") != self.embedder.name:
            base = None
        reuse = self._previous_vectors(base)
        text_keys = [text_key(t) for t in texts]
        sentence_keys = [text_key(t) for t in sentence_texts]
        previous_tokens = self._previous_tokens(base)
        self._embed_both(texts, text_keys, reuse, previous_tokens, progress)
        vectors = self._embed(texts, text_keys, reuse, "embedding", progress)
        sentence_vectors = self._embed(sentence_texts, sentence_keys, reuse, "sentences",
                                       progress)
        token_vectors = self._embed_tokens(texts, text_keys, previous_tokens, progress)
        manifest = {**self.expected_manifest(),
                    "chunked": {d.doc_id: chunking_key(d) for d in docs}}
        # An embedder that runs here (one that gives token vectors, not an API) embeds every
        # word the chunks use, for the answer's check. The words are embedded while BM25 is
        # made and Chroma imported and written (one core's work, most of it in Python): a
        # build takes 0.4 s longer with them, not 0.6 s.
        with ThreadPoolExecutor(max_workers=1) as pool:
            words = None if self._tokens is None else \
                pool.submit(self._embed_words, vocabulary(sentence_texts), base)
            tokens = [tokenize(t) for t in texts]
            self.store.write_generation(
                manifest, chunks, vectors, [chunk_metadata(c) for c in chunks],
                progress=_stored_counter(progress, len(chunks)),
                sentences=SentenceVectors.of(
                    np.asarray(rows, dtype=np.int32),
                    np.asarray(spans, dtype=np.int32).reshape(-1, 2),
                    sentence_vectors,
                ),
                lexical=Bm25Index.build(tokens),
                counts=Counts.of(docs, tokens),
                keys=(text_keys, sentence_keys),
                base=base,
                tokens=token_vectors,
                words=None if words is None else words.result,
            )

    def _chunks(self, base: Generation | None) -> list[Chunk]:
        """Every document's chunks, in corpus order. A document whose text and page breaks are
        those ``base`` chunked, with the same chunker and sizes, keeps its chunks (chunking 500
        documents takes 2 s; adding one should not)."""
        previous: dict[str, list[Chunk]] = {}
        chunked: dict[str, Any] = {}
        if base is not None and base.sound("chunks.jsonl") and all(
            base.manifest.get(k) == v for k, v in self.expected_manifest().items()
            if k in ("chunker", "tokenizer", "chunk_target_words", "chunk_max_words")
        ):
            chunked = base.manifest.get("chunked") or {}
            for c in base.chunks:
                previous.setdefault(c.doc_id, []).append(c)
        out: list[Chunk] = []
        for d in self.corpus.documents:
            kept = previous.get(d.doc_id) if chunked.get(d.doc_id) == chunking_key(d) else None
            out.extend(kept if kept is not None else chunking.chunk_document(
                d, target_words=self.chunk_target_words, max_words=self.chunk_max_words))
        return out

    def _embed(
        self, texts: list[str], keys: list[str], reuse: dict[str, np.ndarray], stage: str,
        progress: Progress | None,
    ) -> np.ndarray:
        """Vectors for ``texts`` (whose keys are ``keys``): each distinct text embedded once,
        known ones reused.

        Vectors computed here join ``reuse``, so a later stage (sentences after chunks) reuses
        them too. Progress counts texts, duplicates included.
        """
        todo = _missing(texts, keys, reuse)
        step = _counter(stage, keys, todo, progress)
        if todo:
            found = self.embedder.embed_documents(list(todo.values()), progress=step)
            reuse.update(zip(todo, found, strict=True))
        if not keys:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([reuse[key] for key in keys]).astype(np.float32, copy=False)

    def _embed_both(
        self, texts: list[str], keys: list[str], reuse: dict[str, np.ndarray],
        previous: dict[str, tuple[np.ndarray, np.ndarray]], progress: Progress | None,
    ) -> None:
        """Chunk texts that need both a vector and token vectors, read in one pass of the
        encoder (a fresh build: every chunk; the encoder is most of a build's time). The
        vectors join ``reuse``, the token vectors ``previous``."""
        if self._tokens is None:
            return
        todo = _missing(texts, keys, reuse, previous)
        step = _counter("embedding", keys, todo, progress)
        order = list(todo)
        for begin in range(0, len(order), TOKEN_BLOCK):
            block = order[begin : begin + TOKEN_BLOCK]
            found, states = self._tokens.embed_documents_and_tokens(
                [todo[key] for key in block], progress=step)
            reuse.update(zip(block, np.asarray(found, dtype=np.float32), strict=True))
            for key, x in zip(block, states, strict=True):
                stored = TokenVectors.of(np.array([0, len(x)]), x)
                previous[key] = stored.vectors, stored.scale

    def _embed_words(self, found: list[str], base: Generation | None) -> WordVectors:
        """Each word's vector, the word read alone (``base``'s, when sound, reused). No
        progress is reported: it runs beside the stage that writes the index."""
        known = base.words(sound=True) if base is not None else None
        reuse = {} if known is None else \
            {text_key(w): np.asarray(known.vectors[i]) for w, i in known.position.items()}
        keys = [text_key(w) for w in found]
        return WordVectors.of(found, self._embed(found, keys, reuse, "words", None))

    def _embed_tokens(
        self, texts: list[str], keys: list[str],
        previous: dict[str, tuple[np.ndarray, np.ndarray]], progress: Progress | None,
    ) -> TokenVectors | None:
        """Every chunk's content-token vectors (of what the retrievers see of it), when the
        embedder gives them: each distinct text read once, ``previous`` ones (an earlier
        generation's, made the same way, files sound; or read with the vectors) reused; stored
        as int8 with a scale per row (``TokenVectors``)."""
        if self._tokens is None:
            return None
        todo: dict[str, str] = {}
        for key, t in zip(keys, texts, strict=True):
            if key not in previous and key not in todo:
                todo[key] = t
        copies = Counter(keys)
        done = len(texts) - sum(copies[key] for key in todo)
        if progress:
            progress("tokens", done, len(texts))
        found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        order = list(todo)
        for begin in range(0, len(order), TOKEN_BLOCK):
            block = order[begin : begin + TOKEN_BLOCK]
            for key, x in zip(block, self._tokens.embed_tokens([todo[key] for key in block]),
                              strict=True):
                stored = TokenVectors.of(np.array([0, len(x)]), x)
                found[key] = stored.vectors, stored.scale
            done += sum(copies[key] for key in block)
            if progress:
                progress("tokens", done, len(texts))
        parts = [found[key] if key in found else previous[key] for key in keys]
        start = np.cumsum([0, *(len(v) for v, _ in parts)]).astype(np.int64)
        if not parts:
            return TokenVectors(start, np.zeros((0, self.embedder.dim), np.int8),
                                np.zeros(0, np.float32))
        return TokenVectors(start, np.concatenate([np.asarray(v) for v, _ in parts]),
                            np.concatenate([np.asarray(s) for _, s in parts]))

    def _previous_tokens(
        self, gen: Generation | None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each chunk's token vectors in ``gen`` by its text's key (memory-mapped views), when
        they were made as this embedder makes them and their files are sound."""
        if gen is None or self._tokens is None \
                or gen.manifest.get("tokens") != self._tokens.token_version:
            return {}
        tokens = gen.sound_tokens()
        keys_sound = KEYS not in gen.files or gen.sound(KEYS)
        chunk_keys = gen.keys()[0] if keys_sound else []
        if tokens is None or len(chunk_keys) != len(tokens.start) - 1:
            return {}
        return {key: tokens.rows(i) for i, key in enumerate(chunk_keys)}

    def _previous_vectors(self, gen: Generation | None) -> dict[str, np.ndarray]:
        """Vectors of an earlier generation (the live one, made with this model) by text.

        Only files that still have their recorded hashes are read, so a damaged generation
        gives what is sound in it and nothing else. The vectors stay memory-mapped: only the
        rows a build uses are read.
        """
        if gen is None:
            return {}
        vectors, sentences = gen.sound_vectors()
        keys_sound = KEYS not in gen.files or gen.sound(KEYS)
        chunk_keys, sentence_keys = gen.keys() if keys_sound else ([], [])
        found: dict[str, np.ndarray] = {}
        if vectors is not None and len(chunk_keys) == len(vectors):
            found.update(zip(chunk_keys, np.asarray(vectors), strict=True))
        if sentences is not None and len(sentence_keys) == len(sentences[1]):
            table = np.asarray(sentences[0])
            found.update((key, table[row]) for key, row in
                         zip(sentence_keys, np.asarray(sentences[1]).tolist(), strict=True))
        return found


def vocabulary(texts: Sequence[str]) -> list[str]:
    """The words of ``texts`` as the answer's check compares them (``text.words`` with a content
    token: no stop word, no punctuation), each once, sorted."""
    seen: set[str] = set()
    for t in set(texts):
        seen.update(words(t))
    return sorted({w.lower() for w in seen if tokenize(w)})


def _stored_counter(progress: Progress | None, total: int) -> Callable[[int], None] | None:
    """Turn the store's per-batch counts into the running totals every stage reports."""
    if progress is None:
        return None
    done = [0]

    def step(n: int) -> None:
        done[0] += n
        progress("storing", done[0], total)

    return step


def _missing(texts: Sequence[str], keys: Sequence[str],
             *known: Mapping[str, object]) -> dict[str, str]:
    """Key -> text of the distinct texts none of ``known`` holds, first occurrence, in order."""
    todo: dict[str, str] = {}
    for key, t in zip(keys, texts, strict=True):
        if key not in todo and not any(key in k for k in known):
            todo[key] = t
    return todo


def _counter(stage: str, keys: Sequence[str], todo: Mapping[str, str],
             progress: Progress | None) -> Callable[[int], None]:
    """Reports ``stage``'s progress over ``keys`` as the embedder finishes ``todo``'s texts."""
    total = len(keys)
    copies = Counter(key for key in keys if key in todo)
    done = [total - sum(copies.values())]
    order = list(todo)
    position = [0]
    if progress:
        progress(stage, done[0], total)

    def step(n: int) -> None:
        # The embedder reports how many distinct texts it finished (not which: it may sort
        # them), each standing for its copies: exact at the end, close meanwhile.
        batch = order[position[0] : position[0] + n]
        position[0] += n
        done[0] += sum(copies[k] for k in batch)
        if progress:
            progress(stage, done[0], total)

    return step
