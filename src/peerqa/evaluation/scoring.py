"""Scoring one answer against its gold item, and the aggregates over many."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..answer.judge import judged_text, marker_checks, supports
from ..answer.units import quote_problems
from ..types import Answer, Document, Passage
from .gold import GoldItem
from .metrics import (
    MRR_DEPTH,
    Judge,
    as_span,
    citation_scores,
    evidence_recall,
    hit_at,
    holds,
    key_fact_coverage,
    mean,
    percentile,
    quote_spans,
    reciprocal_rank,
    token_f1,
    verbatim,
)

# --------------------------------------------------------------------------- per item


# The targets the figures are held against (issue 3, offline default): (comparison, value).
TARGETS: dict[str, tuple[str, float]] = {
    "hit@1": (">=", 0.75),
    "hit@5": (">=", 0.92),
    "mrr@10": (">=", 0.80),
    "evidence_recall@5": (">=", 0.85),
    "max_passage_words": ("<=", 150),
    "citation_correctness": (">=", 0.85),
    "citation_recall": (">=", 0.9),
    "citation_precision": (">=", 0.9),
    "quote_fidelity": (">=", 1.0),
    # Three outcomes: declining (partial or not covered) replaces abstaining as the target.
    "decline_unanswerable": (">=", 0.85),
    "wrongful_not_covered": ("<=", 0.03),
    "wrongful_partial": ("<=", 0.08),
    "key_fact_coverage": (">=", 0.70),
    "flawed_quotes": ("<=", 0),
}


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
    coverage: str = ""
    expected_coverage: str = ""
    missing: str = ""
    expected_missing: str = ""
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    flawed: list[dict[str, Any]] = field(default_factory=list)
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
    if r.flawed:
        out.append(f"quotes: {len(r.flawed)} quoted sentence(s) are fragments, headings or "
                   "boilerplate")
    if not r.answerable:
        if r.coverage == "answered":
            out.append("answered a question the documents do not cover (should decline: "
                       "partial or not covered)")
        return out
    if r.abstained:
        out.append("abstained although the documents answer it")
    elif r.coverage == "partial":
        out.append(f"called partial although the documents answer it ({r.missing})")
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
    ranking: Sequence[Passage],
    documents: Mapping[str, Document],
    *,
    k: int = 5,
    latency_ms: float = 0.0,
    judge: Judge = supports,
) -> ItemResult:
    """Score one answer (and the ranking its query retrieves) against its gold item."""
    answerable = item.type != "unanswerable" and bool(item.evidence)
    quotes = quote_spans(item, documents)
    ranked = [as_span(p) for p in ranking]
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
    # Only the claims are judged: peerqa's own lines (attributions, what is missing) are not.
    cites = citation_scores(judged_text(answer), {n: c.text for n, c in by_number.items()},
                            judge) if not answer.abstained else None
    if cites is not None:
        m["citation_recall"] = cites.recall
        m["citation_precision"] = cites.precision
        resolve, used = marker_checks(answer.text, by_number)
        m["markers_resolve"] = float(resolve)
        m["citations_used"] = float(used)
    cited_holds = [any(holds(as_span(c), q) for q in quotes) for c in answer.citations]
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
        m["wrongful_not_covered"] = float(answer.coverage == "not_covered")
        m["wrongful_partial"] = float(answer.coverage == "partial")
        if answer.citations:
            m["citation_precision_gold"] = sum(cited_holds) / len(cited_holds)
    else:
        m["abstention_unanswerable"] = float(answer.abstained)
        m["decline_unanswerable"] = float(answer.coverage != "answered")
    m["coverage_accuracy"] = float(answer.coverage == item.coverage)
    flawed = flawed_quotes(answer, documents)
    m["flawed_quotes"] = float(len(flawed))

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
        coverage=answer.coverage,
        expected_coverage=item.coverage,
        missing=answer.missing,
        expected_missing=item.missing,
        conflicts=[
            {"point": c.point, "sides": [
                {"number": s.number, "value": s.value, "as_of": s.as_of, "quote": s.quote}
                for s in c.sides]}
            for c in answer.conflicts
        ],
        flawed=flawed,
    )
    # The retrieval figures read the ranking's first k passages: they must be the answer's first
    # k (a comparison appends each named document's own passages after them).
    n = min(k, len(answer.passages))
    result.ranking_matches_answer = [p.chunk_id for p in answer.passages[:n]] == \
        [p.chunk_id for p in ranking[:n]]
    result.failures = _failures(result, k)
    return result


def flawed_quotes(answer: Answer, documents: Mapping[str, Document]) -> list[dict[str, Any]]:
    """The quoted sentences of an answer that are fragments, headings, boilerplate, reference
    entries, contents lines, connectives without their sentence or lists without their items
    (``answer.sentences.quote_problems`` on each citation's highlighted spans)."""
    out = []
    for c in answer.citations:
        doc = documents.get(c.doc_id)
        if doc is None or not c.highlights:
            continue
        for (a, b), problems in quote_problems(doc.text, c.highlights, question=answer.question,
                                               section=c.section):
            out.append({"number": c.number, "doc_id": c.doc_id, "start": a, "end": b,
                        "problems": sorted(problems), "text": doc.text[a:b]})
    return out


# --------------------------------------------------------------------------- aggregates


def metric_names(k: int) -> list[str]:
    """The aggregate metrics, in table order."""
    return [
        "hit@1", f"hit@{k}", "mrr@10", f"evidence_recall@{k}",
        "avg_passage_words", "max_passage_words",
        "citation_recall", "citation_precision", "citation_correctness", "quote_fidelity",
        "markers_resolve", "citations_used",
        "citation_precision_gold", "flawed_quotes",
        "key_fact_coverage", "token_f1",
        "abstention_unanswerable", "wrongful_abstention",
        "decline_unanswerable", "wrongful_not_covered", "wrongful_partial", "coverage_accuracy",
        "latency_p50_ms", "latency_p95_ms",
    ]


def aggregate(results: Sequence[ItemResult], k: int = 5) -> dict[str, float | None]:
    """Means of each metric over the items it applies to; fidelity pooled; latency percentiles."""
    out: dict[str, float | None] = {}
    for name in metric_names(k):
        if name == "flawed_quotes":  # a count over all answers, not a mean
            out[name] = float(sum(r.metrics.get(name) or 0.0 for r in results))
        elif name == "max_passage_words":
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
            out[name] = mean(r.metrics.get(name) for r in results)
    out["items"] = float(len(results))
    out["answerable"] = float(sum(r.answerable for r in results))
    out["failed"] = float(sum(r.failed for r in results))
    return out
