"""Hybrid retrieval: BM25 over stemmed chunk text plus dense vectors from Chroma, fused.

Both retrievers see each chunk with its document title, the names the document goes by and its
section in front (``indexed_text``). Fusion standardises each retriever's scores over the
searchable chunks (z-scores) and adds three of them: BM25 (0.25), the chunk's vector (0.45) and
its best-matching sentence's vector (0.3; sentence vectors live beside the chunks in the
generation and are searched exhaustively in numpy). On the gold set this ranks the supporting
passage higher than reciprocal-rank fusion, which is kept as an option (``fusion="rrf"``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .chunking import indexed_text
from .embeddings import Embedder
from .store import Generation
from .types import Chunk, Document, Passage

_TOKEN = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
STOPWORDS = frozenset(
    [
        "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and",
        "any", "are", "aren't", "as", "at", "be", "because", "been", "before", "being", "below",
        "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "don't",
        "down", "during", "each", "etc", "few", "for", "from", "further", "get", "gets",
        "getting", "had", "has", "have", "having", "he", "her", "here", "hers", "herself",
        "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself",
        "just", "let", "me", "more", "most", "much", "must", "my", "myself", "no", "nor", "not",
        "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves",
        "out", "over", "own", "same", "shall", "she", "should", "so", "some", "such", "than",
        "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these",
        "they", "this", "those", "through", "to", "too", "under", "until", "up", "upon", "us",
        "very", "via", "was", "we", "were", "what", "when", "where", "which", "while", "who",
        "whom", "why", "will", "with", "within", "would", "you", "your", "yours", "yourself",
        "yourselves", "tell", "know", "say", "says", "said", "anything", "something", "thing",
        "things", "way", "ways", "kind", "kinds", "sort", "lot", "lots", "really", "actually",
        "please", "like", "need", "needs", "needed", "want", "wants", "shouldn", "couldn",
        "wouldn", "doesn", "didn", "isn", "wasn", "weren", "hasn", "haven", "don", "aren"
    ]
)


@functools.lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (apostrophe forms folded: "workers'" -> "workers")."""
    return [w.replace("’", "'").split("'")[0] for w in _TOKEN.findall(text.lower())]


