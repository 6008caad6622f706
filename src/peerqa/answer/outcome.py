"""What every answerer says when the documents do not cover a question."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Answer, AnswerChecks, Passage

ABSTAIN_TEXT = (
    "The documents do not appear to cover this question. "
    "The closest material they hold is listed below; it is not an answer."
)


def abstention(
    question: str, passages: Sequence[Passage], query: str = "", *, mode: str = "extractive"
) -> Answer:
    """An answer that says the documents do not cover the question, with the closest passages."""
    return Answer(
        question=question,
        text=ABSTAIN_TEXT,
        citations=[],
        abstained=True,
        passages=list(passages),
        mode=mode,
        checks=AnswerChecks(abstained=True),
        retrieval_query=query,
    )
