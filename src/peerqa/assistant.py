"""Assistant: the one object most callers need: ``ask``, ``stream``, ``search``, ``index``.

It owns the flow of a question, top to bottom: check the input, analyse the question
(``answer.question``), search (``retrieval``), then answer in the chosen mode. It is the only
place that picks the answer mode and the only place that falls back: when a written answer
cannot be used, the offline extractive answer stands in (or, with ``strict``, an error).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .answer.extractive import extractive_answer
from .answer.judge import text_pieces
from .answer.outcome import abstention
from .answer.question import QuestionTerms, question_terms
from .answer.written import (
    Fallback,
    Interrupted,
    WrittenAnswerer,
    WrittenSettings,
    with_citation_checks,
)
from .corpus import Corpus, load_corpus
from .embeddings import Embedder, get_embedder
from .embeddings.threads import QUERY_THREADS, blas_threads
from .errors import IndexNotFoundError, InputError
from .indexing import Indexer, IndexInfo, Progress
from .openai_client import OpenAIBackend
from .retrieval import Hit, Retriever
from .settings import Settings, check_k, load_settings
from .store import ChromaLocation, IndexStore
from .tuning import Tuning, load_tuning
from .types import Answer, Chunk, Document, Passage

__all__ = ["Assistant", "IndexInfo", "normalise_history"]


def normalise_history(history: Any) -> list[dict[str, str]]:
    """Role/content turns as plain strings; Gradio's content parts are joined into text."""
    if history is None:
        return []
    if not isinstance(history, (list, tuple)):
        raise InputError("history must be a list of {'role': ..., 'content': ...} messages")
    turns: list[dict[str, str]] = []
    for turn in history:
        if not isinstance(turn, Mapping) or "role" not in turn or "content" not in turn:
            raise InputError(
                "each history message needs 'role' and 'content', "
                "e.g. {'role': 'user', 'content': 'What training do peer workers need?'}"
            )
        content = turn["content"]
        if isinstance(content, (list, tuple)):
            content = " ".join(
                str(p.get("text", "")) if isinstance(p, Mapping) else str(p) for p in content
            )
        elif isinstance(content, Mapping):
            content = str(content.get("text", ""))
        turns.append({"role": str(turn["role"]), "content": str(content or "")})
    return turns


