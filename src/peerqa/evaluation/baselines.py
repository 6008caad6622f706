"""The systems peerqa is compared with (``--compare``): plain BM25 and a plain llama-index
pipeline, scored on the same items with the same queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import bm25s
import Stemmer

from ..embeddings import Embedder
from ..text import encoding
from ..types import Chunk, Document
from .metrics import Located, Span, evidence_recall, hit_at, holds, mean, reciprocal_rank

COMPARE_CUTOFFS = (1, 2, 5)


@dataclass(frozen=True, slots=True)
class Retrieved:
    """A passage returned by a baseline: its document span and text."""

    doc_id: str
    start: int
    end: int
    text: str


@dataclass(slots=True)
class SystemScores:
    """Retrieval figures of one system on the answerable items, for the --compare table."""

    name: str
    description: str
    returned: int
    items: int = 0
    hits: dict[str, float | None] = field(default_factory=dict)
    mrr: float | None = None
    evidence_recall: float | None = None
    avg_passage_words: float | None = None
    max_passage_words: int | None = None
    seconds: float = 0.0


def score_rankings(
    name: str,
    description: str,
    returned: int,
    rankings: Sequence[Sequence[Located]],
    quotes: Sequence[Sequence[Sequence[Span]]],
) -> SystemScores:
    """hit@{1,2,5}, MRR and evidence recall over per-item rankings of ``returned`` passages."""
    scores = SystemScores(name, description, returned, items=len(rankings))
    hits: dict[int, list[float]] = {c: [] for c in COMPARE_CUTOFFS if c <= returned}
    rr: list[float] = []
    rec: list[float] = []
    words: list[int] = []
    for ranking, qs in zip(rankings, quotes, strict=True):
        spans = [Span(p.doc_id, p.start, p.end) for p in ranking[:returned]]
        relevant = [any(holds(p, q) for q in qs) for p in spans]
        for c in hits:
            hits[c].append(hit_at(relevant, c))
        rr.append(reciprocal_rank(relevant, returned))
        rec.append(evidence_recall(spans, qs))
        words.extend(len(p.text.split()) for p in ranking[:returned])
    scores.hits = {f"hit@{c}": (sum(v) / len(v) if v else None) for c, v in hits.items()}
    scores.mrr = mean(rr)
    scores.evidence_recall = mean(rec)
    scores.avg_passage_words = sum(words) / len(words) if words else None
    scores.max_passage_words = max(words) if words else None
    return scores


class BM25Baseline:
    """Plain BM25 (bm25s, its own English stop words and stemmer) over peerqa's chunks, untitled."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self.chunks = list(chunks)
        tokens = bm25s.tokenize([c.text for c in self.chunks], stopwords="en",
                                stemmer=self._stemmer, return_ids=False, show_progress=False)
        self._index = bm25s.BM25()
        self._index.index(tokens, show_progress=False)

    def retrieve(self, query: str, k: int) -> list[Retrieved]:
        q = self._bm25s.tokenize([query], stopwords="en", stemmer=self._stemmer,
                                 return_ids=False, show_progress=False)
        k = min(k, len(self.chunks))
        docs, _ = self._index.retrieve(q, k=k, show_progress=False)
        return [
            Retrieved(c.doc_id, c.start, c.end, c.text)
            for c in (self.chunks[int(i)] for i in docs[0])
        ]


class LlamaIndexBaseline:
    """A plain llama-index pipeline: VectorStoreIndex, default SentenceSplitter, peerqa's model."""

    def __init__(self, documents: Sequence[Document], embedder: Embedder) -> None:
        encoding()  # points TIKTOKEN_CACHE_DIR at llama-index's bundled files: offline
        from llama_index.core import Document as LlamaDocument
        from llama_index.core import VectorStoreIndex
        from llama_index.core.node_parser import SentenceSplitter

        from ..llama_index import PeerQAEmbedding  # the face that wraps llama-index

        self.texts = {d.doc_id: d.text for d in documents}
        docs = [LlamaDocument(text=d.text, id_=d.doc_id) for d in documents]
        self.index = VectorStoreIndex.from_documents(
            docs, embed_model=PeerQAEmbedding(embedder), transformations=[SentenceSplitter()],
            show_progress=False,
        )
        self._retrievers: dict[int, Any] = {}

    def retrieve(self, query: str, k: int) -> list[Retrieved]:
        retriever = self._retrievers.get(k)
        if retriever is None:
            retriever = self._retrievers[k] = self.index.as_retriever(similarity_top_k=k)
        out = []
        for scored in retriever.retrieve(query):
            node = scored.node
            doc_id = node.ref_doc_id or ""
            text = node.get_content()
            start = getattr(node, "start_char_idx", None)
            end = getattr(node, "end_char_idx", None)
            if start is None or end is None:  # not recorded: find the text in its document
                start = self.texts.get(doc_id, "").find(text)
                end = start + len(text) if start >= 0 else -1
            out.append(Retrieved(doc_id, start, end, text))
        return out
