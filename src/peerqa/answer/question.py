"""What a question asks: its weighted words, the text to search with, and its shape.

The question's content words are stemmed and weighted by rarity (idf over chunks); in a
follow-up, the previous question's words join at half weight and its text joins the search.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..retrieval import Vocabulary
from ..text import tokenize

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


@dataclass(frozen=True, slots=True)
class QuestionTerms:
    """Stemmed content words of a question with their weights, and the text to retrieve with."""

    query: str
    weights: dict[str, float]
    mentioned: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return sum(self.weights.values())

    def coverage(self, tokens: set[str] | frozenset[str]) -> float:
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
    vocabulary: Vocabulary,
) -> QuestionTerms:
    """Weighted terms and the retrieval query; follow-ups borrow the previous question's words."""
    current = tokenize(question)
    weights: dict[str, float] = {t: vocabulary.idf(t) for t in current}
    query = question
    earlier = previous_question(history)
    if earlier and (_FOLLOW_UP.search(question) or len(set(current)) <= 2):
        query = f"{question} {earlier}"
        for t in tokenize(earlier):
            weights.setdefault(t, 0.5 * vocabulary.idf(t))
    return QuestionTerms(
        query=query, weights=weights, mentioned=tuple(vocabulary.mentioned_documents(query))
    )


def is_list_question(question: str) -> bool:
    """Whether the question asks for several things (ways, steps, barriers...)."""
    return bool(_LIST_CUE.search(question))
