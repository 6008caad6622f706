"""Metrics and the eval runner: how often peerqa finds, cites and covers the gold evidence.

Every rule the figures rest on, in one place:

- **Which query.** Retrieval is scored on ``Answer.retrieval_query``, the query the answer itself
  searched with (a follow-up's words plus its previous question). The ranking is re-read from
  ``assistant.retriever.search(retrieval_query, ...)``, which is deterministic, so its first
  passages are the answer's passages (checked for every item). The baselines of ``--compare`` get
  the very same query strings.
- **Holds.** A passage *holds* a gold quote when, in the same document, the quote's span (found in
  the document text by exact search; every occurrence counts) lies inside the passage's
  ``[start, end)`` span, or, for a quote that crosses a passage boundary, when the passage overlaps
  at least half of the quote's characters.
- **Retrieval** (answerable items): hit@1 and hit@k (a passage in the top 1 / top k holds some gold
  quote), MRR@10 (reciprocal rank of the first such passage in the top 10, else 0), evidence
  recall@k (share of the item's gold quotes held by some top-k passage).
- **Citations**, following ALCE (Gao et al., 2023), judged by ``peerqa.citations.supports``, the
  same offline judge the answerer uses (pass ``judge=`` to swap in another, such as an LLM judge):
  citation recall is the share of an answer's sentences whose cited passages, together, support it
  (a sentence without a marker is unsupported); citation precision is the share of citations that
  are needed: a citation of a supported sentence is needed unless it does not support the sentence
  on its own *and* the sentence's other citations still do; citations of an unsupported sentence
  are not needed. Both are averaged over the items answered (not abstained on).
- **Citation correctness** (answerable items): the answer cites a passage that holds a gold quote;
  an abstention scores 0.
- **Quote fidelity**: every quote shown (each citation, and each closest passage listed with an
  abstention) equals ``document.text[start:end]``; pooled over all quotes. Must be 1.0.
- **Markers**: every ``[n]`` resolves to a citation, and every citation is cited by some ``[n]``.
- **Key-fact coverage** (answerable items): a key fact is covered when at least 0.6 of its distinct
  stemmed content tokens (``peerqa.retrieval.tokenize``) occur in the answer text; the item's
  score is the share of its key facts covered. An abstention scores 0.
- **Token F1** (answerable items): SQuAD-style F1 between the multisets of stemmed content tokens
  of the answer and the gold answer; an abstention scores 0.
- **Abstention**: share of unanswerable items abstained on; wrongful abstention is the share of
  answerable items abstained on.
- **Latency**: p50 and p95 (linear interpolation) of the wall time of ``ask``, after one warm-up.

Aggregates are means over the items a metric applies to (``None`` where none do), overall and per
gold type.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .citations import MARKER, marked_sentences, supports
from .errors import InputError
from .gold import TYPES, GoldItem, default_gold_path, load_gold, validate_gold
from .retrieval import tokenize
from .types import Answer, Document

Judge = Callable[[str, Sequence[str]], bool]
"""judge(sentence, passage_texts) -> whether the passages support the sentence."""

KEY_FACT_THRESHOLD = 0.6
MRR_DEPTH = 10
COMPARE_CUTOFFS = (1, 2, 5)

# Targets of issue 3 for the offline default: (comparison, value).
TARGETS: dict[str, tuple[str, float]] = {
    "hit@5": (">=", 0.9),
    "max_passage_words": ("<=", 150),
    "citation_correctness": (">=", 0.85),
    "citation_recall": (">=", 0.9),
    "citation_precision": (">=", 0.9),
    "quote_fidelity": (">=", 1.0),
    "abstention_unanswerable": (">=", 0.8),
    "wrongful_abstention": ("<=", 0.05),
}


# --------------------------------------------------------------------------- spans and "holds"


@dataclass(frozen=True, slots=True)
class Span:
    """A character range of one document."""

    doc_id: str
    start: int
    end: int


def locate(quote: str, text: str) -> list[tuple[int, int]]:
    """Every (start, end) at which ``quote`` occurs verbatim in ``text``."""
    spans: list[tuple[int, int]] = []
    if not quote:
        return spans
    pos = text.find(quote)
    while pos >= 0:
        spans.append((pos, pos + len(quote)))
        pos = text.find(quote, pos + 1)
    return spans


def holds(passage: Span, quote: Sequence[Span]) -> bool:
    """Whether the passage holds the quote (any of its occurrences); see the module docstring."""
    for q in quote:
        if q.doc_id != passage.doc_id or q.end <= q.start:
            continue
        if passage.start <= q.start and q.end <= passage.end:
            return True
        overlap = min(passage.end, q.end) - max(passage.start, q.start)
        if overlap > 0 and 2 * overlap >= q.end - q.start:
            return True
    return False


def quote_spans(item: GoldItem, documents: Mapping[str, Document]) -> list[list[Span]]:
    """For each gold quote of ``item``, the spans where it occurs (empty if it is not found)."""
    out = []
    for ev in item.evidence:
        doc = documents.get(ev.doc_id)
        text = doc.text if doc else ""
        out.append([Span(ev.doc_id, a, b) for a, b in locate(ev.quote, text)])
    return out


def _as_span(p: Any) -> Span:
    return Span(p.doc_id, p.start, p.end)


# --------------------------------------------------------------------------- metrics, one by one


def hit_at(relevant: Sequence[bool], k: int) -> float:
    """1.0 when one of the first ``k`` ranked passages is relevant."""
    return 1.0 if any(relevant[:k]) else 0.0


def reciprocal_rank(relevant: Sequence[bool], depth: int = MRR_DEPTH) -> float:
    """1 / rank of the first relevant passage within ``depth``, else 0."""
    for rank, ok in enumerate(relevant[:depth], start=1):
        if ok:
            return 1.0 / rank
    return 0.0


def evidence_recall(passages: Sequence[Span], quotes: Sequence[Sequence[Span]]) -> float:
    """Share of gold quotes held by at least one of ``passages``."""
    if not quotes:
        return 0.0
    return sum(any(holds(p, q) for p in passages) for q in quotes) / len(quotes)


@dataclass(frozen=True, slots=True)
class CitationScores:
    """ALCE citation recall and precision of one answer, with what failed."""

    recall: float
    precision: float
    sentences: int
    supported: int
    citations: int
    needed: int
    unsupported: tuple[str, ...] = ()
    unneeded: tuple[tuple[str, int], ...] = ()


def citation_scores(
    answer_text: str, passages: Mapping[int, str], judge: Judge = supports
) -> CitationScores:
    """ALCE citation recall and precision; ``passages`` maps each [n] to its cited text."""
    sentences = marked_sentences(answer_text)
    supported = needed = total = 0
    unsupported: list[str] = []
    unneeded: list[tuple[str, int]] = []
    for s in sentences:
        cited = {n: passages.get(n, "") for n in s.numbers}
        total += len(cited)
        joint = bool(cited) and judge(s.text, list(cited.values()))
        if not joint:
            unsupported.append(s.text)
            continue
        supported += 1
        if len(cited) == 1:
            needed += 1
            continue
        for n, text in cited.items():
            others = [t for m, t in cited.items() if m != n]
            if not judge(s.text, [text]) and judge(s.text, others):
                unneeded.append((s.text, n))
            else:
                needed += 1
    return CitationScores(
        recall=supported / len(sentences) if sentences else 0.0,
        precision=needed / total if total else 0.0,
        sentences=len(sentences),
        supported=supported,
        citations=total,
        needed=needed,
        unsupported=tuple(unsupported),
        unneeded=tuple(unneeded),
    )


def marker_checks(answer_text: str, numbers: Iterable[int]) -> tuple[bool, bool]:
    """(every [n] in the text resolves to a citation, every citation is cited in the text)."""
    known = set(numbers)
    used = {int(n) for n in MARKER.findall(answer_text)}
    return used <= known, known <= used


def verbatim(quote: Any, documents: Mapping[str, Document]) -> bool:
    """Whether a shown quote (a Citation or Passage) is exactly its document's text at its span."""
    doc = documents.get(quote.doc_id)
    return doc is not None and 0 <= quote.start <= quote.end <= len(doc.text) \
        and doc.text[quote.start : quote.end] == quote.text