def tokenize(text: str) -> list[str]:
    """Stemmed content tokens: the vocabulary BM25, sentence scoring and the judge share."""
    kept = [w for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    return _stemmer().stemWords(kept)


def _zscore(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scores standardised over the searchable chunks, so two retrievers' scales agree."""
    values = scores[mask]
    spread = float(values.std()) if values.size else 0.0
    return (scores - float(values.mean())) / spread if spread > 0 else np.zeros_like(scores)


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk found by the hybrid search, with what each retriever said of it."""

    chunk: Chunk
    score: float
    bm25: float
    dense: float
    bm25_rank: int | None
    dense_rank: int | None
    sentences: tuple[tuple[int, int, float], ...] = ()
    """(start, end, cosine similarity to the query) of each sentence of the chunk."""


class HybridRetriever:
    """BM25 + dense search over one index generation."""

    def __init__(
        self,
        generation: Generation,
        embedder: Embedder,
        documents: Mapping[str, Document],
        rrf_k: int = 60,
        bm25_weight: float = 0.25,
        dense_weight: float = 0.45,
        sentence_weight: float = 0.3,
        fusion: str = "zscore",
        depth: int = 1000,
        mention_boost: float = 1.0,
    ) -> None:
        import bm25s

        self.generation = generation
        self.embedder = embedder
        self.documents = documents
        self.chunks: list[Chunk] = generation.chunks
        self.by_id = {c.chunk_id: i for i, c in enumerate(self.chunks)}
        self.rrf_k = rrf_k
        self.bm25_weight = bm25_weight
        self.dense_weight = dense_weight
        self.sentence_weight = sentence_weight
        self.fusion = fusion
        self.sentences = generation.sentences()
        self._sentence_rows: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(self.chunks)
        if self.sentences is not None:
            order = np.argsort(self.sentences.chunk, kind="stable")
            bounds = np.searchsorted(self.sentences.chunk[order], np.arange(len(self.chunks) + 1))
            self._sentence_rows = [
                order[bounds[i] : bounds[i + 1]] for i in range(len(self.chunks))
            ]
        self.depth = depth
        self.mention_boost = mention_boost
        self._alias_patterns = {
            d.doc_id: re.compile(
                r"(?<![\w-])(?:" + "|".join(re.escape(a) for a in d.aliases) + r")(?![\w-])", re.I
            )
            for d in documents.values() if d.aliases
        }
        corpus_tokens = [tokenize(self.indexed(c)) for c in self.chunks]
        self._bm25 = bm25s.BM25()
        self._bm25.index(corpus_tokens, show_progress=False)
        self._vocab = self._bm25.vocab_dict
        n = len(corpus_tokens)
        df: dict[str, int] = {}
        for toks in corpus_tokens:
            for t in set(toks):
                df[t] = df.get(t, 0) + 1
        self._n = n
        self._df = df
        self._doc_of = np.array([c.doc_id for c in self.chunks])
        self._words = {
            w for d in documents.values() for w in words(f"{d.text} {' '.join(d.keywords)}")
        }

    def mentioned_documents(self, text: str) -> list[str]:
        """Documents the text names by one of their aliases ("the Fife review", "QUB")."""
        return [d for d, pattern in self._alias_patterns.items() if pattern.search(text)]

    def knows_word(self, word: str) -> bool:
        """Whether the corpus uses this (lower-case, unstemmed) word anywhere."""
        return word in self._words

    def indexed(self, chunk: Chunk) -> str:
        doc = self.documents.get(chunk.doc_id)
        if doc is None:
            return indexed_text(chunk, chunk.doc_id)
        return indexed_text(chunk, doc.title, doc.keywords)

    def idf(self, token: str) -> float:
        """Inverse chunk frequency of a stemmed token; unseen tokens weigh the most."""
        df = self._df.get(token, 0)
        return math.log(1 + (self._n - df + 0.5) / (df + 0.5))

    def in_vocabulary(self, token: str) -> bool:
        return token in self._df

    def bm25_scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        known = [t for t in query_tokens if t in self._vocab]
        if not known:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return np.asarray(self._bm25.get_scores(known), dtype=np.float32)

    def search(
        self,
        query: str,
        k: int = 5,
        doc_ids: Sequence[str] | None = None,
        query_vector: np.ndarray | None = None,
        mentioned: Sequence[str] | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``, optionally only from ``doc_ids``.

        Chunks of ``mentioned`` documents (default: those the query names) get a fixed boost.
        """
        n = len(self.chunks)
        if not n:
            return []
        mask = np.isin(self._doc_of, list(doc_ids)) if doc_ids else np.ones(n, bool)
        bm25 = self.bm25_scores(tokenize(query))
        vector = self.embedder.embed_query(query) if query_vector is None else query_vector
        found = self.generation.query(vector, min(n, self.depth), doc_ids)
        dense = np.full(n, min((s for _, s in found), default=0.0), dtype=np.float32)
        for chunk_id, sim in found:
            i = self.by_id.get(chunk_id)
            if i is not None:
                dense[i] = sim
        best_sentence = np.full(n, -1.0, dtype=np.float32)
        sentence_sims = None
        if self.sentences is not None and len(self.sentences.vectors):
            sentence_sims = self.sentences.vectors @ np.asarray(vector, dtype=np.float32)
            np.maximum.at(best_sentence, self.sentences.chunk, sentence_sims)
        candidates = np.flatnonzero(mask)
        bm25_order = candidates[np.argsort(-bm25[candidates], kind="stable")]
        dense_order = candidates[np.argsort(-dense[candidates], kind="stable")]
        bm25_rank = {int(i): r for r, i in enumerate(bm25_order) if bm25[i] > 0}
        dense_rank = {int(i): r for r, i in enumerate(dense_order)}
        if self.fusion == "rrf":
            fused = np.zeros(n, dtype=np.float64)
            for i, r in bm25_rank.items():
                fused[i] += self.bm25_weight / (self.rrf_k + r + 1)
            for i, r in dense_rank.items():
                fused[i] += self.dense_weight / (self.rrf_k + r + 1)
            if sentence_sims is not None:
                order = candidates[np.argsort(-best_sentence[candidates], kind="stable")]
                for r, i in enumerate(order):
                    fused[i] += self.sentence_weight / (self.rrf_k + r + 1)
        else:
            fused = self.bm25_weight * _zscore(bm25, mask)
            fused = fused + self.dense_weight * _zscore(dense, mask)
            if sentence_sims is not None:
                fused = fused + self.sentence_weight * _zscore(best_sentence, mask)
        if mentioned is None:
            mentioned = self.mentioned_documents(query)
        if mentioned and self.mention_boost:
            scale = 1.0 if self.fusion == "zscore" else 1.0 / (self.rrf_k + 1)
            fused = fused + self.mention_boost * scale * np.isin(self._doc_of, list(mentioned))
        best = candidates[np.argsort(-fused[candidates], kind="stable")][:k]
        return [
            Hit(
                chunk=self.chunks[i],
                score=float(fused[i]),
                bm25=float(bm25[i]),
                dense=float(dense[i]),
                bm25_rank=bm25_rank.get(int(i)),
                dense_rank=dense_rank.get(int(i)),
                sentences=self._sentences_of(int(i), sentence_sims),
            )
            for i in best
        ]

    def _sentences_of(
        self, i: int, sims: np.ndarray | None
    ) -> tuple[tuple[int, int, float], ...]:
        if sims is None or self.sentences is None:
            return ()
        rows = self._sentence_rows[i]
        spans = self.sentences.spans[rows]
        pairs = zip(spans, rows, strict=True)
        return tuple((int(a), int(b), float(sims[r])) for (a, b), r in pairs)

    def passage(self, hit: Hit) -> Passage:
        c = hit.chunk
        doc = self.documents.get(c.doc_id)
        return Passage(
            doc_id=c.doc_id,
            title=doc.title if doc else c.doc_id,
            section=c.section,
            text=c.text,
            start=c.start,
            end=c.end,
            score=round(hit.score, 6),
            chunk_id=c.chunk_id,
            year=doc.year if doc else None,
        )
