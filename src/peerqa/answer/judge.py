"""The offline support judge and the citation checks, shared by answers and the evaluation.

The judge decides whether passages *support* a sentence:
- a sentence quoted from the passages (white space and quote marks folded) is supported;
- otherwise, an entailment proxy: at least ``threshold`` of the sentence's stemmed content words
  occur in the passages, every number it states occurs there too, and it does not negate what
  the passages say (a "not"/"no"/"never" absent from the passages fails it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..text import MARKER, markers, normalise, sentence_spans, tokenize, words
from ..types import Answer, AnswerChecks, AnswerPart, Citation

_TAGS_ONLY = re.compile(r"(?:\[[^\]]*\]\s*)+")  # e.g. "[unsupported]" after a sentence
_AFTER_MARKERS = re.compile(r"(?<=\])\s+(?=[^\[\s])")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NEGATIONS = {"not", "no", "never", "none", "neither", "nor", "without", "cannot", "isn't",
              "aren't", "wasn't", "weren't", "don't", "doesn't", "didn't"}
SUPPORT_THRESHOLD = 0.75


@dataclass(frozen=True, slots=True)
class MarkedSentence:
    text: str
    numbers: tuple[int, ...]


def marked_sentences(answer_text: str) -> list[MarkedSentence]:
    """An answer's sentences, each with the [n] markers it carries, markers removed from text.

    The text is first cut after each run of markers followed by more text, then each piece at
    sentence ends (with the chunker's rules, so "et al. (2021)" stays whole).
    """
    out: list[MarkedSentence] = []
    for line in answer_text.splitlines():
        for piece in _AFTER_MARKERS.split(line):
            spans = sentence_spans(piece) or [(0, len(piece))]
            for a, b in spans:
                part = piece[a:b]
                numbers = tuple(dict.fromkeys(markers(part)))
                text = MARKER.sub("", part).strip()
                text = re.sub(r"\s+([.,;:!?])", r"\1", text)
                if not re.search(r"\w", text) or _TAGS_ONLY.fullmatch(text):
                    if numbers and out:  # "Sentence. [1]" cut as "Sentence." + "[1]"
                        prev = out[-1]
                        merged = tuple(dict.fromkeys(prev.numbers + numbers))
                        out[-1] = MarkedSentence(prev.text, merged)
                    continue
                out.append(MarkedSentence(text, numbers))
    return out


def text_pieces(text: str) -> list[str]:
    """``text`` cut after each run of [n] markers, for streaming; the pieces join to ``text``."""
    return [p for p in re.split(r"(?<=\])(?=\s+[^\[\s])", text) if p]


def supports(sentence: str, passages: Sequence[str], threshold: float = SUPPORT_THRESHOLD) -> bool:
    """Whether the passages, taken together, support the sentence (see the module docstring)."""
    if not passages:
        return False
    claim = normalise(MARKER.sub("", sentence)).strip(" .")
    joined = normalise(" \n ".join(passages))
    if claim and claim.lower() in joined.lower():
        return True
    tokens = set(tokenize(claim))
    if not tokens:
        return False
    source = set(tokenize(joined))
    if len(tokens & source) / len(tokens) < threshold:
        return False
    numbers = set(_NUMBER.findall(claim))
    if numbers - set(_NUMBER.findall(joined)):
        return False
    negated = _NEGATIONS & set(words(claim))
    return not (negated and not negated & set(words(joined)))


def marker_checks(answer_text: str, numbers: Iterable[int]) -> tuple[bool, bool]:
    """(every [n] in the text resolves to a citation, every citation is cited in the text)."""
    known = set(numbers)
    used = set(markers(answer_text))
    return used <= known, known <= used


def each_marked(part: AnswerPart) -> str:
    """A claim's text with its [n] markers after each of its sentences: a quote of two
    sentences cites its source twice, so that each sentence is judged with its source."""
    if part.own or not part.numbers:
        return part.marked
    marks = "".join(f" [{n}]" for n in part.numbers)
    spans = sentence_spans(part.text) or [(0, len(part.text))]
    return " ".join(part.text[a:b] + marks for a, b in spans)


def claims_text(parts: Sequence[AnswerPart]) -> str:
    """The lines of an answer that make claims (quotes, a model's sentences), with their
    markers; peerqa's own lines (attributions, what is missing) are left out."""
    return "\n".join(each_marked(p) for p in parts if not p.own)


def judged_text(answer: Answer) -> str:
    """What the citation judge reads of an answer: its claims only, when it has parts."""
    return claims_text(answer.parts) if answer.parts else answer.text


def check_citations(
    text: str, citations: Sequence[Citation], parts: Sequence[AnswerPart] = ()
) -> AnswerChecks:
    """What holds of an answer's citations: markers resolve, all used, sentences supported.

    With ``parts``, only the claims are judged: peerqa's own lines are not quotes.
    """
    by_number = {c.number: c for c in citations}
    resolve, all_used = marker_checks(text, by_number)
    unsupported = [
        s.text for s in marked_sentences(claims_text(parts) if parts else text)
        if not s.numbers or not supports(s.text, [by_number[n].text for n in s.numbers
                                                  if n in by_number])
    ]
    return AnswerChecks(
        markers_resolve=resolve,
        unresolved_markers=sorted(set(markers(text)) - set(by_number)),
        all_citations_used=all_used,
        unsupported_sentences=unsupported,
    )