class Assistant:
    """Answers questions from a corpus with verbatim, cited passages; offline by default."""

    def __init__(
        self,
        corpus_dir: str | Path | None = None,
        index_dir: str | Path | None = None,
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        tuning: Tuning | None = None,
        **overrides: Any,
    ) -> None:
        if corpus_dir is not None:
            overrides["corpus_dir"] = Path(corpus_dir)
        if index_dir is not None:
            overrides["index_dir"] = Path(index_dir)
        self.settings = load_settings(settings, **overrides)
        self._embedder = embedder
        self.tuning = tuning if tuning is not None else load_tuning(self.settings.tuning_file)
        self._corpus: Corpus | None = None
        self._retriever: Retriever | None = None
        self._writer: WrittenAnswerer | None = None
        self._lock = threading.RLock()
        self.store = IndexStore(
            self.settings.resolved_index_dir,
            ChromaLocation(self.settings.chroma_host, self.settings.chroma_port),
        )

    # -- corpus and index ---------------------------------------------------------------

    @property
    def corpus(self) -> Corpus:
        with self._lock:
            if self._corpus is None:
                self._corpus = load_corpus(self.settings.resolved_corpus_dir)
            return self._corpus

    @property
    def documents(self) -> list[Document]:
        """The corpus's documents, in file-name order."""
        return list(self.corpus.documents)

    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = get_embedder(self.settings)
            return self._embedder

    def with_tuning(self, tuning: Tuning) -> Assistant:
        """This assistant with other fitted parameters, sharing its open index (for fitting
        and cross-validation: nothing is rebuilt)."""
        retriever = self.retriever
        other = copy.copy(self)
        other.tuning = tuning
        other._lock = threading.RLock()
        other._writer = None
        other._retriever = retriever.with_tuning(tuning)
        return other

    @property
    def chunks(self) -> list[Chunk]:
        """The indexed passages of the live index, in corpus order."""
        return self.retriever.chunks

    def _indexer(self) -> Indexer:
        s = self.settings
        return Indexer(
            self.store, self.corpus, self.embedder,
            chunk_target_words=s.chunk_target_words, chunk_max_words=s.chunk_max_words,
        )

    def expected_manifest(self) -> dict[str, Any]:
        """What the index must have been built from to be reused as it is."""
        return self._indexer().expected_manifest()

    def index_is_current(self) -> bool:
        return self._indexer().is_current()

    def index(self, rebuild: bool = False, progress: Progress | None = None) -> IndexInfo:
        """Build the index if the corpus, chunking or model changed (or ``rebuild``); else reuse."""
        t0 = time.perf_counter()
        with self._lock:
            indexer = self._indexer()
            if not rebuild and indexer.is_current():
                return self._info(False, t0)
            with self.store.write_lock():
                # Another process may have finished the same build while we waited to start.
                if not rebuild and indexer.is_current():
                    return self._info(False, t0)
                indexer.build(progress)
            self._retriever = None
            return self._info(True, t0)

    def _info(self, built: bool, t0: float) -> IndexInfo:
        retriever = self._open()
        return IndexInfo(
            built=built,
            generation=retriever.generation.name,
            n_documents=len(self.corpus.documents),
            n_chunks=len(retriever.chunks),
            seconds=time.perf_counter() - t0,
            directory=str(self.store.directory),
            skipped=tuple((s.path, s.reason) for s in self.corpus.skipped),
        )

    def _open(self) -> Retriever:
        with self._lock:
            if self._retriever is None:
                s = self.settings
                self._retriever = Retriever(
                    self.store.open(), self.embedder, {d.doc_id: d for d in self.documents},
                    fusion=s.fusion, bm25_weight=s.bm25_weight, dense_weight=s.dense_weight,
                    sentence_weight=s.sentence_weight, rrf_k=s.rrf_k,
                    mention_boost=s.mention_boost, tuning=self.tuning,
                )
            return self._retriever

    @property
    def retriever(self) -> Retriever:
        """The open retriever; builds or opens the index on first use."""
        with self._lock:
            if self._retriever is None:
                try:
                    if self.index_is_current():
                        return self._open()
                except IndexNotFoundError:
                    pass
                self.index()
            return self._open()

    # -- checking what callers pass -----------------------------------------------------

    def _check_text(self, text: Any, what: str) -> str:
        if not isinstance(text, str):
            raise InputError(f"the {what} must be text, not {type(text).__name__}")
        checked: str = text.replace("\x00", "").strip()
        if not checked:
            raise InputError(f"the {what} is empty: type a {what} in words")
        limit = self.settings.max_question_chars
        if len(checked) > limit:
            raise InputError(
                f"the {what} is {len(checked)} characters long; the limit is {limit}: shorten it "
                "(or raise PEERQA_MAX_QUESTION_CHARS)"
            )
        return checked

    def _check_filter(self, doc_ids: Sequence[str] | None) -> list[str] | None:
        if doc_ids is None:
            return None
        if isinstance(doc_ids, str):
            doc_ids = [doc_ids]
        ids = list(dict.fromkeys(doc_ids))
        known = {d.doc_id for d in self.corpus.documents}
        unknown = [d for d in ids if d not in known]
        if unknown:
            raise InputError(
                f"unknown document id(s) {', '.join(unknown)}: "
                f"choose from {', '.join(sorted(known))}"
            )
        if not ids:
            raise InputError("the document filter is empty: name at least one document")
        return ids

    # -- questions ----------------------------------------------------------------------

    def search(
        self, query: str, k: int | None = None, doc_ids: Sequence[str] | None = None
    ) -> list[Passage]:
        """The ``k`` passages most relevant to ``query`` (default ``top_k``), best first."""
        query = self._check_text(query, "query")
        k = check_k(self.settings.top_k if k is None else k)
        ids = self._check_filter(doc_ids)
        retriever = self.retriever
        with blas_threads(QUERY_THREADS):
            return [h.passage for h in retriever.search(query, k, ids)]

    def _prepare(
        self,
        question: str,
        history: Sequence[Mapping[str, Any]] | None,
        doc_ids: Sequence[str] | None,
        k: int | None,
    ) -> tuple[str, list[dict[str, str]], list[Hit], QuestionTerms]:
        """Checked inputs, the question's terms and the retrieved hits."""
        question = self._check_text(question, "question")
        turns = normalise_history(history)
        ids = self._check_filter(doc_ids)
        k = check_k(k if k is not None else self.settings.answer_k)
        if self.settings.answer_mode == "openai":
            self._written()  # a missing key is reported before any index work
        retriever = self.retriever
        terms = question_terms(question, turns, retriever.vocabulary)
        # One BLAS thread for a question's small products (see embeddings/threads.py).
        with blas_threads(QUERY_THREADS):
            hits = retriever.search(terms.query, k, ids, mentioned=terms.mentioned)
        return question, turns, hits, terms

    def ask(
        self,
        question: str,
        history: Sequence[Mapping[str, Any]] | None = None,
        doc_ids: Sequence[str] | None = None,
        k: int | None = None,
    ) -> Answer:
        """Answer ``question`` from the documents, every sentence cited; abstain when uncovered."""
        final: Answer | None = None
        for item in self._answer(question, history, doc_ids, k, stream=False):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final

    def stream(
        self,
        question: str,
        history: Sequence[Mapping[str, Any]] | None = None,
        doc_ids: Sequence[str] | None = None,
        k: int | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text in pieces as it is written, then the finished ``Answer``."""
        streamed = False
        for item in self._answer(question, history, doc_ids, k, stream=True):
            if isinstance(item, Answer):
                if not streamed:  # nothing was written as it came: send the final text
                    yield from text_pieces(item.text)
                yield item
                return
            streamed = True
            yield item

    def _answer(
        self,
        question: str,
        history: Sequence[Mapping[str, Any]] | None,
        doc_ids: Sequence[str] | None,
        k: int | None,
        *,
        stream: bool,
    ) -> Iterator[str | Answer]:
        """The mode's verified text as it is written (written mode only), then the Answer."""
        question, turns, hits, terms = self._prepare(question, history, doc_ids, k)
        if self.settings.answer_mode != "openai":
            yield self._extractive(question, hits, terms)
            return
        passages = [h.passage for h in hits]
        for item in self._written().run(question, turns, passages, terms.query, stream=stream):
            if isinstance(item, Fallback):
                yield self._fall_back(question, hits, terms, item)
            elif isinstance(item, Interrupted):
                if self.settings.strict:
                    raise item.error
                yield item.answer
            else:
                yield item

    def _extractive(self, question: str, hits: Sequence[Hit], terms: QuestionTerms) -> Answer:
        s = self.settings
        vocabulary = self.retriever.vocabulary
        with blas_threads(QUERY_THREADS):
            return extractive_answer(
                question, hits, terms, vocabulary,
                max_sentences=s.max_sentences,
                max_list_sentences=s.max_list_sentences,
                min_coverage=s.min_coverage,
            )

    def _fall_back(
        self, question: str, hits: Sequence[Hit], terms: QuestionTerms, fallback: Fallback
    ) -> Answer:
        """The written answer cannot be shown: the offline answer instead, or strict's error."""
        if self.settings.strict:
            if fallback.error is not None:
                raise fallback.error
            base = abstention(question, [h.passage for h in hits], terms.query, mode="openai")
            checks = dataclasses.replace(fallback.checks, abstained=True)
            return dataclasses.replace(
                base, notices=[f"{fallback.reason}.", *fallback.notices], checks=checks
            )
        offline = self._extractive(question, hits, terms)
        checks = with_citation_checks(
            dataclasses.replace(fallback.checks, fallback=fallback.kind), offline.checks
        )
        notices = [f"{fallback.reason}; this is the offline extractive answer instead.",
                   *fallback.notices, *offline.notices]
        return dataclasses.replace(offline, notices=notices, checks=checks)

    def _written(self) -> WrittenAnswerer:
        with self._lock:
            if self._writer is None:
                s = self.settings
                self._writer = WrittenAnswerer(
                    OpenAIBackend(s),
                    WrittenSettings(
                        model=s.openai_model,
                        context_window=s.openai_context_window,
                        answer_tokens=s.openai_answer_tokens,
                        max_sentences=s.max_list_sentences,
                        flag_unsupported=s.openai_unsupported == "flag",
                    ),
                )
            return self._writer

    def document(self, doc_id: str) -> Document:
        """One document by id."""
        try:
            return self.corpus.get(doc_id)
        except KeyError:
            raise InputError(f"unknown document id {doc_id!r}") from None