def key_fact_coverage(
    answer_text: str, key_facts: Sequence[str], threshold: float = KEY_FACT_THRESHOLD
) -> tuple[float, list[str]]:
    """(share of key facts covered by the answer, the facts not covered); see the docstring."""
    if not key_facts:
        return 0.0, []
    answer = MARKER.sub("", answer_text)
    have = set(tokenize(answer))
    missing = []
    for fact in key_facts:
        need = set(tokenize(fact))
        covered = (len(need & have) / len(need) >= threshold) if need \
            else fact.strip().lower() in answer.lower()
        if not covered:
            missing.append(fact)
    return 1 - len(missing) / len(key_facts), missing


def token_f1(prediction: str, reference: str) -> float:
    """F1 of the stemmed content tokens of ``prediction`` against ``reference`` (multisets)."""
    pred = Counter(tokenize(MARKER.sub("", prediction)))
    ref = Counter(tokenize(reference))
    common = sum((pred & ref).values())
    if not common:
        return 0.0
    p = common / sum(pred.values())
    r = common / sum(ref.values())
    return 2 * p * r / (p + r)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between ranks; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _mean(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


# --------------------------------------------------------------------------- per item


@dataclass(slots=True)
class ItemResult:
    """What happened on one gold item: the metrics that apply to it and why it failed, if it did."""

    id: str
    type: str
    question: str
    answerable: bool
    abstained: bool
    latency_ms: float
    retrieval_query: str
    answer: str
    metrics: dict[str, float | None]
    history: list[dict[str, str]] = field(default_factory=list)
    gold_answer: str = ""
    key_facts: list[str] = field(default_factory=list)
    expected: list[dict[str, Any]] = field(default_factory=list)
    cited: list[dict[str, Any]] = field(default_factory=list)
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    unneeded: list[dict[str, Any]] = field(default_factory=list)
    missing_facts: list[str] = field(default_factory=list)
    quotes_shown: int = 0
    quotes_verbatim: int = 0
    ranking_matches_answer: bool = True
    failures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.failures)


