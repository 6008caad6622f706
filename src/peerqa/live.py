"""The live index of one assistant: open it, build or repair it, and follow newer builds.

A long-running process (the app) keeps answering while ``peerqa index`` builds a new
generation. ``LiveIndex.current`` checks the ``CURRENT`` pointer with one stat call per question
and, between two questions, switches to the newer generation (with the corpus it was built
from). A question holds the retriever it started with, so an answer never mixes two
generations. A damaged generation is found when it is opened (sizes) or indexed (hashes,
SQLite's own check, a probe query) and rebuilt from whatever is sound.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any

from .corpus import Corpus, load_corpus
from .embeddings import Embedder, get_embedder
from .errors import IndexNotFoundError, PeerQAError, StoreError
from .indexing import Indexer, IndexInfo, Progress
from .retrieval import Retriever
from .settings import Settings
from .store import ChromaLocation, Generation, IndexStore
from .tuning import Tuning

log = logging.getLogger(__name__)


class LiveIndex:
    """One corpus's index as a process sees it over time: the open retriever and its corpus."""

    def __init__(
        self, settings: Settings, tuning: Tuning, embedder: Embedder | None = None
    ) -> None:
        self.settings = settings
        self.tuning = tuning
        self._embedder = embedder
        self._corpus: Corpus | None = None
        self._retriever: Retriever | None = None
        self._stamp: tuple[int, int, int] | None = None  # CURRENT as the open retriever saw it
        self._lock = threading.RLock()
        self.store = IndexStore(
            settings.resolved_index_dir, ChromaLocation(settings.chroma_host, settings.chroma_port)
        )

    @property
    def corpus(self) -> Corpus:
        with self._lock:
            if self._corpus is None:
                self._corpus = load_corpus(self.settings.resolved_corpus_dir)
            return self._corpus

    @corpus.setter
    def corpus(self, corpus: Corpus) -> None:
        with self._lock:
            self._corpus = corpus

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = get_embedder(self.settings)
            return self._embedder

    def with_tuning(self, tuning: Tuning) -> LiveIndex:
        """The same open index searched with other fitted parameters (nothing is rebuilt)."""
        retriever = self.retriever
        other = copy.copy(self)
        other.tuning = tuning
        other._lock = threading.RLock()
        other._retriever = retriever.with_tuning(tuning)
        return other

    def indexer(self, corpus: Corpus | None = None) -> Indexer:
        s = self.settings
        return Indexer(
            self.store, corpus or self.corpus, self.embedder,
            chunk_target_words=s.chunk_target_words, chunk_max_words=s.chunk_max_words,
        )

    def index(self, rebuild: bool = False, progress: Progress | None = None, *,
              probe: bool = True) -> IndexInfo:
        """Build the index if the corpus, chunking or model changed, or it is damaged (or
        ``rebuild``); else reuse it. A rebuild reuses every vector whose file is sound.
        ``probe=False`` skips the probe query when the files alone show the index sound
        (``Generation.verify``)."""
        t0 = time.perf_counter()
        with self._lock:
            indexer = self.indexer()
            damage = None
            if not rebuild and indexer.is_current():
                damage = self.store.damage(probe)  # hashes, SQLite's check, a probe query
                if damage is None:
                    return self._info(False, t0)
                # Reported by the caller from IndexInfo.repaired (the CLI and the app print it).
                log.info("the index at %s is damaged (%s): rebuilding it",
                         self.store.directory, damage)
            with self.store.write_lock():
                # Another process may have finished the same build while we waited to start.
                if (not rebuild and damage is None and indexer.is_current()
                        and self.store.damage(probe) is None):
                    return self._info(False, t0)
                indexer.build(progress)
            self._retriever = None
            return self._info(True, t0, damage or "")

    def _info(self, built: bool, t0: float, repaired: str = "") -> IndexInfo:
        retriever = self._open()
        return IndexInfo(
            built=built,
            generation=retriever.generation.name,
            n_documents=len(self.corpus.documents),
            n_chunks=len(retriever.chunks),
            seconds=time.perf_counter() - t0,
            directory=str(self.store.directory),
            skipped=tuple((s.path, s.reason) for s in self.corpus.skipped),
            repaired=repaired,
        )

    def _open(self) -> Retriever:
        with self._lock:
            if self._retriever is None:
                stamp = self.store.pointer_stamp()  # before reading: a later change is noticed
                self._retriever = self._make_retriever(self.store.open(), self.corpus)
                self._stamp = stamp
            return self._retriever

    def _make_retriever(self, generation: Generation, corpus: Corpus) -> Retriever:
        s = self.settings
        return Retriever(
            generation, self.embedder, {d.doc_id: d for d in corpus.documents},
            fusion=s.fusion, bm25_weight=s.bm25_weight, dense_weight=s.dense_weight,
            sentence_weight=s.sentence_weight, tokens_weight=s.tokens_weight, rrf_k=s.rrf_k,
            mention_boost=s.mention_boost, tuning=self.tuning,
        )

    @property
    def retriever(self) -> Retriever:
        """The open retriever; builds or opens the index on first use."""
        with self._lock:
            if self._retriever is None:
                try:
                    if self.indexer().is_current():
                        return self._open()
                except IndexNotFoundError:
                    pass
                self.index()
            return self._open()

    def current(self) -> Retriever:
        """The retriever one question uses from start to end.

        It is the open one, unless a build has replaced CURRENT since (one stat call tells):
        then the newer generation is opened with the corpus it was built from, between two
        questions. If the open generation's folder was deleted, the live index is opened (or
        built) instead. A question holds the retriever it started with, so an answer never mixes
        two generations, and in-flight answers keep theirs until they finish.
        """
        with self._lock:
            retriever = self.retriever
            stamp = self.store.pointer_stamp()
            gone = not retriever.generation.path.is_dir()
            if stamp == self._stamp and not gone:
                return retriever
            if gone:
                # Its files were deleted (a document taken down, the index removed): answers
                # never come from them again. The live index is opened, or built.
                log.warning("index generation %s was deleted: opening the live index",
                            retriever.generation.name)
                self._retriever = self._corpus = None
                return self.retriever
            self._stamp = stamp
            try:
                newer = self._newer(retriever)
            except PeerQAError as e:
                log.warning("keeping index generation %s: the new one cannot be used yet (%s)",
                            retriever.generation.name, e)
                return retriever
            if newer is not None:
                log.info("switched to index generation %s", newer.generation.name)
                self._retriever = newer
                return newer
            return retriever

    def _newer(self, retriever: Retriever) -> Retriever | None:
        """The live generation's retriever if it is not ``retriever``'s, with its corpus."""
        name = self.store.current_name()
        if name is None or name == retriever.generation.name:
            return None
        corpus = load_corpus(self.settings.resolved_corpus_dir)
        generation = self.store.open()
        expected = self.indexer(corpus).expected_manifest()
        if any(generation.manifest.get(k) != v for k, v in expected.items()):
            generation.close()
            raise StoreError(
                f"generation {name} was not built from the documents and settings this "
                "assistant has now"
            )
        self._corpus = corpus
        return self._make_retriever(generation, corpus)

    def expected_manifest(self) -> dict[str, Any]:
        """What the index must have been built from to be reused as it is."""
        return self.indexer().expected_manifest()
