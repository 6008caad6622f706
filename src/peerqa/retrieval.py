"""Hybrid retrieval: BM25 over stemmed chunk text plus dense vectors from Chroma, fused.

Both retrievers see each chunk with its document title, the names the document goes by and its
section in front (``indexed_text``). Three signals are computed for every searchable chunk:
BM25 (``lexical.LexicalIndex``, saved at build time), the chunk vector's cosine similarity (an
exact scan of the generation's memory-mapped vectors, or Chroma's answer on a server) and its
best-matching sentence's (sentence vectors live beside the chunks in the generation, memory-mapped,
and are searched exhaustively in numpy). Opening a generation computes nothing per chunk in
Python, and a search's Python work does not grow with the corpus. A
fusion function, chosen by name, combines them: ``zscore`` standardises each signal over the
searchable chunks and adds them with weights (0.25, 0.45, 0.3 by default); ``rrf`` adds
weighted reciprocal ranks. With a local model, late interaction (``late.py``: each content word
of the question finds its closest word in the chunk, both read in context) then reranks the
fused best 300 (weight 0.75). On the gold set the standardised sum ranks the supporting passage
higher, so it is the default. The dense signals search with the query vector passed through the
fitted query adapter (``ranking.Adapter``), and each passage's ``relevance`` is its score put
through the fitted calibration (``ranking.Calibration``); each chunk's fused score moves part of
the way towards its section's best (``ranking.SectionPull``). ``Retriever.rank`` is the one
ranking that ``search`` and the fitters read.

``Vocabulary`` answers what the answering side asks of the corpus (how rare a word is, whether
the corpus uses it, which documents a text names), so that answerers never see the retriever.
"""

from __future__ import annotations

import copy
import functools
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .chunking import indexed_text
from .embeddings import Embedder, token_embedder
from .fusion import FUSIONS, MENTION_SCALE, Signals, Weights, top
from .late import LateInteraction
from .lexical import Counts, LexicalIndex
from .ranking import DEPTH as RANKED
from .ranking import Adapter, Calibration, SectionPull, section_groups
from .store import Generation
from .tables import ALIGN, WordVectors
from .text import ASKS_WHO_MADE, credit_lines, sentence_spans, tokenize
from .tuning import Tuning
from .types import Chunk, Document, Passage

DEPTH = 1000
"""Chunks asked of the vector store per query: every chunk of a small corpus."""


# --------------------------------------------------------------------------- vocabulary


def _naming(aliases: Sequence[str]) -> re.Pattern[str]:
    """Any of ``aliases`` as a whole name, in any case ("QUB", not "QUBs" or "pre-QUB")."""
    return re.compile(
        r"(?<![\w-])(?:" + "|".join(re.escape(a) for a in aliases) + r")(?![\w-])", re.I
    )


class Vocabulary:
    """The corpus as the answering side needs it: idf over chunks, known words, named documents."""

    def __init__(self, documents: Mapping[str, Document], counts: Counts) -> None:
        self._n = counts.chunks
        self._df = counts.df
        self._words = counts.words
        self._alias_patterns = {
            d.doc_id: _naming(d.aliases) for d in documents.values() if d.aliases
        }
        # Most texts asked about (a question's every phrase) name no document: one search of
        # every alias at once says so before each document's own pattern is tried.
        aliases = [a for d in documents.values() for a in d.aliases]
        self._any_alias = _naming(aliases) if aliases else None

    @classmethod
    def from_tokens(
        cls, documents: Mapping[str, Document], chunk_tokens: Sequence[Sequence[str]]
    ) -> Vocabulary:
        """The vocabulary of these documents and their chunks' stemmed tokens."""
        return cls(documents, Counts.of(documents.values(), chunk_tokens))

    def idf(self, token: str) -> float:
        """Inverse chunk frequency of a stemmed token; unseen tokens weigh the most."""
        df = self._df.get(token, 0)
        return math.log(1 + (self._n - df + 0.5) / (df + 0.5))

    def knows_word(self, word: str) -> bool:
        """Whether the corpus uses this (lower-case, unstemmed) word anywhere."""
        return word in self._words

    def mentioned_documents(self, text: str) -> list[str]:
        """Documents the text names by one of their aliases ("the Fife review", "QUB")."""
        if self._any_alias is None or not self._any_alias.search(text):
            return []
        return [d for d, pattern in self._alias_patterns.items() if pattern.search(text)]


