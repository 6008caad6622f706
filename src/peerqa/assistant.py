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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .answer.answerability import SECTION as ANSWERABILITY
from .answer.answerability import Assessment, Phrases, Thresholds, Verdict, decide
from .answer.extractive import choose, extractive_answer
from .answer.judge import text_pieces
from .answer.meaning import WordMeaning
from .answer.outcome import abstention
from .answer.question import QuestionTerms, focus_query, named_documents, question_terms
from .answer.written import (
    Fallback,
    Interrupted,
    WrittenAnswerer,
    WrittenSettings,
    with_citation_checks,
)
from .corpus import Corpus
from .embeddings import Embedder
from .embeddings.threads import QUERY_THREADS, blas_threads
from .errors import InputError
from .indexing import IndexInfo, Progress
from .live import LiveIndex
from .openai_client import OpenAIBackend
from .retrieval import Hit, Retriever, Vocabulary
from .settings import Settings, check_k, documents_index_dir, load_settings
from .text import check_encodable
from .tuning import Tuning, load_tuning, shipped
from .types import Answer, Chunk, Document, Passage

if TYPE_CHECKING:
    from llama_index.core.base.base_query_engine import BaseQueryEngine
    from llama_index.core.retrievers import BaseRetriever

__all__ = ["Assistant", "IndexInfo", "normalise_history"]

PER_DOCUMENT = 2
"""Passages each document named in a comparison contributes at least."""


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


def _precision(settings: Settings, embedder: Embedder | None) -> str:
    """The precision of the encoder this assistant will search with (which shipped tuning fits
    its vectors): an embedder's own, else the settings' for the local model."""
    if embedder is not None:
        return str(getattr(embedder, "precision", "fp32"))
    return settings.local_precision if settings.embedding_backend == "local" else "fp32"


