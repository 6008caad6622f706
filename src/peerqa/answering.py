"""Answers from retrieved passages. The offline default quotes the best sentences verbatim.

Extractive answering, step by step:
1. The question's content words, stemmed and weighted by rarity (idf over chunks); in a
   follow-up, words of the previous question join at half weight.
2. Abstain when the retrieved passages leave too much of that weight uncovered.
3. Score every sentence of the retrieved passages by the weighted share of the question it
   covers, scaled by its passage's rank; keep the best, dropping near-duplicates.
4. Quote each kept sentence, mark it [n], number the sources in order of first use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .chunking import sentence_spans
from .citations import MARKER, marked_sentences, normalise, supports
from .retrieval import Hit, HybridRetriever, tokenize
from .types import Answer, Citation, Passage

ABSTAIN_TEXT = (
    "The documents do not appear to cover this question. "
    "The closest material they hold is listed below; it is not an answer."
)
_LIST_CUE = re.compile(
    r"\b(what are|which|list|ways?|steps|types|kinds|factors|barriers|benefits|challenges|"
    r"recommendations|lessons|examples|elements|components|areas|key|main|outcomes|roles|"
    r"skills|qualities|themes|issues|things)\b",
    re.I,
)
_FOLLOW_UP = re.compile(
    r"^\s*(and|but|also|what about|how about|so)\b|\b(they|them|their|theirs|it|its|this|that|"
    r"these|those|he|she|his|her|there|the same)\b",
    re.I,
)
_BULLET = re.compile(r"(?:[-*•–]|\d{1,2}[.)]|#{1,6})\s+")  # used with .match(text, pos)
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
class QuestionTerms:
    """Stemmed content words of a question with their weights, and the text to retrieve with."""

    query: str
    weights: dict[str, float]
    mentioned: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return sum(self.weights.values())

    def coverage(self, tokens: set[str]) -> float:
        """Weighted share of the question's words found among ``tokens``."""
        total = self.total
        return sum(w for t, w in self.weights.items() if t in tokens) / total if total else 0.0


def previous_question(history: Sequence[Mapping[str, str]] | None) -> str | None:
    """The last user turn of a role/content history, if any."""
    for turn in reversed(list(history or [])):
        if turn.get("role") == "user" and str(turn.get("content", "")).strip():
            return str(turn["content"])
    return None


def question_terms(
    question: str,
    history: Sequence[Mapping[str, str]] | None,
    retriever: HybridRetriever,
) -> QuestionTerms:
    """Weighted terms and the retrieval query; follow-ups borrow the previous question's words."""
    current = tokenize(question)
    weights: dict[str, float] = {t: retriever.idf(t) for t in current}
    query = question
    earlier = previous_question(history)
    if earlier and (_FOLLOW_UP.search(question) or len(set(current)) <= 2):
        query = f"{question} {earlier}"
        for t in tokenize(earlier):
            weights.setdefault(t, 0.5 * retriever.idf(t))
    return QuestionTerms(
        query=query, weights=weights, mentioned=tuple(retriever.mentioned_documents(query))
    )


@dataclass(frozen=True, slots=True)
class _Candidate:
    hit_rank: int
    start: int
    end: int
    text: str
    tokens: frozenset[str]
    score: float
    coverage: float
    similarity: float = 0.0


def _candidates(
    hits: Sequence[Hit], terms: QuestionTerms, retriever: HybridRetriever
) -> list[_Candidate]:
    out: list[_Candidate] = []
    for rank, hit in enumerate(hits):
        chunk = hit.chunk
        doc_text = retriever.documents[chunk.doc_id].text
        prior = 1.0 / (1.0 + 0.3 * rank)  # earlier passages are likelier to answer
        section_tokens = set(tokenize(chunk.section))
        # A reference list names sources; quoting it rarely answers anything.
        damp = 0.5 if chunk.section.split(" > ")[-1].strip().lower() in _REFERENCE_SECTIONS else 1.0
        similarity = {(a, b): sim for a, b, sim in hit.sentences}
        for a, b in sentence_spans(doc_text, chunk.start, chunk.end):
            sim = similarity.get((a, b), 0.0)
            bullet = _BULLET.match(doc_text, a, b)
            if bullet:
                a = bullet.end()
            text = doc_text[a:b]
            # A source's own "[1]" reference mark would read as one of our citation markers.
            if (_LINK_TITLE.match(text) or text.endswith("?") or MARKER.search(text)
                    or len(text.split()) < MIN_SENTENCE_WORDS):
                continue
            tokens = frozenset(tokenize(text))
            cov = terms.coverage(set(tokens))
            # The section title counts a little: a sentence under "Training" is about training.
            cov_ctx = terms.coverage(set(tokens) | section_tokens)
            lexical = 0.8 * cov + 0.2 * cov_ctx
            relevance = (1 - SEMANTIC) * lexical + SEMANTIC * max(sim, 0.0)
            score = damp * relevance * (0.5 + 0.5 * prior)
            out.append(_Candidate(rank, a, b, text, tokens, score, cov, sim))
    return out