def _failures(r: ItemResult, k: int) -> list[str]:
    m = r.metrics
    out = []
    if r.quotes_verbatim < r.quotes_shown:
        out.append(f"quote fidelity: {r.quotes_shown - r.quotes_verbatim} shown quote(s) "
                   "differ from the document text")
    if m.get("markers_resolve") == 0.0:
        out.append("a [n] marker does not resolve to a citation")
    if m.get("citations_used") == 0.0:
        out.append("a citation is listed but never cited in the text")
    if not r.answerable:
        if not r.abstained:
            out.append("answered a question the documents do not cover (should abstain)")
        return out
    if r.abstained:
        out.append("abstained although the documents answer it")
    if m.get(f"hit@{k}") == 0.0:
        out.append(f"retrieval: no passage in the top {k} holds a gold quote")
    if not r.abstained and m.get("citation_correctness") == 0.0:
        out.append("citations: no cited passage holds a gold quote")
    if r.unsupported:
        out.append(f"citation recall: {len(r.unsupported)} sentence(s) not supported by "
                   "their citations")
    if r.unneeded:
        out.append(f"citation precision: {len(r.unneeded)} citation(s) not needed")
    cov = m.get("key_fact_coverage")
    if not r.abstained and cov is not None and cov < 0.5:
        out.append(f"key facts: {len(r.missing_facts)} of {len(r.key_facts)} not covered")
    return out


