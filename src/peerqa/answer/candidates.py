"""The quotable units of the retrieved passages, each scored as a quote for the question.

A unit is a sentence (or what must come with it, ``units.quotable``) of a retrieved passage. Its
score is half the weighted share of the question's words it holds (a little for its section's
words) and half its vector's similarity to the question, scaled by its passage's rank; a
statement of aim, a document's own question or a credit line gets a bonus when the question
asks for it. ``extractive`` chooses among them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..retrieval import Hit
from ..text import tokenize
from .question import QuestionTerms
from .sentences import REFERENCE_SECTIONS, flaws, split_labels
from .units import Quotable, quotable

QUESTION_STEMS = frozenset(tokenize("question questions"))
CREDIT_STEMS = frozenset(tokenize(  # what a credit line tells, in the words people ask with
    "wrote written author authored developed produced prepared commissioned behalf"))
SEMANTIC = 0.5  # weight of the sentence vector's similarity against lexical coverage
RANK_DECAY = 0.3  # how much less each later passage's sentences count
PURPOSE_BONUS = 0.3  # a statement of aim, when the question asks what a study set out to do


@dataclass(frozen=True, slots=True)
class Candidate:
    """A quotable unit of a retrieved passage, scored as a quote for the question."""

    hit_rank: int
    doc: str
    unit: Quotable
    text: str
    tokens: frozenset[str]
    score: float
    coverage: float
    similarity: float
    relevance: float
    weighted: float
    """``score`` scaled by the passage's relevance as a share of the best passage's: what the
    quotes shown are chosen by."""

    @property
    def start(self) -> int:
        return self.unit.start

    @property
    def end(self) -> int:
        return self.unit.last


@lru_cache(maxsize=4096)
def _units(
    text: str, offset: int, sentences: tuple[tuple[int, int], ...], section: str,
    allow_aims: bool, keep_header: bool, document: str | None, allow_methods: bool,
    allow_questions: bool = False, allow_credits: bool = False,
) -> tuple[tuple[int, Quotable, str, frozenset[str], frozenset[str]], ...]:
    """A passage's quotable units, each with the index of its piece (a sentence split at its
    labels), its text and words, and whether it states an article's aim or asks a question.
    They depend on the passage alone, not on the question, so a passage found again is not read
    again (the regular expressions were a fifth of an answer's time)."""
    spans = [(x + offset, y + offset) for a, b in sentences
             for x, y in split_labels(text, a - offset, b - offset)]
    out = []
    for i in range(len(spans)):
        unit = quotable(text, offset, spans, i, section=section, allow_aims=allow_aims,
                        keep_header=keep_header, document=document, allow_methods=allow_methods,
                        allow_questions=allow_questions, allow_credits=allow_credits)
        if unit is None:
            continue
        quoted = text[unit.start - offset : unit.last - offset]
        hard = flaws(text, unit.start - offset, unit.end - offset).hard
        tokens = frozenset(tokenize(quoted))
        if "question" in hard:
            tokens |= QUESTION_STEMS  # a question quoted as one holds what "questions" asks for
        if hard & {"credit", "citation"}:
            tokens |= CREDIT_STEMS  # and a credit or citation line what "who wrote it?" asks
        out.append((i, unit, quoted, tokens, frozenset(hard & {"aim", "question", "credit",
                                                               "citation"})))
    return tuple(out)


def candidates(
    hits: Sequence[Hit],
    terms: QuestionTerms,
    *,
    allow_aims: bool,
    keep_header: bool = False,
    purpose: bool = False,
    texts: Mapping[str, str] | None = None,
    allow_methods: bool = False,
    allow_questions: bool = False,
    allow_credits: bool = False,
) -> list[Candidate]:
    """Every quotable unit of the hits, scored by coverage, meaning and passage rank."""
    out: list[Candidate] = []
    best = max((h.passage.relevance or 0.0 for h in hits), default=0.0)
    for rank, hit in enumerate(hits):
        p = hit.passage
        # A passage the search puts far below the best is likelier to share the question's
        # words than to answer it.
        backed = (p.relevance or 0.0) / best if best > 0 else 1.0
        prior = 1.0 / (1.0 + RANK_DECAY * rank)  # earlier passages are likelier to answer
        section_tokens = set(tokenize(p.section))
        # A reference list names sources; quoting it rarely answers anything.
        damp = 0.5 if p.section.split(" > ")[-1].strip().lower() in REFERENCE_SECTIONS else 1.0
        sims = [sim for a, b, sim in hit.sentences
                for _ in split_labels(p.text, a - p.start, b - p.start)]
        units = _units(p.text, p.start, tuple((a, b) for a, b, _ in hit.sentences), p.section,
                       allow_aims, keep_header, (texts or {}).get(p.doc_id), allow_methods,
                       allow_questions, allow_credits)
        for i, unit, text, tokens, kinds in units:
            sim = sims[i]
            cov = terms.coverage(tokens)
            # The section title counts a little: a sentence under "Training" is about training.
            cov_ctx = terms.coverage(set(tokens) | section_tokens)
            lexical = 0.8 * cov + 0.2 * cov_ctx
            relevance = (1 - SEMANTIC) * lexical + SEMANTIC * max(sim, 0.0)
            # What a study set out to do, asked for; or its own question, which is quotable
            # only when the question asks what questions it set out to answer.
            # A credit line, quotable only when the question asks who made the source, is its
            # answer the same way.
            if (purpose and "aim" in kinds) or kinds & {"question", "credit", "citation"}:
                relevance += PURPOSE_BONUS
            score = damp * relevance * (0.5 + 0.5 * prior)
            weighted = damp * relevance * (0.5 + 0.5 * prior * backed)
            out.append(Candidate(rank, p.doc_id, unit, text, tokens, score, cov, sim,
                                 relevance, weighted))
    return out


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    """Near-duplicates: most words shared, or the same figure said in much the same words."""
    if not a or not b:
        return False
    overlap = len(a & b) / len(a | b)
    return overlap >= 0.6 or (overlap >= 0.45 and any(t.isdigit() for t in a & b))
