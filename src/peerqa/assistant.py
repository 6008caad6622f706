"""Assistant: the one object most callers need: ``ask``, ``search``, ``index``.

Data flow: corpus folder -> documents (corpus.py) -> chunks (chunking.py) -> vectors
(embeddings.py) -> a generation on disk (store.py). At question time: question (+ history) ->
weighted terms (answering.py) -> hybrid search (retrieval.py) -> answer with citations.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import chunking
from .answering import QuestionTerms, extractive_answer, question_terms
from .citations import text_pieces
from .corpus import Corpus, load_corpus
from .embeddings import Embedder, get_embedder
from .errors import IndexNotFoundError, InputError, StoreError
from .llm import OpenAIAnswerer
from .retrieval import Hit, HybridRetriever
from .settings import Settings, load_settings
from .store import FORMAT_VERSION, ChromaLocation, IndexStore, SentenceVectors
from .types import Answer, Document, Passage

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


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


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
        **overrides: Any,
    ) -> None:
        if corpus_dir is not None:
            overrides["corpus_dir"] = Path(corpus_dir)
        if index_dir is not None:
            overrides["index_dir"] = Path(index_dir)
        self.settings = load_settings(settings, **overrides)
        self._embedder = embedder
        self._corpus: Corpus | None = None
        self._retriever: HybridRetriever | None = None
        self._answerer: OpenAIAnswerer | None = None
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

    def expected_manifest(self) -> dict[str, Any]:
        """What the index must have been built from to be reused as it is."""
        s = self.settings
        return {
            "format": FORMAT_VERSION,
            "corpus": self.corpus.fingerprint,
            "documents": {d.doc_id: d.sha256 for d in self.corpus.documents},
            "chunker": chunking.CHUNKER_VERSION,
            "chunk_target_words": s.chunk_target_words,
            "chunk_max_words": s.chunk_max_words,
            "embedder": self.embedder.name,
        }

    def index_is_current(self) -> bool:
        manifest = self.store.current_manifest()
        if manifest is None:
            return False
        return all(manifest.get(k) == v for k, v in self.expected_manifest().items())

    def index(self, rebuild: bool = False, progress: Progress | None = None) -> IndexInfo:
        """Build the index if the corpus, chunking or model changed (or ``rebuild``); else reuse."""
        t0 = time.perf_counter()
        with self._lock:
            if not rebuild and self.index_is_current():
                self._open()
                return self._info(False, t0)
            with self.store.write_lock():
                # Another process may have finished the same build while we waited to start.
                if not rebuild and self.index_is_current():
                    self._open()
                    return self._info(False, t0)
                self._build(progress)
            self._retriever = None
            self._open()
            return self._info(True, t0)

    def _info(self, built: bool, t0: float) -> IndexInfo:
        assert self._retriever is not None
        return IndexInfo(
            built=built,
            generation=self._retriever.generation.name,
            n_documents=len(self.corpus.documents),
            n_chunks=len(self._retriever.chunks),
            seconds=time.perf_counter() - t0,
            directory=str(self.store.directory),
            skipped=tuple((s.path, s.reason) for s in self.corpus.skipped),
        )

    def _build(self, progress: Progress | None) -> None:
        s = self.settings
        docs = self.corpus.documents
        by_id = {d.doc_id: d for d in docs}
        chunks = chunking.chunk_corpus(docs, s.chunk_target_words, s.chunk_max_words)
        texts = [
            chunking.indexed_text(c, by_id[c.doc_id].title, by_id[c.doc_id].keywords)
            for c in chunks
        ]
        rows, spans, sentence_texts = [], [], []
        for i, c in enumerate(chunks):
            doc_text = by_id[c.doc_id].text
            for a, b in chunking.sentence_spans(doc_text, c.start, c.end):
                rows.append(i)
                spans.append((a, b))
                sentence_texts.append(doc_text[a:b])
        reuse = self._previous_vectors()
        vectors = self._embed(texts, reuse, "embedding", progress)
        sentence_vectors = self._embed(sentence_texts, reuse, "sentences", progress)
        metadatas = [
            {"doc_id": c.doc_id, "section": c.section[:500], "start": c.start, "end": c.end}
            for c in chunks
        ]
        manifest = {
            **self.expected_manifest(),
            "text_keys": [_text_key(t) for t in texts],
            "sentence_keys": [_text_key(t) for t in sentence_texts],
        }
        self.store.write_generation(
            manifest, chunks, vectors, metadatas,
            progress=self._stored_counter(progress, len(chunks)),
            sentences=SentenceVectors(
                np.asarray(rows, dtype=np.int32),
                np.asarray(spans, dtype=np.int32).reshape(-1, 2),
                sentence_vectors,
            ),
        )

    @staticmethod
    def _stored_counter(progress: Progress | None, total: int) -> Callable[[int], None] | None:
        """Turn the store's per-batch counts into the running totals every stage reports."""
        if progress is None:
            return None
        done = [0]

        def step(n: int) -> None:
            done[0] += n
            progress("storing", done[0], total)

        return step

    def _embed(
        self, texts: list[str], reuse: dict[str, np.ndarray], stage: str,
        progress: Progress | None,
    ) -> np.ndarray:
        """Vectors for ``texts``, reusing those already computed for the same text."""
        vectors = np.zeros((len(texts), self.embedder.dim), dtype=np.float32)
        todo = []
        for i, t in enumerate(texts):
            v = reuse.get(_text_key(t))
            if v is not None:
                vectors[i] = v
            else:
                todo.append(i)
        total = len(texts)
        done = [total - len(todo)]
        if progress:
            progress(stage, done[0], total)

        def step(n: int) -> None:
            done[0] += n
            if progress:
                progress(stage, done[0], total)

        if todo:
            vectors[todo] = self.embedder.embed_documents([texts[i] for i in todo], progress=step)
        return vectors

    def _previous_vectors(self) -> dict[str, np.ndarray]:
        """Vectors of the live generation by text, reused when the model is the same."""
        try:
            gen = self.store.open()
            if gen.manifest.get("embedder") != self.embedder.name:
                return {}
            found: dict[str, np.ndarray] = {}
            keys = gen.manifest.get("text_keys") or []
            vectors = gen.vectors()
            if len(keys) == len(vectors):
                found.update(zip(keys, vectors, strict=True))
            sentences = gen.sentences()
            keys = gen.manifest.get("sentence_keys") or []
            if sentences is not None and len(keys) == len(sentences.vectors):
                found.update(zip(keys, sentences.vectors, strict=True))
            return found
        except (StoreError, OSError, ValueError):
            return {}

    def _open(self) -> HybridRetriever:
        with self._lock:
            if self._retriever is None:
                gen = self.store.open()
                docs = {d.doc_id: d for d in self.corpus.documents}
                s = self.settings
                self._retriever = HybridRetriever(
                    gen, self.embedder, docs, rrf_k=s.rrf_k, bm25_weight=s.bm25_weight,
                    dense_weight=s.dense_weight, sentence_weight=s.sentence_weight,
                    fusion=s.fusion, mention_boost=s.mention_boost,
                )
            return self._retriever

    @property
    def retriever(self) -> HybridRetriever:
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

    # -- questions ----------------------------------------------------------------------

    def _check_text(self, text: Any, what: str) -> str:
        if not isinstance(text, str):
            raise InputError(f"the {what} must be text, not {type(text).__name__}")
        text = text.replace("\x00", "").strip()
        if not text:
            raise InputError(f"the {what} is empty: type a {what} in words")
        limit = self.settings.max_question_chars
        if len(text) > limit:
            raise InputError(
                f"the {what} is {len(text)} characters long; the limit is {limit}: shorten it "
                "(or raise PEERQA_MAX_QUESTION_CHARS)"
            )
        return text

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

    @staticmethod
    def _check_k(k: int) -> int:
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 50:
            raise InputError(f"k must be a whole number from 1 to 50, not {k!r}")
        return k

    def search(
        self, query: str, k: int = 5, doc_ids: Sequence[str] | None = None
    ) -> list[Passage]:
        """The ``k`` passages most relevant to ``query``, best first."""
        query = self._check_text(query, "query")
        k = self._check_k(k)
        ids = self._check_filter(doc_ids)
        retriever = self.retriever
        return [retriever.passage(h) for h in retriever.search(query, k, ids)]

    def _prepare(
        self,
        question: str,
        history: Sequence[Mapping[str, Any]] | None,
        doc_ids: Sequence[str] | None,
        k: int | None,
    ) -> tuple[str, list[dict[str, str]], list[Hit], QuestionTerms, HybridRetriever]:
        """Checked inputs, the question's terms and the retrieved hits."""
        question = self._check_text(question, "question")
        turns = normalise_history(history)
        ids = self._check_filter(doc_ids)
        k = self._check_k(k if k is not None else self.settings.answer_k)
        if self.settings.answer_mode == "openai":
            self._openai()  # a missing key is reported before any index work
        retriever = self.retriever
        terms = question_terms(question, turns, retriever)
        hits = retriever.search(terms.query, k, ids, mentioned=terms.mentioned)
        return question, turns, hits, terms, retriever

    def _openai(self) -> OpenAIAnswerer:
        with self._lock:
            if self._answerer is None:
                self._answerer = OpenAIAnswerer(self.settings)
            return self._answerer

    def ask(
        self,
        question: str,
        history: Sequence[Mapping[str, Any]] | None = None,
        doc_ids: Sequence[str] | None = None,
        k: int | None = None,
    ) -> Answer:
        """Answer ``question`` from the documents, every sentence cited; abstain when uncovered."""
        question, turns, hits, terms, retriever = self._prepare(question, history, doc_ids, k)
        s = self.settings
        if s.answer_mode == "openai":
            return self._openai().answer(question, turns, hits, terms, retriever)
        return extractive_answer(
            question, hits, terms, retriever,
            max_sentences=s.max_sentences,
            max_list_sentences=s.max_list_sentences,
            min_coverage=s.min_coverage,
        )

    def stream(
        self,
        question: str,
        history: Sequence[Mapping[str, Any]] | None = None,
        doc_ids: Sequence[str] | None = None,
        k: int | None = None,
    ) -> Iterator[str | Answer]:
        """Yield the answer's text in pieces as it is written, then the finished ``Answer``."""
        if self.settings.answer_mode == "openai":
            question, turns, hits, terms, retriever = self._prepare(question, history, doc_ids, k)
            yield from self._openai().stream(question, turns, hits, terms, retriever)
            return
        answer = self.ask(question, history=history, doc_ids=doc_ids, k=k)
        yield from text_pieces(answer.text)
        yield answer

    def document(self, doc_id: str) -> Document:
        """One document by id."""
        try:
            return self.corpus.get(doc_id)
        except KeyError:
            raise InputError(f"unknown document id {doc_id!r}") from None