# --------------------------------------------------------------------------- the retriever


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage found by the search, with what the answering side needs to quote from it."""

    passage: Passage
    indexed: str
    """The text the retrievers saw: title, document names and section before the passage."""
    sentences: tuple[tuple[int, int, float], ...] = ()
    """(start, end, cosine similarity to the query) of each sentence, in document offsets."""


@dataclass(frozen=True, slots=True)
class Ranking:
    """One search's best ``RANKED`` chunks, best first, with their scores."""

    chunks: np.ndarray
    """Chunk indices, best first."""
    scores: np.ndarray
    """The fused score of each (with the mention boost)."""
    sentence_sims: np.ndarray | None
    """Sentence cosine similarities to the query's own vector (not the adapted one: the
    answerers' thresholds are set on plain cosines), one per sentence of the generation; with
    the fitted adapter in use, only those of the sentences of ``chunks`` (and a few more) are
    computed, NaN elsewhere."""


CREDIT_BOOST = 2.0
"""What a credit line is worth to a question who made a document, in units of the mention boost
(chosen, not fitted: two standard deviations of the fused score bring a named document's credits
into its top few without outranking a passage that matches the question on its own)."""

QUERY_CACHE = 512
"""Query vectors kept per open index: the eval and the app often embed the same text twice."""