def _similar(a: frozenset[str], b: frozenset[str]) -> bool:
    if not a or not b:
        return False
    return len(a & b) / len(a | b) >= 0.6


def is_list_question(question: str) -> bool:
    return bool(_LIST_CUE.search(question))


def holds_figure(text: str) -> bool:
    """Whether a sentence states a figure; a year alone ("in 2019") does not count."""
    return bool(_NUMBER.search(_YEAR.sub(" ", text)))


def unknown_names(question: str, retriever: HybridRetriever) -> list[str]:
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
        if not all(retriever.knows_word(p) for p in parts):
            found.append(word)
    return found


def should_abstain(
    question: str,
    hits: Sequence[Hit],
    ranked: Sequence[_Candidate],
    terms: QuestionTerms,
    retriever: HybridRetriever,
    min_coverage: float,
) -> bool:
    """True when the best passages cannot answer: too little of the question is covered, the
    question names something the corpus never mentions, or it asks for a number none holds.

    ``ranked`` are the candidate sentences of ``hits``, best first.
    """
    if not hits or not terms.weights:
        return True
    if unknown_names(question, retriever):
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
        toks = set(tokenize(retriever.indexed(hit.chunk)))
        covered |= toks
        best_single = max(best_single, terms.coverage(toks))
    union = terms.coverage(covered)
    return union < min_coverage or best_single < min_coverage * 0.6


def extractive_answer(
    question: str,
    hits: Sequence[Hit],
    terms: QuestionTerms,
    retriever: HybridRetriever,
    *,
    max_sentences: int = 4,
    max_list_sentences: int = 6,
    min_coverage: float = 0.5,
) -> Answer:
    """Quote the retrieved sentences that best answer the question, each marked [n]."""
    passages = [retriever.passage(h) for h in hits]
    ranked = sorted(_candidates(hits, terms, retriever), key=lambda c: -c.score)
    if should_abstain(question, hits, ranked, terms, retriever, min_coverage):
        return abstention(question, passages, terms.query)
    candidates = [c for c in ranked if c.coverage > 0]
    if not candidates:
        return abstention(question, passages, terms.query)
    limit = max_list_sentences if is_list_question(question) else max_sentences
    floor = candidates[0].score * 0.5
    chosen: list[_Candidate] = []
    for cand in candidates:
        if len(chosen) >= limit or cand.score < floor:
            break
        if any(_similar(cand.tokens, c.tokens) or (cand.start < c.end and c.start < cand.end)
               for c in chosen):
            continue
        chosen.append(cand)
    return compose(question, chosen, passages, terms.query)


def compose(
    question: str, chosen: Sequence[_Candidate], passages: Sequence[Passage], query: str
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


def abstention(question: str, passages: Sequence[Passage], query: str = "") -> Answer:
    """An answer that says the documents do not cover the question, with the closest passages."""
    return Answer(
        question=question,
        text=ABSTAIN_TEXT,
        citations=[],
        abstained=True,
        passages=list(passages),
        mode="extractive",
        checks={"abstained": True},
        retrieval_query=query,
    )


def check_citations(text: str, citations: Sequence[Citation]) -> dict[str, object]:
    """What holds of an answer's citations: markers resolve, all used, sentences supported."""
    by_number = {c.number: c for c in citations}
    sentences = marked_sentences(text)
    used = {n for s in sentences for n in s.numbers}
    unresolved = sorted(used - set(by_number))
    unsupported = [
        s.text for s in sentences
        if not s.numbers or not supports(s.text, [by_number[n].text for n in s.numbers
                                                  if n in by_number])
    ]
    return {
        "markers_resolve": not unresolved,
        "unresolved_markers": unresolved,
        "all_citations_used": set(by_number) <= used,
        "unsupported_sentences": unsupported,
    }
