"""What every answerer says when the documents do not cover a question."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Answer, AnswerChecks, AnswerPart, Passage

ABSTAIN_TEXT = (
    "The documents do not appear to cover this question. "
    "The closest material they hold is listed below; it is not an answer."
)


def abstention(
    question: str,
    passages: Sequence[Passage],
    query: str = "",
    *,
    mode: str = "extractive",
    missing: str = "",
) -> Answer:
    """An answer that says the documents do not cover the question (and, where known, what they
    never mention), with the closest passages."""
    parts = [AnswerPart("lead", ABSTAIN_TEXT)]
    if missing:
        parts.append(AnswerPart("note", missing))
    return Answer(
        question=question,
        text="\n".join(p.text for p in parts),
        citations=[],
        abstained=True,
        passages=list(passages),
        mode=mode,
        checks=AnswerChecks(abstained=True),
        retrieval_query=query,
        coverage="not_covered",
        missing=missing,
        parts=parts,
    )