class Retriever:
    """BM25 + dense search over one index generation, with the fitted adapter and relevance."""

    def __init__(
        self,
        generation: Generation,
        embedder: Embedder,
        documents: Mapping[str, Document],
        *,
        fusion: str,
        bm25_weight: float,
        dense_weight: float,
        sentence_weight: float,
        tokens_weight: float,
        rrf_k: int,
        mention_boost: float,
        tuning: Tuning,
        depth: int = DEPTH,
    ) -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}: choose from {', '.join(FUSIONS)}")
        self.generation = generation
        self.embedder = embedder
        self.documents = documents
        self.chunks: Sequence[Chunk] = generation.chunks
        self.fusion = fusion
        self.weights = Weights(bm25_weight, dense_weight, sentence_weight, rrf_k)
        self.tokens_weight = tokens_weight
        self.mention_boost = mention_boost
        self.depth = depth
        self._row: dict[str, int] | None = None  # chunk id -> row, for a Chroma server's answers
        self._doc_code = generation.table.doc  # each chunk's document, as a code
        self._codes = {d: i for i, d in enumerate(generation.table.doc_ids)}
        self.sentences = generation.sentences()
        self._sentence_order: np.ndarray | None = None
        self._sentence_bounds = np.zeros(len(self.chunks) + 1, dtype=np.int64)
        if self.sentences is not None:
            chunk = np.asarray(self.sentences.chunk)
            if len(chunk) > 1 and bool((chunk[1:] < chunk[:-1]).any()):
                self._sentence_order = np.argsort(chunk, kind="stable")
                chunk = chunk[self._sentence_order]
            self._sentence_bounds = np.searchsorted(chunk, np.arange(len(self.chunks) + 1))
        self.lexical: LexicalIndex = generation.lexical()
        self.vocabulary = Vocabulary(documents, generation.counts())
        # Each chunk's section, for the section pull: in the chunk table (format 5), else read
        # from the chunks themselves.
        self._section_of = generation.table.section if generation.table.section is not None \
            else section_groups([(c.doc_id, c.section) for c in self.chunks])
        # A query's vector and, with late interaction, its token vectors.
        self._queries: OrderedDict[str, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        # Late interaction needs the chunks' token vectors and an embedder that reads a query's.
        tokens = generation.tokens() if tokens_weight else None
        reader = token_embedder(embedder) if tokens is not None else None
        self.late = LateInteraction(tokens, reader) if tokens is not None and reader else None
        self._queries_lock = threading.Lock()
        self._tune(tuning)

    @functools.cached_property
    def words(self) -> WordVectors | None:
        """The words the chunks use and their vectors (read on first use: the answer's check
        needs them, a search does not)."""
        return self.generation.words()

    def _tune(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self.adapter = Adapter.from_section(tuning.section("adapter"), self.embedder.dim,
                                            self.documents.keys())
        self.pull = SectionPull.from_section(tuning.section("section_pull"))
        self.calibration = Calibration.from_section(tuning.section("relevance"), self.scored_on)

    @functools.cached_property
    def credits(self) -> np.ndarray:
        """Which chunks hold a credit line: "Developed by ...", a line of authors."""
        return np.array([credit_lines(c.text) for c in self.chunks], dtype=bool)

    @property
    def scored_on(self) -> str:
        """What the search's scores are, for the calibration: "fused" or "fused+adapter", with
        "+pull" when the section pull applies."""
        on = "fused+adapter" if self.adapter is not None else "fused"
        return f"{on}+pull" if self.pull.share else on

    def with_tuning(self, tuning: Tuning) -> Retriever:
        """The same index searched with other fitted parameters (shares every array)."""
        view = copy.copy(self)
        view._tune(tuning)
        return view

    def indexed(self, i: int) -> str:
        """What the retrievers saw of chunk ``i``: title, document names and section first."""
        chunk = self.chunks[i]
        doc = self.documents.get(chunk.doc_id)
        if doc is None:
            return indexed_text(chunk, chunk.doc_id)
        return indexed_text(chunk, doc.title, doc.keywords)

    def _in(self, doc_ids: Sequence[str]) -> np.ndarray:
        """Which chunks belong to these documents."""
        codes = [self._codes[d] for d in doc_ids if d in self._codes]
        return np.isin(self._doc_code, np.array(codes, dtype=np.int32))

    def read(self, query: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The embedder's vector of ``query`` and, with late interaction, its token vectors:
        one encoder pass, kept (the eval, the fitters and the answer's checks ask again)."""
        with self._queries_lock:
            found = self._queries.get(query)
            if found is not None:
                self._queries.move_to_end(query)
                return found
        if self.late is not None:
            found = self.late.read(query)
        else:
            found = (np.asarray(self.embedder.embed_query(query), dtype=np.float32), None)
        with self._queries_lock:
            self._queries[query] = found
            while len(self._queries) > QUERY_CACHE:
                self._queries.popitem(last=False)
        return found

    def embed(self, query: str) -> np.ndarray:
        """The embedder's own vector of ``query`` (``read``)."""
        return self.read(query)[0]

    def query_vector(self, query: str) -> np.ndarray:
        """The vector the dense signals search with: the query's, adapted when fitted."""
        vector = self.embed(query)
        return self.adapter.apply(vector) if self.adapter else vector

    def _dense(self, vector: np.ndarray, doc_ids: Sequence[str] | None) -> np.ndarray:
        """Every chunk's cosine similarity: exact in embedded mode; from a Chroma server, its
        ``depth`` nearest, the rest given the least of those."""
        if self.generation.scans_locally:
            return np.asarray(self.generation.similarities(vector), dtype=np.float32)
        n = len(self.chunks)
        found = self.generation.query(vector, min(n, self.depth), doc_ids)
        dense = np.full(n, min((s for _, s in found), default=0.0), dtype=np.float32)
        if self._row is None:
            self._row = {c.chunk_id: i for i, c in enumerate(self.chunks)}
        pairs = [(self._row[c], s) for c, s in found if c in self._row]
        if pairs:
            rows, sims = zip(*pairs, strict=True)
            dense[list(rows)] = sims
        return dense

    def signals(
        self, query: str, doc_ids: Sequence[str] | None, query_vector: np.ndarray | None = None
    ) -> tuple[Signals, np.ndarray | None]:
        """Every chunk's score from each retriever, and every sentence's similarity."""
        n = len(self.chunks)
        mask = self._in(doc_ids) if doc_ids else np.ones(n, bool)
        bm25 = self.lexical.scores(tokenize(query))
        vector = self.query_vector(query) if query_vector is None else query_vector
        dense = self._dense(vector, doc_ids)
        best_sentence = None
        sentence_sims = None
        if self.sentences is not None and len(self.sentences.rows):
            best_sentence = np.full(n, -1.0, dtype=np.float32)
            table = self.sentences.table @ np.asarray(vector, dtype=np.float32)
            sentence_sims = table[self.sentences.rows]  # each distinct sentence computed once
            np.maximum.at(best_sentence, self.sentences.chunk, sentence_sims)
        return Signals(bm25, dense, best_sentence, mask), sentence_sims

    def _sentence_rows(self, i: int) -> np.ndarray:
        """The sentence rows of chunk ``i``, in document order."""
        a, b = int(self._sentence_bounds[i]), int(self._sentence_bounds[i + 1])
        if self._sentence_order is None:
            return np.arange(a, b)
        return self._sentence_order[a:b]

    def _sims_of(self, vector: np.ndarray, chunks: np.ndarray) -> np.ndarray | None:
        """Sentence similarities to ``vector``, computed for the sentences of ``chunks`` (and
        any sharing their vectors' blocks; NaN elsewhere).

        The product runs over the aligned blocks of 64 table rows that hold those sentences'
        vectors: each value equals, bit for bit, what the product over the whole table gives
        (``tables.ALIGN``; checked by a test).
        """
        if self.sentences is None:
            return None
        table, sentence_rows = self.sentences.table, self.sentences.rows
        out = np.full(len(table), np.nan, dtype=np.float32)
        rows = [self._sentence_rows(int(i)) for i in chunks]
        if rows:
            q = np.asarray(vector, dtype=np.float32)
            needed = np.asarray(sentence_rows[np.concatenate(rows)])
            for b in np.unique(needed // ALIGN).tolist():
                out[ALIGN * b : ALIGN * (b + 1)] = table[ALIGN * b : ALIGN * (b + 1)] @ q
        sims: np.ndarray = out[sentence_rows]
        return sims

    def rank(
        self,
        query: str,
        doc_ids: Sequence[str] | None = None,
        *,
        mentioned: Sequence[str] | None = None,
        query_vector: np.ndarray | None = None,
        late_query: str | None = None,
    ) -> Ranking:
        """The best ``RANKED`` chunks by fused score, best first.

        Chunks of ``mentioned`` documents (default: those the query names) get a fixed boost;
        late interaction then reranks the best ``late.CANDIDATES``, and each chunk's score moves
        towards its section's best (the fitted section pull).
        ``query_vector`` is the embedder's vector of the query when the caller already has it;
        the fitted adapter, if any, is applied to it either way. ``late_query`` is what late
        interaction reads instead of the query (a follow-up's own words).
        """
        raw = self.embed(query) if query_vector is None else query_vector
        vector = self.adapter.apply(raw) if self.adapter else raw
        # A damaged array (its size intact until `peerqa index` checks hashes) may hold
        # values that overflow: no warning is printed, the check below reports it in one line.
        with np.errstate(over="ignore", invalid="ignore"):
            signals, sims = self.signals(query, doc_ids, vector)
            fused = FUSIONS[self.fusion](signals, self.weights)
        if mentioned is None:
            mentioned = self.vocabulary.mentioned_documents(query)
        unit = MENTION_SCALE[self.fusion](self.weights)  # one unit of each boost below
        if mentioned and self.mention_boost:
            fused = fused + self.mention_boost * unit * self._in(mentioned)
        if ASKS_WHO_MADE.search(query):
            # "Who wrote the Fife review?" is answered by its credit lines, whose words share
            # nothing with the question's: the passages holding them come forward.
            credits = self.credits if not mentioned else self.credits & self._in(mentioned)
            fused = fused + CREDIT_BOOST * unit * credits
        query_tokens = self.read(late_query or query)[1] \
            if self.late is not None and self.tokens_weight else None
        if self.late is not None and query_tokens is not None:
            fused = self.late.rerank(query_tokens, fused, signals.mask, self.tokens_weight * unit)
        fused = self.pull.apply(fused, self._section_of)
        chunks = top(fused, np.flatnonzero(signals.mask), RANKED)
        if not np.isfinite(fused[chunks]).all():
            raise self.generation.damaged("a stored vector or BM25 score is not a number")
        if sims is not None and vector is not raw:
            sims = self._sims_of(raw, chunks)
        return Ranking(chunks, fused[chunks].astype(np.float64), sims)

    def search(
        self,
        query: str,
        k: int,
        doc_ids: Sequence[str] | None = None,
        *,
        mentioned: Sequence[str] | None = None,
        query_vector: np.ndarray | None = None,
        late_query: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``, optionally only from ``doc_ids``, each with its
        calibrated ``relevance``.

        Chunks of ``mentioned`` documents (default: those the query names) get a fixed boost.
        """
        if not self.chunks:
            return []
        ranking = self.rank(query, doc_ids, mentioned=mentioned, query_vector=query_vector,
                            late_query=late_query)
        relevance = self.calibration.relevance(ranking.scores)
        return [
            self._hit(int(i), float(s), float(r), ranking.sentence_sims)
            for i, s, r in zip(ranking.chunks[:k], ranking.scores[:k], relevance[:k],
                               strict=False)
        ]

    def _hit(self, i: int, score: float, relevance: float, sims: np.ndarray | None) -> Hit:
        c = self.chunks[i]
        doc = self.documents.get(c.doc_id)
        passage = Passage(
            doc_id=c.doc_id,
            title=doc.title if doc else c.doc_id,
            section=c.section,
            text=c.text,
            start=c.start,
            end=c.end,
            score=round(score, 6),
            chunk_id=c.chunk_id,
            year=doc.year if doc else None,
            page=doc.page_at(c.start) if doc else None,
            relevance=round(relevance, 4),
        )
        return Hit(passage, self.indexed(i), self._sentences_of(i, c, sims))

    def _sentences_of(
        self, i: int, chunk: Chunk, sims: np.ndarray | None
    ) -> tuple[tuple[int, int, float], ...]:
        """Each sentence of chunk ``i`` with its similarity (0 without sentence vectors)."""
        if sims is None or self.sentences is None:
            spans = sentence_spans(chunk.text)
            return tuple((chunk.start + a, chunk.start + b, 0.0) for a, b in spans)
        rows = self._sentence_rows(i)
        pairs = zip(np.asarray(self.sentences.spans[rows]).tolist(), sims[rows].tolist(),
                    strict=True)
        return tuple((int(a), int(b), float(sim)) for (a, b), sim in pairs)