def evaluate_answer(
    item: GoldItem,
    answer: Answer,
    ranking: Sequence[Any],
    documents: Mapping[str, Document],
    *,
    k: int = 5,
    latency_ms: float = 0.0,
    judge: Judge = supports,
) -> ItemResult:
    """Score one answer (and the ranking its query retrieves) against its gold item."""
    answerable = item.type != "unanswerable" and bool(item.evidence)
    quotes = quote_spans(item, documents)
    ranked = [_as_span(p) for p in ranking]
    relevant = [any(holds(p, q) for q in quotes) for p in ranked]
    top = ranked[:k]
    words = [len(p.text.split()) for p in ranking[:k]]
    m: dict[str, float | None] = {}
    if answerable:
        m["hit@1"] = hit_at(relevant, 1)
        m[f"hit@{k}"] = hit_at(relevant, k)
        m["mrr@10"] = reciprocal_rank(relevant, MRR_DEPTH)
        m[f"evidence_recall@{k}"] = evidence_recall(top, quotes)
    m["avg_passage_words"] = sum(words) / len(words) if words else None
    m["max_passage_words"] = float(max(words)) if words else None

    by_number = {c.number: c for c in answer.citations}
    cites = citation_scores(answer.text, {n: c.text for n, c in by_number.items()}, judge) \
        if not answer.abstained else None
    if cites is not None:
        m["citation_recall"] = cites.recall
        m["citation_precision"] = cites.precision
        resolve, used = marker_checks(answer.text, by_number)
        m["markers_resolve"] = float(resolve)
        m["citations_used"] = float(used)
    cited_holds = [any(holds(_as_span(c), q) for q in quotes) for c in answer.citations]
    missing: list[str] = []
    if answerable:
        m["citation_correctness"] = float(any(cited_holds)) if not answer.abstained else 0.0
        if answer.abstained:
            m["key_fact_coverage"], missing = 0.0, list(item.key_facts)
            m["token_f1"] = 0.0
        else:
            m["key_fact_coverage"], missing = key_fact_coverage(answer.text, item.key_facts)
            m["token_f1"] = token_f1(answer.text, item.answer)
        m["wrongful_abstention"] = float(answer.abstained)
    else:
        m["abstention_unanswerable"] = float(answer.abstained)

    shown = list(answer.citations) + (list(answer.passages) if answer.abstained else [])
    ok = sum(verbatim(q, documents) for q in shown)
    m["quote_fidelity"] = ok / len(shown) if shown else None

    expected = []
    for ev, spans in zip(item.evidence, quotes, strict=True):
        rank = next((i + 1 for i, p in enumerate(ranked) if holds(p, spans)), None)
        expected.append({
            "doc_id": ev.doc_id, "quote": ev.quote, "found_in_document": bool(spans),
            "start": spans[0].start if spans else None, "rank": rank,
        })
    result = ItemResult(
        id=item.id,
        type=item.type,
        question=item.question,
        answerable=answerable,
        abstained=answer.abstained,
        latency_ms=latency_ms,
        retrieval_query=answer.retrieval_query,
        answer=answer.text,
        metrics=m,
        history=[dict(t) for t in item.history],
        gold_answer=item.answer,
        key_facts=list(item.key_facts),
        expected=expected,
        cited=[
            {"number": c.number, "doc_id": c.doc_id, "section": c.section, "start": c.start,
             "end": c.end, "holds_gold_quote": h, "text": c.text}
            for c, h in zip(answer.citations, cited_holds, strict=True)
        ],
        retrieved=[
            {"rank": i + 1, "doc_id": p.doc_id, "section": p.section, "start": p.start,
             "end": p.end, "holds_gold_quote": rel, "words": len(p.text.split())}
            for i, (p, rel) in enumerate(zip(ranking[:k], relevant, strict=False))
        ],
        unsupported=list(cites.unsupported) if cites else [],
        unneeded=[{"sentence": s, "number": n} for s, n in cites.unneeded] if cites else [],
        missing_facts=missing,
        quotes_shown=len(shown),
        quotes_verbatim=ok,
    )
    n_passages = len(answer.passages)
    result.ranking_matches_answer = [p.chunk_id for p in answer.passages] == \
        [p.chunk_id for p in ranking[:n_passages]]
    result.failures = _failures(result, k)
    return result


# --------------------------------------------------------------------------- aggregates


def metric_names(k: int) -> list[str]:
    """The aggregate metrics, in table order."""
    return [
        "hit@1", f"hit@{k}", "mrr@10", f"evidence_recall@{k}",
        "avg_passage_words", "max_passage_words",
        "citation_recall", "citation_precision", "citation_correctness", "quote_fidelity",
        "markers_resolve", "citations_used",
        "key_fact_coverage", "token_f1",
        "abstention_unanswerable", "wrongful_abstention",
        "latency_p50_ms", "latency_p95_ms",
    ]


def aggregate(results: Sequence[ItemResult], k: int = 5) -> dict[str, float | None]:
    """Means of each metric over the items it applies to; fidelity pooled; latency percentiles."""
    out: dict[str, float | None] = {}
    for name in metric_names(k):
        if name == "max_passage_words":
            xs = [r.metrics.get(name) for r in results]
            vals = [x for x in xs if x is not None]
            out[name] = max(vals) if vals else None
        elif name == "quote_fidelity":
            shown = sum(r.quotes_shown for r in results)
            out[name] = sum(r.quotes_verbatim for r in results) / shown if shown else None
        elif name == "latency_p50_ms":
            out[name] = percentile([r.latency_ms for r in results], 50)
        elif name == "latency_p95_ms":
            out[name] = percentile([r.latency_ms for r in results], 95)
        else:
            out[name] = _mean(r.metrics.get(name) for r in results)
    out["items"] = float(len(results))
    out["answerable"] = float(sum(r.answerable for r in results))
    out["failed"] = float(sum(r.failed for r in results))
    return out


