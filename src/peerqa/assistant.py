"""Assistant: the one object most callers need: ``ask``, ``stream``, ``search``, ``index``.

It owns the flow of a question, top to bottom: check the input, analyse the question
(``answer.question``), search (``retrieval``), then answer in the chosen mode. It is the only
place that picks the answer mode and the only place that falls back: when a written answer
cannot be used, the offline extractive answer stands in (or, with ``strict``, an error).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
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
from .errors import IndexNotFoundError, InputError, PeerQAError, StoreError
from .indexing import Indexer, IndexInfo, Progress
from .openai_client import OpenAIBackend
from .retrieval import Hit, Retriever, Vocabulary
from .settings import Settings, check_k, load_settings
from .store import ChromaLocation, Generation, IndexStore
from .tuning import Tuning, load_tuning
from .types import Answer, Chunk, Document, Passage

__all__ = ["Assistant", "IndexInfo", "check_encodable", "normalise_history"]

log = logging.getLogger(__name__)


def check_encodable(text: str, what: str) -> str:
    """``text``, or InputError when it holds what no encoder takes (a lone surrogate, such as an
    invalid byte in a command-line argument becomes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(
            f"the {what} contains something that is not text at character {e.start + 1} (an "
            "invalid byte or a broken character): retype it, or check that the terminal or "
            "program sending it uses UTF-8"
        ) from None
    return text


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
        turns.append({"role": check_encodable(str(turn["role"]), "history"),
                      "content": check_encodable(str(content or ""), "history")})
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
        self._stamp: tuple[int, int, int] | None = None  # CURRENT as the open retriever saw it
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

    def _indexer(self, corpus: Corpus | None = None) -> Indexer:
        s = self.settings
        return Indexer(
            self.store, corpus or self.corpus, self.embedder,
            chunk_target_words=s.chunk_target_words, chunk_max_words=s.chunk_max_words,
        )

    def expected_manifest(self) -> dict[str, Any]:
        """What the index must have been built from to be reused as it is."""
        return self._indexer().expected_manifest()

    def index_is_current(self) -> bool:
        return self._indexer().is_current()

    def index(self, rebuild: bool = False, progress: Progress | None = None) -> IndexInfo:
        """Build the index if the corpus, chunking or model changed, or it is damaged (or
        ``rebuild``); else reuse it. A rebuild reuses every vector whose file is sound."""
        t0 = time.perf_counter()
        with self._lock:
            indexer = self._indexer()
            damage = None
            if not rebuild and indexer.is_current():
                damage = self.store.damage()  # hashes, SQLite's check, a probe query
                if damage is None:
                    return self._info(False, t0)
                # Reported by the caller from IndexInfo.repaired (the CLI and the app print it).
                log.info("the index at %s is damaged (%s): rebuilding it",
                         self.store.directory, damage)
            with self.store.write_lock():
                # Another process may have finished the same build while we waited to start.
                if (not rebuild and damage is None and indexer.is_current()
                        and self.store.damage() is None):
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
            sentence_weight=s.sentence_weight, rrf_k=s.rrf_k,
            mention_boost=s.mention_boost, tuning=self.tuning,
        )

    def _current(self) -> Retriever:
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
        expected = self._indexer(corpus).expected_manifest()
        if any(generation.manifest.get(k) != v for k, v in expected.items()):
            generation.close()
            raise StoreError(
                f"generation {name} was not built from the documents and settings this "
                "assistant has now"
            )
        self._corpus = corpus
        return self._make_retriever(generation, corpus)

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
        checked: str = check_encodable(text.replace("\x00", "").strip(), what)
        if not checked:
            raise InputError(f"the {what} is empty: type a {what} in words")
        limit = self.settings.max_question_chars
        if len(checked) > limit:
            raise InputError(
                f"the {what} is {len(checked)} characters long; the limit is {limit}: shorten it "
                "(or raise PEERQA_MAX_QUESTION_CHARS)"
            )
        return checked

    def _check_filter(
        self, doc_ids: Sequence[str] | None, documents: Mapping[str, Document] | None = None
    ) -> list[str] | None:
        if doc_ids is None:
            return None
        if isinstance(doc_ids, str):
            doc_ids = [doc_ids]
        ids = list(dict.fromkeys(doc_ids))
        for doc_id in ids:
            if not isinstance(doc_id, str):
                raise InputError(f"document ids must be text, not {type(doc_id).__name__}")
            check_encodable(doc_id, "document filter")
        known = set(documents) if documents is not None else {
            d.doc_id for d in self.corpus.documents
        }
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
        retriever = self._current()
        ids = self._check_filter(doc_ids, retriever.documents)
        return [h.passage for h in retriever.search(query, k, ids)]

    def _prepare(
        self,
        question: str,
        history: Sequence[Mapping[str, Any]] | None,
        doc_ids: Sequence[str] | None,
        k: int | None,
    ) -> tuple[str, list[dict[str, str]], list[Hit], QuestionTerms, Vocabulary]:
        """Checked inputs, the question's terms, the retrieved hits and the vocabulary of the
        generation they came from."""
        question = self._check_text(question, "question")
        turns = normalise_history(history)
        k = check_k(k if k is not None else self.settings.answer_k)
        if self.settings.answer_mode == "openai":
            self._written()  # a missing key is reported before any index work
        retriever = self._current()
        ids = self._check_filter(doc_ids, retriever.documents)
        terms = question_terms(question, turns, retriever.vocabulary)
        hits = retriever.search(terms.query, k, ids, mentioned=terms.mentioned)
        return question, turns, hits, terms, retriever.vocabulary

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
        question, turns, hits, terms, vocabulary = self._prepare(question, history, doc_ids, k)
        if self.settings.answer_mode != "openai":
            yield self._extractive(question, hits, terms, vocabulary)
            return
        passages = [h.passage for h in hits]
        for item in self._written().run(question, turns, passages, terms.query, stream=stream):
            if isinstance(item, Fallback):
                yield self._fall_back(question, hits, terms, vocabulary, item)
            elif isinstance(item, Interrupted):
                if self.settings.strict:
                    raise item.error
                yield item.answer
            else:
                yield item

    def _extractive(
        self, question: str, hits: Sequence[Hit], terms: QuestionTerms, vocabulary: Vocabulary
    ) -> Answer:
        s = self.settings
        return extractive_answer(
            question, hits, terms, vocabulary,
            max_sentences=s.max_sentences,
            max_list_sentences=s.max_list_sentences,
            min_coverage=s.min_coverage,
        )

    def _fall_back(
        self,
        question: str,
        hits: Sequence[Hit],
        terms: QuestionTerms,
        vocabulary: Vocabulary,
        fallback: Fallback,
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
        offline = self._extractive(question, hits, terms, vocabulary)
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

