"""What the nearest evidence of a partial answer must be about: what is missing.

A partial answer names what the documents do not give ("no figure for the starting salary") and
then quotes the nearest they come. Nearest means near to what is missing: sentences about pay
for a salary, not any sentence that shares another word of the question ("starts with what's
strong" for "starting"). The words of what is missing (``Verdict.focus``) are weighed by how
much of the question's meaning each carries (``Meaning.focus``); the heaviest are its heads. A
quote is near when it uses a head, or a word whose vector is at least ``NEAR`` close to one
(on MiniLM's scale "paid" is 0.48 from "salary", "strong" 0.24). A quote that is not near is
left out; when none is, nothing is presented as the nearest material.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..text import tokenize, words
from .meaning import Meaning

NEAR = 0.45
"""Similarity at which a word of a quote is near a head of what is missing."""
HEAD_SHARE = 0.5
"""Words carrying at least this share of the heaviest one's weight are heads too."""


def heads(question: str, focus: Sequence[str], meaning: Meaning | None) -> list[str]:
    """The words of what is missing that carry most of the question ("salary", not
    "starting")."""
    focus = list(dict.fromkeys(focus))
    if len(focus) <= 1 or meaning is None:
        return focus
    weights = meaning.focus(question, focus)
    top = max(weights)
    return [w for w, x in zip(focus, weights, strict=True) if x >= HEAD_SHARE * top]


def near(texts: Sequence[str], heads: Sequence[str], meaning: Meaning | None) -> list[bool]:
    """For each quote, whether it is about one of the heads: it uses one, or a word close to
    one in meaning."""
    stems = {s for h in heads for s in tokenize(h)}
    out = []
    for text in texts:
        if stems & set(tokenize(text)):
            out.append(True)
            continue
        vocab = sorted({w for w in words(text) if tokenize(w)})
        sims = meaning(list(heads), vocab) if meaning is not None and vocab else []
        out.append(max(sims, default=0.0) >= NEAR)
    return out
