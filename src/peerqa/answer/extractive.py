"""The offline answer: the retrieved sentences that best answer the question, quoted verbatim.

Step by step:
1. Every sentence of the retrieved passages that can be quoted (``sentences.quotable``: no
   heading, boilerplate or fragment; a connective brings the sentence before it, a list's
   introduction its items) is scored half by the weighted share of the question it covers and
   half by its vector's similarity to the question, scaled by its passage's rank.
2. The best are kept, down to a minimum relevance and a share of the best one's score, never
   padded; near-duplicates are dropped. A question naming documents keeps their sentences.
3. The answerability check (``answerability``) decides from what is asked and what the kept
   sentences hold whether they answer the question, part of it (then it says what is missing)
   or none of it (then the closest passages are shown, not an answer).
   The quotes shown are chosen again with each sentence's score also scaled by how relevant
   the search finds its passage against the best one (``Candidate.weighted``): the check reads
   every sentence that shares the question's words, the reader sees those the ranking backs,
   and any the check relied on.
4. ``shape`` writes the answer: quotes grouped by source under peerqa's attribution lines,
   lists as bullets, comparisons one document at a time, differing figures side by side.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..retrieval import Hit, Vocabulary
from ..text import normalise, tokenize
from ..types import Answer, Passage
from .answerability import (
    Assessment,
    Evidence,
    Phrases,
    Thresholds,
    Verdict,
    assess,
    decide,
)
from .candidates import Candidate, _similar, candidates
from .conflicts import Stated, amounts, find_conflicts
from .focus import near
from .gaps import FRAME
from .meaning import Meaning
from .outcome import abstention
from .question import (
    QuestionTerms,
    holds_type,
    is_list_question,
    named_documents,
    naming_stems,
)
from .sentences import (
    ASKS_ABOUT_SOURCE,
    ASKS_FOR_STUDIES,
    ASKS_PURPOSE,
    aims_allowed,
    credits_allowed,
    methods_allowed,
    questions_allowed,
)
from .shape import Quote, compose

MIN_RELEVANCE = 0.2  # a sentence less relevant than this is never considered...
RELATIVE = 0.5  # ...nor one scoring under this share of the best sentence's score
NEW_PASSAGE = 0.6  # ...nor one of a passage not yet cited under this share
SHOWN_NEW_PASSAGE = 0.4
"""The same bound for the quotes shown: their scores already carry their passage's relevance,
so a second passage needs less of a margin."""
SAME_SOURCE = 0.9  # a source's next quote counts this much less
_NUMBER = re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
                     r"twenty|thirty|forty|fifty|hundred)\b", re.I)
PASSAGE_SHARE = 0.2
"""A passage the retriever rates under this share of its best passage's relevance is not
quoted: its sentences may share the question's words, but the search says it is about
something else."""
NAMED_SHARE = 0.75
"""A document the question seems to name is taken as named when its own best sentence is at
least this share as relevant as the best one found."""


_score: Callable[[Candidate], float] = operator.attrgetter("score")
_weighted: Callable[[Candidate], float] = operator.attrgetter("weighted")


def select(
    ranked: Sequence[Candidate], limit: int, *, min_relevance: float = MIN_RELEVANCE,
    by: Callable[[Candidate], float] = _score, new_passage: float = NEW_PASSAGE,
) -> list[Candidate]:
    """The best candidates by ``by`` down to a minimum relevance and a share of the best score,
    at most ``limit``, without near-duplicates or overlaps; never padded with weaker ones."""
    answering = [c for c in ranked if c.relevance >= min_relevance]
    if not answering:
        return []
    best = max(by(c) for c in answering)
    chosen: list[Candidate] = []
    left = [c for c in answering if by(c) >= best * RELATIVE]
    while left and len(chosen) < limit:
        # Each quote already taken from a source lowers that source's next one a little, so
        # a close second source is heard (and differing figures can be set side by side).
        docs = [c.doc for c in chosen]
        cand = max(left, key=lambda c: by(c) * SAME_SOURCE ** docs.count(c.doc))
        left.remove(cand)
        if cand.hit_rank not in {c.hit_rank for c in chosen} and chosen \
                and by(cand) < best * new_passage:
            continue  # another passage to cite must come closer to the best than a sentence
        overlapping = [c for c in chosen if c.doc == cand.doc
                       and cand.start < c.end and c.start < cand.end]
        inside = [c for c in overlapping if cand.start <= c.start and c.end <= cand.end]
        if overlapping and inside == overlapping:
            # A sentence quoted with the one before it takes the place of that one alone.
            chosen = [cand if c is inside[0] else c for c in chosen
                      if c is inside[0] or c not in inside]
            continue
        if overlapping or any(_similar(cand.tokens, c.tokens) for c in chosen):
            continue
        chosen.append(cand)
    return chosen


def shown(
    question: str, chosen: Chosen, hits: Sequence[Hit], thresholds: Thresholds,
    *, vetted: bool = False,
) -> list[Candidate]:
    """The quotes a reader is shown: the display quotes (``Chosen.display``) of passages the
    retriever rates at least ``PASSAGE_SHARE`` as relevant as the best passage among them,
    then any quote the answerability check relied on that they leave out (the only one holding
    a figure asked for, or a word of the question no other quote uses), and any differing
    figure on the same point (``_disagreeing``).

    The check reads every chosen quote; a weak passage's sentence that shares the question's
    words without being about it is not shown, unless ``vetted`` (read as being about what
    a partial answer misses)."""
    if len(chosen.named) >= 2:
        return _disagreeing(chosen.quotes, chosen.pool, hits)  # each named side is wanted
    display = chosen.quotes if chosen.display is None else chosen.display
    top = max((hits[c.hit_rank].passage.relevance or 0.0 for c in display), default=0.0)
    a = chosen.assessment
    specific = {t.stem for t in a.terms if t.idf >= thresholds.common_idf and "-" not in t.stem}
    kept: list[Candidate] = []
    dropped: list[Candidate] = []
    for c in display:
        rated = hits[c.hit_rank].passage.relevance or 0.0
        (kept if vetted or rated >= PASSAGE_SHARE * top else dropped).append(c)
    shown_first = {id(c) for c in display}
    dropped += [c for c in chosen.quotes if id(c) not in shown_first]
    for c in dropped:
        if _overlaps(c, kept):
            continue
        held = {k for k in a.asked if c.relevance >= thresholds.focus
                and holds_type(k, c.text, question)}
        held -= {k for k in a.asked for q in kept if holds_type(k, q.text, question)}
        used = specific & c.tokens - {s for q in kept for s in q.tokens}
        if held or used:
            kept.append(c)
    order: dict[int, int] = {}
    for c in [*display, *chosen.quotes]:
        order.setdefault(id(c), len(order))  # a display quote keeps its place
    kept.sort(key=lambda c: order[id(c)])
    return _disagreeing(kept, chosen.pool, hits)


def _overlaps(cand: Candidate, chosen: Sequence[Candidate]) -> bool:
    """Whether ``cand`` shares text with one of ``chosen`` (the same document, spans meeting)."""
    return any(c.doc == cand.doc and cand.start < c.end and c.start < cand.end for c in chosen)


def _stated(chosen: Sequence[Candidate], hits: Sequence[Hit]) -> list[Stated]:
    out = []
    for n, c in enumerate(chosen):
        p = hits[c.hit_rank].passage
        text = normalise(p.text[c.start - p.start : c.unit.end - p.start])
        out.append(Stated(n, c.doc, text, c.start, c.unit.end, p.text[: c.start - p.start],
                          p.year))
    return out


def _disagreeing(
    quotes: Sequence[Candidate], pool: Sequence[Candidate], hits: Sequence[Hit]
) -> list[Candidate]:
    """The quotes and, where one gives a figure, a differing figure on the same point from
    another source among the sentences found, however far down its passage is ranked:
    disagreement is shown, never left out with the weaker passages.

    A quoted figure may be worded too briefly to show what it counts ("around 80 paid posts in
    mental health services"); another sentence of the same document restating it ("around 80
    paid peer support roles ... across Scotland") can then name the point that a differing
    figure shares, and both come in."""
    def count(chosen: Sequence[Candidate]) -> int:
        return sum(len(c.sides) for c in find_conflicts(_stated(chosen, hits)))

    out = list(quotes)
    sides = count(out)
    quoted = {(c.doc, a) for c in out for a in amounts(c.text)}
    numeric = [c for c in pool if c.relevance >= MIN_RELEVANCE and _NUMBER.search(c.text)]
    restating = [c for c in numeric if any((c.doc, a) in quoted for a in amounts(c.text))]
    for cand in numeric:
        if cand in out or _overlaps(cand, out):
            continue
        more = count([*out, cand])
        if more > sides:
            out.append(cand)
            sides = more
            continue
        for restated in restating:
            if restated in out or restated.doc == cand.doc or _overlaps(restated, out):
                continue
            with_it = [*out, restated]
            if count([*with_it, cand]) > count(with_it):
                out += [restated, cand]
                sides = count(out)
                break
    return out


def _evidence(hits: Sequence[Hit], chosen: Sequence[Candidate]) -> list[Evidence]:
    return [Evidence(hits[c.hit_rank].passage.doc_id, c.text, c.tokens, c.relevance,
                     frozenset(tokenize(hits[c.hit_rank].passage.section)))
            for c in chosen]


@dataclass(frozen=True, slots=True)
class Chosen:
    """The quotes chosen for a question and what the answerability check found of them."""

    quotes: list[Candidate]
    assessment: Assessment
    named: list[str]
    by_document: dict[str, list[Candidate]]
    pool: list[Candidate] = dataclasses.field(default_factory=list)
    """Every quotable unit of the hits, best first."""
    display: list[Candidate] | None = None
    """The quotes to show, chosen by ``Candidate.weighted`` (``quotes`` when not given)."""


def choose(
    question: str,
    hits: Sequence[Hit],
    terms: QuestionTerms,
    vocabulary: Vocabulary,
    *,
    max_sentences: int,
    max_list_sentences: int,
    meaning: Meaning | None = None,
    titles: Mapping[str, str] | None = None,
    phrases: Phrases | None = None,
    texts: Mapping[str, str] | None = None,
) -> Chosen:
    """Choose the quotes and assess them (no threshold applied yet)."""
    allow_aims = aims_allowed(question)
    named = named_documents(question, vocabulary)

    # Sentences are scored on what the question is about, not on the words naming documents
    # ("the Fife review") or framing the question ("whether", "according to"): the passages'
    # sources answer for the first, nothing answers the second.
    # A question whether there is research on something is answered by a study's statement of
    # its aim, as one about what a study set out to do is.
    purpose = ASKS_PURPOSE.search(question) or ASKS_FOR_STUDIES.search(question)
    framing = set(tokenize(purpose.group(0))) if purpose else set()
    scoring = terms.without(naming_stems(question, vocabulary) | FRAME | framing)
    ranked = sorted(candidates(hits, scoring, allow_aims=allow_aims,
                               keep_header=bool(ASKS_ABOUT_SOURCE.search(question)),
                               purpose=purpose is not None, texts=texts,
                               allow_methods=methods_allowed(question),
                               allow_questions=questions_allowed(question),
                               allow_credits=credits_allowed(question)),
                    key=lambda c: -c.score)
    limit = max_list_sentences if is_list_question(question) else max_sentences
    quotes, by_document = _pick(ranked, named, hits, limit)
    display = quotes if len(named) >= 2 else \
        _pick(ranked, named, hits, limit, by=_weighted, new_passage=SHOWN_NEW_PASSAGE)[0]
    covered: set[str] = set()
    best_single = 0.0
    for hit in hits[:3]:
        toks = set(tokenize(hit.indexed))
        covered |= toks
        best_single = max(best_single, terms.coverage(toks))
    assessment = assess(
        question, _evidence(hits, quotes), terms, vocabulary,
        named=named, named_evidence={d: _evidence(hits, cs) for d, cs in by_document.items()},
        meaning=meaning, titles=titles,
        passage_coverage=(terms.coverage(covered), best_single), phrases=phrases,
    )
    return Chosen(quotes, assessment, named, by_document, ranked, display)


def _pick(
    ranked: Sequence[Candidate],
    named: Sequence[str],
    hits: Sequence[Hit],
    limit: int,
    *,
    by: Callable[[Candidate], float] = _score,
    new_passage: float = NEW_PASSAGE,
) -> tuple[list[Candidate], dict[str, list[Candidate]]]:
    """The quotes ``select`` keeps by ``by``, a named document's first; and each named
    document's own."""
    by_document: dict[str, list[Candidate]] = {}
    for doc_id in named:
        own = [c for c in ranked if hits[c.hit_rank].passage.doc_id == doc_id]
        by_document[doc_id] = select(own, max(2, limit // max(len(named), 1)), by=by,
                                     new_passage=new_passage)
    first = named[0] if len(named) == 1 and by_document[named[0]] else None
    best = max((c.relevance for c in ranked), default=0.0)
    if first and max(c.relevance for c in by_document[first]) < NAMED_SHARE * best:
        # A loose name ("the pilot" of another study), or a document with little on it:
        # the answer is not drawn from it first (the check still asks what it holds).
        first = None
    if len(named) >= 2:
        return [c for d in named for c in by_document[d]], by_document
    everyone = select(ranked, limit, by=by, new_passage=new_passage)
    if first:
        # A question about one document is answered from it first, others only after.
        own = by_document[first]
        return (own + [c for c in everyone if c not in own])[:limit], by_document
    return everyone, by_document


def extractive_answer(
    question: str,
    hits: Sequence[Hit],
    terms: QuestionTerms,
    vocabulary: Vocabulary,
    *,
    max_sentences: int,
    max_list_sentences: int,
    min_coverage: float,
    thresholds: Thresholds,
    titles: Mapping[str, str],
    meaning: Meaning | None = None,
    phrases: Phrases | None = None,
    texts: Mapping[str, str] | None = None,
) -> Answer:
    """Quote the retrieved sentences that best answer the question, each marked [n]; say
    plainly what the documents do not give, or that they do not cover it."""
    passages = [h.passage for h in hits]
    if not hits or not terms.weights:
        return abstention(question, passages, terms.query)
    chosen = choose(question, hits, terms, vocabulary, max_sentences=max_sentences,
                    max_list_sentences=max_list_sentences,
                    meaning=meaning, titles=titles, phrases=phrases, texts=texts)
    verdict = decide(chosen.assessment, thresholds, min_coverage=min_coverage)
    vetted = verdict.coverage == "partial" and bool(verdict.focus)
    if vetted:
        # The nearest evidence must be about what is missing (pay, for a salary), or left out.
        pool = list({id(c): c for c in [*chosen.quotes, *(chosen.display or [])]}.values())
        kept = {id(c) for c, k in zip(pool, near([c.text for c in pool], verdict.focus,
                                                   meaning), strict=True) if k}
        chosen = dataclasses.replace(
            chosen, quotes=[c for c in chosen.quotes if id(c) in kept],
            display=None if chosen.display is None
            else [c for c in chosen.display if id(c) in kept])
    chosen = dataclasses.replace(chosen, quotes=shown(question, chosen, hits, thresholds,
                                                      vetted=vetted))
    if verdict.coverage == "not_covered" or not chosen.quotes:
        return abstention(question, passages, terms.query, missing=verdict.missing)
    return shaped(question, hits, chosen, verdict, titles, terms.query,
                  min_relevance=thresholds.min_relevance)


def shaped(
    question: str,
    hits: Sequence[Hit],
    chosen: Chosen,
    verdict: Verdict,
    titles: Mapping[str, str],
    query: str,
    *,
    min_relevance: float,
) -> Answer:
    """The answer's parts and text from the chosen quotes (those at least ``min_relevance``
    relevant) and the verdict."""
    passages: list[Passage] = [h.passage for h in hits]
    quotes = [Quote(c.hit_rank, c.unit.spans, len(c.unit.items), c.score, c.unit.item)
              for c in chosen.quotes if c.relevance >= min_relevance]
    return compose(
        question, quotes, passages, query,
        coverage=verdict.coverage, missing=verdict.missing, topic=verdict.topic,
        titles=titles, named=chosen.named if len(chosen.named) >= 2 else [],
        listed=is_list_question(question),
    )
