"""The offline answer: the retrieved sentences that best answer the question, quoted verbatim.

Step by step:
1. Abstain when the question names something the corpus never mentions, asks for a figure or
   one of two alternatives that no good sentence holds, or the retrieved passages leave too much
   of the question's weight uncovered.
2. Score every sentence of the retrieved passages half by the weighted share of the question it
   covers and half by its vector's similarity to the question, scaled by its passage's rank;
   keep the best, dropping near-duplicates.
3. Quote each kept sentence, mark it [n], number the sources in order of first use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..retrieval import Hit, Vocabulary
from ..text import BULLET, HEADING_MARK, MARKER, normalise, tokenize
from ..types import Answer, Citation, Passage
from .judge import check_citations
from .outcome import abstention
from .question import QuestionTerms, is_list_question

_LINK_TITLE = re.compile(r"^\[[^\]]+\]\([^)]*\)")
_NAME = re.compile(r"(?<![\w'’-])[A-Z][\w'’&-]*")
# Questions whose answer is a figure: a count, an amount, a rate, a pay band.
_NUMERIC_QUESTION = re.compile(
    r"\b(how many|how long|what percentage|what proportion|what share|what number|"
    r"how much (?:money|funding|time|pay|cost|budget|extra|investment|does it cost)|"
    r"what (?:\w+ ){0,2}(?:rate|salary|wage|pay|band|grade|cost|fee|headcount|figure))\b",
    re.I,
)
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
    r"fifty|hundred|thousand|dozen|half|third|quarter|double|twice)\b",
    re.I,
)
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
# "fortnightly or monthly?": an either-or question names the answers it will accept.
_ALTERNATIVES = re.compile(r"\b([\w-]+),? or ([\w-]+)\s*\?\s*$", re.I)
# Capitalised words so common in English that their absence from the corpus says nothing.
_GENERAL_NAMES = {"i", "ok", "okay", "hr", "gp", "gps", "uk", "us", "usa", "it", "tv", "faq"}
MIN_SENTENCE_WORDS = 5
FIGURE_COVERAGE = 0.3  # share of the question a sentence with the figure must cover...
FIGURE_SIMILARITY = 0.6  # ...or how close its vector must be to the question's
SEMANTIC = 0.5  # weight of the sentence vector's similarity against lexical coverage
_REFERENCE_SECTIONS = {"references", "reference list", "bibliography"}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A sentence of a retrieved passage, scored as a quote for the question."""

    hit_rank: int
    start: int
    end: int
    text: str
    tokens: frozenset[str]
    score: float
    coverage: float
    similarity: float = 0.0


def candidates(hits: Sequence[Hit], terms: QuestionTerms) -> list[Candidate]:
    """Every quotable sentence of the hits, scored by coverage, meaning and passage rank."""
    out: list[Candidate] = []
    for rank, hit in enumerate(hits):
        p = hit.passage
        prior = 1.0 / (1.0 + 0.3 * rank)  # earlier passages are likelier to answer
        section_tokens = set(tokenize(p.section))
        # A reference list names sources; quoting it rarely answers anything.
        damp = 0.5 if p.section.split(" > ")[-1].strip().lower() in _REFERENCE_SECTIONS else 1.0
        for a, b, sim in hit.sentences:
            mark = BULLET.match(p.text, a - p.start, b - p.start) or HEADING_MARK.match(
                p.text, a - p.start, b - p.start
            )
            if mark:
                a = p.start + mark.end()
            text = p.text[a - p.start : b - p.start]
            # A source's own "[1]" reference mark would read as one of our citation markers.
            if (_LINK_TITLE.match(text) or text.endswith("?") or MARKER.search(text)
                    or len(text.split()) < MIN_SENTENCE_WORDS):
                continue
            tokens = frozenset(tokenize(text))
            cov = terms.coverage(tokens)
            # The section title counts a little: a sentence under "Training" is about training.
            cov_ctx = terms.coverage(set(tokens) | section_tokens)
            lexical = 0.8 * cov + 0.2 * cov_ctx
            relevance = (1 - SEMANTIC) * lexical + SEMANTIC * max(sim, 0.0)
            score = damp * relevance * (0.5 + 0.5 * prior)
            out.append(Candidate(rank, a, b, text, tokens, score, cov, sim))
    return out


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    if not a or not b:
        return False
    return len(a & b) / len(a | b) >= 0.6