# --------------------------------------------------------------------------- baselines


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
    rankings: Sequence[Sequence[Any]],
    quotes: Sequence[Sequence[Sequence[Span]]],
) -> SystemScores:
    """hit@{1,2,5}, MRR and evidence recall over per-item rankings of ``returned`` passages."""
    scores = SystemScores(name, description, returned, items=len(rankings))
    hits: dict[int, list[float]] = {c: [] for c in COMPARE_CUTOFFS if c <= returned}
    rr, rec, words = [], [], []
    for ranking, qs in zip(rankings, quotes, strict=True):
        spans = [Span(p.doc_id, p.start, p.end) for p in ranking[:returned]]
        relevant = [any(holds(p, q) for q in qs) for p in spans]
        for c in hits:
            hits[c].append(hit_at(relevant, c))
        rr.append(reciprocal_rank(relevant, returned))
        rec.append(evidence_recall(spans, qs))
        words.extend(len(p.text.split()) for p in ranking[:returned])
    scores.hits = {f"hit@{c}": (sum(v) / len(v) if v else None) for c, v in hits.items()}
    scores.mrr = _mean(rr)
    scores.evidence_recall = _mean(rec)
    scores.avg_passage_words = sum(words) / len(words) if words else None
    scores.max_passage_words = max(words) if words else None
    return scores


class BM25Baseline:
    """Plain BM25 (bm25s, its own English stop words and stemmer) over peerqa's chunks, untitled."""

    def __init__(self, chunks: Sequence[Any]) -> None:
        import bm25s
        import Stemmer

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