def _compared(
    retriever: Retriever, question: str, hits: list[Hit], ids: list[str] | None
) -> list[Hit]:
    """For a question naming two or more documents, each named document's own best passages
    join the hits: a comparison needs every side, not only the closest one's."""
    named = [d for d in named_documents(question, retriever.vocabulary)
             if ids is None or d in ids]
    if len(named) < 2:
        return hits
    focus = focus_query(question, retriever.vocabulary)
    seen = {h.passage.chunk_id for h in hits}
    extra: list[Hit] = []
    for doc_id in named:
        if sum(h.passage.doc_id == doc_id for h in hits) >= PER_DOCUMENT:
            continue
        for hit in retriever.search(focus, PER_DOCUMENT, [doc_id]):
            if hit.passage.chunk_id not in seen:
                seen.add(hit.passage.chunk_id)
                extra.append(hit)
    return [*hits, *extra]


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
        self.tuning = tuning if tuning is not None else load_tuning(
            self.settings.tuning_file, default=shipped(_precision(self.settings, embedder)))
        self.live = LiveIndex(self.settings, self.tuning, embedder)
        self.store = self.live.store
        self._writer: WrittenAnswerer | None = None
        self._meaning: WordMeaning | None = None
        self._phrases: tuple[Corpus, Phrases] | None = None
        self._lock = threading.RLock()

    # -- llama-index ---------------------------------------------------------------------
    # Shortcuts to the llama-index face (peerqa.llama_index). It is imported inside these
    # methods only, so that importing peerqa never pays for importing llama-index.

    @classmethod
    def from_documents(
        cls, documents: Sequence[Any], index_dir: str | Path | None = None, **kwargs: Any
    ) -> Assistant:
        """An assistant over llama-index ``Document``s (e.g. from ``SimpleDirectoryReader``),
        their text kept verbatim for citations; the index defaults to a cache folder named
        after the documents' ids."""
        from .llama_index import corpus_from_documents, documents_key

        corpus = corpus_from_documents(documents)
        if index_dir is None:
            index_dir = documents_index_dir(documents_key(corpus))
        assistant = cls(index_dir=index_dir, **kwargs)
        assistant.live.corpus = corpus
        return assistant

    def as_retriever(self, **kwargs: Any) -> BaseRetriever:
        """This assistant's search as a llama-index retriever, a ``PeerQARetriever``
        (``k``, ``doc_ids``)."""
        from .llama_index import PeerQARetriever

        return PeerQARetriever(self, **kwargs)

    def as_query_engine(self, **kwargs: Any) -> BaseQueryEngine:
        """This assistant's cited answers as a llama-index query engine, a
        ``PeerQAQueryEngine`` (``k``, ``doc_ids``)."""
        from .llama_index import PeerQAQueryEngine

        return PeerQAQueryEngine(self, **kwargs)

    # -- corpus and index ---------------------------------------------------------------

    @property
    def corpus(self) -> Corpus:
        """The documents of the live index (or, before it is open, of the corpus folder)."""
        return self.live.corpus

    @property
    def documents(self) -> list[Document]:
        """The corpus's documents, in file-name order."""
        return list(self.corpus.documents)

    @property
    def embedder(self) -> Embedder:
        return self.live.embedder

    def with_tuning(self, tuning: Tuning) -> Assistant:
        """This assistant with other fitted parameters, sharing its open index (for fitting
        and cross-validation: nothing is rebuilt)."""
        other = copy.copy(self)
        other.tuning = tuning
        other.live = self.live.with_tuning(tuning)
        other._lock = threading.RLock()
        other._writer = None
        return other

    @property
    def chunks(self) -> list[Chunk]:
        """The indexed passages of the live index, in corpus order."""
        return list(self.retriever.chunks)

    def expected_manifest(self) -> dict[str, Any]:
        """What the index must have been built from to be reused as it is."""
        return self.live.expected_manifest()

    def index_is_current(self) -> bool:
        return self.live.indexer().is_current()

    def index(self, rebuild: bool = False, progress: Progress | None = None, *,
              probe: bool = True) -> IndexInfo:
        """Build the index if the corpus, chunking or model changed, or it is damaged (or
        ``rebuild``); else reuse it. A rebuild reuses every vector whose file is sound.
        ``probe=False``: a current embedded index whose files all have their recorded hashes
        is not probed through Chroma (what a one-shot command needs)."""
        return self.live.index(rebuild, progress, probe=probe)

    @property
    def retriever(self) -> Retriever:
        """The open retriever; builds or opens the index on first use."""
        return self.live.retriever

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
        self, doc_ids: Sequence[str] | None, documents: Mapping[str, Document]
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
        known = set(documents)
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
        self, query: str, k: int | None = None, doc_ids: Sequence[str] | None = None, *,
        history: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Passage]:
        """The ``k`` passages most relevant to ``query`` (default ``top_k``), best first.

        With ``history`` (the conversation so far, as ``ask`` takes it) the query is searched as
        ``ask`` searches a follow-up: with the previous question's words when it needs them.
        """
        query = self._check_text(query, "query")
        k = check_k(self.settings.top_k if k is None else k)
        retriever = self.live.current()
        ids = self._check_filter(doc_ids, retriever.documents)
        terms = question_terms(query, normalise_history(history), retriever.vocabulary)
        with blas_threads(QUERY_THREADS):  # one BLAS thread for a question's small products
            return [h.passage for h in retriever.search(
                terms.query, k, ids, mentioned=terms.mentioned, late_query=terms.late)]

    def _prepare(
        self,
        question: str,
        history: Sequence[Mapping[str, Any]] | None,
        doc_ids: Sequence[str] | None,
        k: int | None,
    ) -> tuple[str, list[dict[str, str]], list[Hit], QuestionTerms, Vocabulary]:
        """Checked inputs, the question's terms, the retrieved hits and the vocabulary of the
        generation they came from (one generation per question, even if a build lands)."""
        question = self._check_text(question, "question")
        turns = normalise_history(history)
        k = check_k(k if k is not None else self.settings.answer_k)
        if self.settings.answer_mode == "openai":
            self._written()  # a missing key is reported before any index work
        retriever = self.live.current()
        ids = self._check_filter(doc_ids, retriever.documents)
        terms = question_terms(question, turns, retriever.vocabulary)
        # One BLAS thread for a question's small products (see embeddings/threads.py).
        with blas_threads(QUERY_THREADS):
            hits = retriever.search(terms.query, k, ids, mentioned=terms.mentioned,
                                    late_query=terms.late)
            hits = _compared(retriever, question, hits, ids)
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
        # The written answer passes the same answerability check as the offline one.
        verdict = self._verdict(question, hits, terms, vocabulary)
        for item in self._written().run(question, turns, passages, terms.query, stream=stream,
                                        verdict=verdict, titles=self.titles):
            if isinstance(item, Fallback):
                yield self._fall_back(question, hits, terms, vocabulary, item)
            elif isinstance(item, Interrupted):
                if self.settings.strict:
                    raise item.error
                yield item.answer
            else:
                yield item

    @property
    def precision(self) -> str:
        """The encoder's precision ("fp32" or "int8"): which shipped tuning fits its vectors."""
        return _precision(self.settings, self.live.embedder)

    @property
    def thresholds(self) -> Thresholds:
        """The answerability check's thresholds: fitted (the tuning), else their defaults."""
        return Thresholds.of(self.tuning.section(ANSWERABILITY))

    @property
    def meaning(self) -> WordMeaning:
        """Words compared by their vectors (the index's embedder), each embedded once."""
        with self._lock:
            if self._meaning is None:
                # A question's vector is the one its search read (the open retriever keeps it);
                # the words its chunks use were embedded with the index.
                self._meaning = WordMeaning(self.embedder,
                                            question=lambda q: self.live.retriever.embed(q),
                                            known=lambda: self.live.retriever.words)
            return self._meaning

    @property
    def phrases(self) -> Phrases:
        """The corpus's text as the answerability check looks names up in it (made again when
        the live index moves to a newer corpus)."""
        with self._lock:
            corpus = self.corpus
            if self._phrases is None or self._phrases[0] is not corpus:
                self._phrases = (corpus, Phrases([d.text for d in corpus.documents]))
            return self._phrases[1]

    @property
    def titles(self) -> dict[str, str]:
        """How answers name each document: its short title, else its title."""
        return {d.doc_id: d.short_title or d.title for d in self.documents}

    @property
    def texts(self) -> dict[str, str]:
        """Each document's stored text, by id: where a quote's context is read (whether a line
        is an item of a list that runs beyond its passage)."""
        return {d.doc_id: d.text for d in self.documents}

    def _extractive(
        self, question: str, hits: Sequence[Hit], terms: QuestionTerms, vocabulary: Vocabulary
    ) -> Answer:
        s = self.settings
        with blas_threads(QUERY_THREADS):
            return extractive_answer(
                question, hits, terms, vocabulary,
                max_sentences=s.max_sentences,
                max_list_sentences=s.max_list_sentences,
                min_coverage=s.min_coverage,
                thresholds=self.thresholds,
                titles=self.titles,
                meaning=self.meaning,
                phrases=self.phrases,
                texts=self.texts,
            )

    def _verdict(
        self, question: str, hits: Sequence[Hit], terms: QuestionTerms, vocabulary: Vocabulary
    ) -> Verdict:
        """The answerability check's verdict on the hits, as the offline answer would reach it."""
        if not hits or not terms.weights:
            return Verdict("not_covered")
        s = self.settings
        chosen = choose(question, hits, terms, vocabulary,
                        max_sentences=s.max_sentences, max_list_sentences=s.max_list_sentences,
                        titles=self.titles, meaning=self.meaning, phrases=self.phrases,
                        texts=self.texts)
        return decide(chosen.assessment, self.thresholds, min_coverage=s.min_coverage)

    def assess(
        self, question: str, history: Sequence[Mapping[str, Any]] | None = None
    ) -> Assessment:
        """What the answerability check finds for a question, before its thresholds: what
        fitting them needs (``evaluation/fitting.py``)."""
        question, _, hits, terms, vocabulary = self._prepare(question, history, None, None)
        s = self.settings
        return choose(question, hits, terms, vocabulary,
                      max_sentences=s.max_sentences, max_list_sentences=s.max_list_sentences,
                      titles=self.titles, meaning=self.meaning, phrases=self.phrases,
                      texts=self.texts).assessment

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