def holds_figure(text: str) -> bool:
    """Whether a sentence states a figure; a year alone ("in 2019") does not count."""
    return bool(_NUMBER.search(_YEAR.sub(" ", text)))


def unknown_names(question: str, vocabulary: Vocabulary) -> list[str]:
    """Names and acronyms in the question (capitalised, not its first word) the corpus never uses.

    A question about the Welsh strategy or PVG checks cannot be answered from documents that
    never name them, however close their other words come.
    """
    found = []
    for m in _NAME.finditer(question):
        if m.start() == len(question) - len(question.lstrip()):
            continue  # the question's first word is capitalised anyway
        word = m.group(0)
        parts = [p for p in re.split(r"[-'’&]", word.lower()) if p]
        if word.lower() in _GENERAL_NAMES or not parts:
            continue
        if not all(vocabulary.knows_word(p) for p in parts):
            found.append(word)
    return found


def should_abstain(
    question: str,
    hits: Sequence[Hit],
    ranked: Sequence[Candidate],
    terms: QuestionTerms,
    vocabulary: Vocabulary,
    *,
    min_coverage: float,
) -> bool:
    """True when the best passages cannot answer: too little of the question is covered, the
    question names something the corpus never mentions, or it asks for a number none holds.

    ``ranked`` are the candidate sentences of ``hits``, best first.
    """
    if not hits or not terms.weights:
        return True
    if unknown_names(question, vocabulary):
        return True
    best = ranked[:3]
    # A figure counts only in a sentence about the question (by its words or by its vector),
    # not any number nearby.
    if _NUMERIC_QUESTION.search(question) and not any(
        holds_figure(c.text)
        and (c.coverage >= FIGURE_COVERAGE or c.similarity >= FIGURE_SIMILARITY)
        for c in best
    ):
        return True
    choice = _ALTERNATIVES.search(question)
    if choice:
        options = {t for w in choice.groups() for t in tokenize(w)}
        if options and not any(options & c.tokens for c in best):
            return True
    covered: set[str] = set()
    best_single = 0.0
    for hit in hits[:3]:
        toks = set(tokenize(hit.indexed))
        covered |= toks
        best_single = max(best_single, terms.coverage(toks))
    union = terms.coverage(covered)
    return union < min_coverage or best_single < min_coverage * 0.6


def extractive_answer(
    question: str,
    hits: Sequence[Hit],
    terms: QuestionTerms,
    vocabulary: Vocabulary,
    *,
    max_sentences: int,
    max_list_sentences: int,
    min_coverage: float,
) -> Answer:
    """Quote the retrieved sentences that best answer the question, each marked [n]."""
    passages = [h.passage for h in hits]
    ranked = sorted(candidates(hits, terms), key=lambda c: -c.score)
    if should_abstain(question, hits, ranked, terms, vocabulary, min_coverage=min_coverage):
        return abstention(question, passages, terms.query)
    answering = [c for c in ranked if c.coverage > 0]
    if not answering:
        return abstention(question, passages, terms.query)
    limit = max_list_sentences if is_list_question(question) else max_sentences
    floor = answering[0].score * 0.5
    chosen: list[Candidate] = []
    for cand in answering:
        if len(chosen) >= limit or cand.score < floor:
            break
        if any(_similar(cand.tokens, c.tokens) or (cand.start < c.end and c.start < cand.end)
               for c in chosen):
            continue
        chosen.append(cand)
    return compose(question, chosen, passages, terms.query)


def compose(
    question: str, chosen: Sequence[Candidate], passages: Sequence[Passage], query: str
) -> Answer:
    """Number sources by first use and write the answer text with [n] after each sentence."""
    numbers: dict[int, int] = {}
    highlights: dict[int, list[tuple[int, int]]] = {}
    parts = []
    for cand in chosen:
        n = numbers.setdefault(cand.hit_rank, len(numbers) + 1)
        highlights.setdefault(cand.hit_rank, []).append((cand.start, cand.end))
        parts.append(f"{normalise(cand.text)} [{n}]")
    citations = [
        Citation.of(passages[rank], n, tuple(sorted(highlights[rank])))
        for rank, n in sorted(numbers.items(), key=lambda kv: kv[1])
    ]
    text = " ".join(parts)
    return Answer(
        question=question,
        text=text,
        citations=citations,
        abstained=False,
        passages=list(passages),
        mode="extractive",
        checks=check_citations(text, citations),
        retrieval_query=query,
    )