def llama_embedding(embedder: Any) -> Any:
    """A llama-index ``BaseEmbedding`` around a peerqa embedder (the same model, no Settings)."""
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr

    class PeerQAEmbedding(BaseEmbedding):
        """llama-index's view of peerqa's local encoder; query vectors are cached."""

        _embedder: Any = PrivateAttr()
        _queries: dict[str, list[float]] = PrivateAttr(default_factory=dict)

        def __init__(self, embedder: Any, **kwargs: Any) -> None:
            super().__init__(model_name=embedder.name, embed_batch_size=64, **kwargs)
            self._embedder = embedder
            self._queries = {}

        def _get_query_embedding(self, query: str) -> list[float]:
            if query not in self._queries:
                self._queries[query] = self._embedder.embed_query(query).tolist()
            return self._queries[query]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._embedder.embed_documents([text])[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._embedder.embed_documents(texts).tolist()

    return PeerQAEmbedding(embedder)


class LlamaIndexBaseline:
    """A plain llama-index pipeline: VectorStoreIndex, default SentenceSplitter, peerqa's model."""

    def __init__(self, documents: Sequence[Document], embedder: Any) -> None:
        from .chunking import _encoding

        _encoding()  # points TIKTOKEN_CACHE_DIR at llama-index's bundled files: offline
        from llama_index.core import Document as LlamaDocument
        from llama_index.core import VectorStoreIndex
        from llama_index.core.node_parser import SentenceSplitter

        self.texts = {d.doc_id: d.text for d in documents}
        docs = [LlamaDocument(text=d.text, id_=d.doc_id) for d in documents]
        self.index = VectorStoreIndex.from_documents(
            docs, embed_model=llama_embedding(embedder), transformations=[SentenceSplitter()],
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
            start, end = node.start_char_idx, node.end_char_idx
            if start is None or end is None:  # not recorded: find the text in its document
                start = self.texts.get(doc_id, "").find(text)
                end = start + len(text) if start >= 0 else -1
            out.append(Retrieved(doc_id, start, end, text))
        return out


# --------------------------------------------------------------------------- the runner


@dataclass(slots=True)
class EvalRun:
    """One evaluation: per-item results, aggregates overall and per type, and the baselines."""

    k: int
    gold: str
    items: list[ItemResult]
    overall: dict[str, float | None]
    by_type: dict[str, dict[str, float | None]]
    seconds: float
    comparison: list[SystemScores] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "gold": self.gold,
            "seconds": round(self.seconds, 2),
            "overall": self.overall,
            "by_type": self.by_type,
            "targets": {n: {"op": op, "value": v} for n, (op, v) in TARGETS.items()},
            "comparison": [asdict(s) for s in self.comparison] if self.comparison else None,
            "notes": self.notes,
            "items": [asdict(r) | {"failed": r.failed} for r in self.items],
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")


def load_gold_items(path: str | Path | None = None) -> tuple[list[GoldItem], str]:
    """The gold items and the file they came from: ``path``, else evals/gold.jsonl."""
    path = Path(path) if path is not None else default_gold_path()
    return load_gold(path), str(path)


def run_eval(
    assistant: Any,
    items: Sequence[GoldItem],
    *,
    k: int = 5,
    judge: Judge = supports,
    compare: bool = False,
    progress: bool = False,
    gold: str = "",
) -> EvalRun:
    """Ask every gold question, score the answers and rankings; with ``compare``, the baselines."""
    from tqdm import tqdm

    if not isinstance(k, int) or not 1 <= k <= 50:
        raise InputError(f"k must be a whole number from 1 to 50, not {k!r}")
    t0 = time.perf_counter()
    retriever = assistant.retriever
    documents = {d.doc_id: d for d in assistant.documents}
    notes = [f"gold: {p}" for p in validate_gold(list(items), {i: d.text for i, d in
                                                              documents.items()})]
    assistant.ask("What do peer support workers do?")  # warm-up: latency excludes loading
    depth = max(k, MRR_DEPTH)
    results: list[ItemResult] = []
    rankings: list[list[Any]] = []
    for item in tqdm(items, desc="Evaluating", unit="item", file=sys.stderr,
                     disable=not progress):
        started = time.perf_counter()
        answer = assistant.ask(item.question, history=list(item.history) or None)
        latency = (time.perf_counter() - started) * 1000
        query = answer.retrieval_query or item.question
        ranking = [retriever.passage(h) for h in retriever.search(query, depth)]
        rankings.append(ranking)
        results.append(evaluate_answer(item, answer, ranking, documents, k=k,
                                       latency_ms=latency, judge=judge))
    mismatched = [r.id for r in results if not r.ranking_matches_answer]
    if mismatched:
        notes.append("ranking re-read from the retrieval query differs from the answer's "
                     f"passages for {', '.join(mismatched)}")
    if not all(r.retrieval_query for r in results):
        notes.append("some answers carry no retrieval_query: their question was used instead")
    by_type = {t: aggregate([r for r in results if r.type == t], k)
               for t in TYPES if any(r.type == t for r in results)}
    run = EvalRun(k=k, gold=gold, items=results, overall=aggregate(results, k), by_type=by_type,
                  seconds=0.0, notes=notes)
    if compare:
        run.comparison = compare_systems(assistant, items, results, rankings, k=k,
                                         progress=progress)
    run.seconds = time.perf_counter() - t0
    return run


def compare_systems(
    assistant: Any,
    items: Sequence[GoldItem],
    results: Sequence[ItemResult],
    rankings: Sequence[Sequence[Any]],
    *,
    k: int = 5,
    progress: bool = False,
) -> list[SystemScores]:
    """peerqa, plain BM25 and plain llama-index on the answerable items, with the same queries."""
    from tqdm import tqdm

    documents = {d.doc_id: d for d in assistant.documents}
    chosen = [i for i, r in enumerate(results) if r.answerable]
    queries = [results[i].retrieval_query or items[i].question for i in chosen]
    quotes = [quote_spans(items[i], documents) for i in chosen]
    systems = [score_rankings(
        "peerqa", "hybrid BM25 + MiniLM over titled chunks, rank fusion", k,
        [rankings[i] for i in chosen], quotes,
    )]
    t = time.perf_counter()
    bm25 = BM25Baseline(assistant.retriever.chunks)
    runs = [bm25.retrieve(q, k) for q in queries]
    scores = score_rankings("bm25", "bm25s over the same chunks, untitled, no fusion", k, runs,
                            quotes)
    scores.seconds = time.perf_counter() - t
    systems.append(scores)
    t = time.perf_counter()
    llama = LlamaIndexBaseline(assistant.documents, assistant.embedder)
    built = time.perf_counter() - t
    for top in (2, k):
        t = time.perf_counter()
        runs = [llama.retrieve(q, top) for q in tqdm(
            queries, desc=f"llama-index top {top}", unit="item", file=sys.stderr,
            disable=not progress)]
        scores = score_rankings(
            f"llama-index top {top}",
            "VectorStoreIndex, default SentenceSplitter, same MiniLM model", top, runs, quotes,
        )
        scores.seconds = time.perf_counter() - t + built
        systems.append(scores)
    return systems


# --------------------------------------------------------------------------- the terminal table


_LABELS = {
    "avg_passage_words": "avg passage words",
    "max_passage_words": "max passage words",
    "citation_recall": "citation recall",
    "citation_precision": "citation precision",
    "citation_correctness": "citation correctness",
    "quote_fidelity": "quote fidelity",
    "markers_resolve": "[n] resolve",
    "citations_used": "citations used",
    "key_fact_coverage": "key-fact coverage",
    "token_f1": "token F1",
    "abstention_unanswerable": "abstain (unanswerable)",
    "wrongful_abstention": "wrongful abstention",
    "latency_p50_ms": "latency p50 (ms)",
    "latency_p95_ms": "latency p95 (ms)",
}


def label(name: str) -> str:
    """A metric's name for people."""
    return _LABELS.get(name, name.replace("_", " "))


def fmt(value: float | None, name: str = "") -> str:
    """A figure for a table: counts and milliseconds whole, rates with three decimals."""
    if value is None:
        return "—"
    if "words" in name or name.startswith("latency") or name in {"items", "answerable", "failed"}:
        return f"{value:.0f}"
    return f"{value:.3f}"


def target_text(name: str) -> str:
    if name not in TARGETS:
        return ""
    op, v = TARGETS[name]
    return f"{'≥' if op == '>=' else '≤'} {v:g}"


def meets(name: str, value: float | None) -> bool | None:
    """Whether a figure meets its target (None when there is no target or no figure)."""
    if name not in TARGETS or value is None:
        return None
    op, v = TARGETS[name]
    return value >= v - 1e-12 if op == ">=" else value <= v + 1e-12


def format_table(run: EvalRun) -> str:
    """The metrics, overall and per type, with the issue's targets, as plain text."""
    types = list(run.by_type)
    heads = ["metric", "overall", *[t[:12] for t in types], "target"]
    rows = [heads]
    for name in ["items", "answerable", "failed", *metric_names(run.k)]:
        target = target_text(name)
        ok = meets(name, run.overall.get(name))
        if ok is False:
            target += " ✗"
        rows.append([label(name), fmt(run.overall.get(name), name),
                     *[fmt(run.by_type[t].get(name), name) for t in types], target])
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1],
                                                                      strict=True)]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if run.comparison:
        lines += ["", format_comparison(run.comparison)]
    for note in run.notes:
        lines.append(f"note: {note}")
    lines.append(f"{len(run.items)} items in {run.seconds:.1f} s (k = {run.k}); gold: {run.gold}")
    return "\n".join(lines)


def comparison_columns(systems: Sequence[SystemScores]) -> list[str]:
    return [f"hit@{c}" for c in COMPARE_CUTOFFS if any(f"hit@{c}" in s.hits for s in systems)]


def format_comparison(systems: Sequence[SystemScores]) -> str:
    """The --compare table: hit@k, MRR, evidence recall and passage length per system."""
    cols = comparison_columns(systems)
    heads = ["system", "passages", *cols, "MRR@passages", "evid. recall", "avg words", "max words"]
    rows = [heads]
    for s in systems:
        rows.append([s.name, str(s.returned), *[fmt(s.hits.get(c)) for c in cols], fmt(s.mrr),
                     fmt(s.evidence_recall), fmt(s.avg_passage_words, "words"),
                     fmt(s.max_passage_words, "words")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join([r[0].ljust(widths[0]),
                                *[c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]]))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    n = systems[0].items if systems else 0
    lines.append(f"on the {n} answerable items, each system given the same query "
                 "(the answer's retrieval query)")
    return "\n".join(lines)
