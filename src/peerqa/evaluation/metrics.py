"""The metrics, one pure function each: spans and "holds", retrieval, citations, key facts."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..answer.judge import marked_sentences, supports
from ..text import MARKER, tokenize
from ..types import Document
from .gold import GoldItem

Judge = Callable[[str, Sequence[str]], bool]
"""judge(sentence, passage_texts) -> whether the passages support the sentence."""



class Located(Protocol):
    """A passage as a metric sees it (a ``Passage``, a ``Citation`` or a baseline's result)."""

    @property
    def doc_id(self) -> str: ...

    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...

    @property
    def text(self) -> str: ...


KEY_FACT_THRESHOLD = 0.6
MRR_DEPTH = 10


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


def as_span(p: Located) -> Span:
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

def verbatim(quote: Located, documents: Mapping[str, Document]) -> bool:
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


def mean(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None
