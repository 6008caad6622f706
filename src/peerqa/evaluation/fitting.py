"""Fitting peerqa's tunable parts on gold items, in order, each on top of the ones before.

A ``Fitter`` learns one section of ``Tuning`` (see ``peerqa.tuning``) from gold items, using an
assistant that already carries the sections fitted before it (a ranker first, then what reads
the ranking). ``fit_all`` is what ``peerqa tune`` runs on the whole gold set and what the
cross-validation runs on each training fold; ``fitters.default_fitters()`` gives them in order.

The labels come only from the items given: a chunk is relevant to an item when it holds one of
the item's gold quotes (``metrics.holds``); an unanswerable item's chunks are all irrelevant.
The query is the one the answer searches with (``question_terms``: a follow-up's words joined by
the previous question's), so what is fitted is what ``ask`` and the evaluation use.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..answer.question import question_terms
from ..assistant import Assistant
from ..tuning import UNTUNED, Tuning
from .gold import GoldItem
from .metrics import Span, holds, quote_spans


class Fitter(Protocol):
    """Learns one section of the tuning from gold items."""

    @property
    def section(self) -> str:
        """The name of the ``Tuning`` section it writes."""
        ...

    def fit(self, assistant: Assistant, items: Sequence[GoldItem]) -> dict[str, Any]:
        """The section's parameters, fitted on ``items`` (never on anything else)."""
        ...


@dataclass(frozen=True, slots=True)
class Example:
    """A gold item as the fitters see it: the query searched with and the chunks that hold its
    evidence (a boolean per chunk of the index)."""

    id: str
    query: str
    relevant: np.ndarray
    late: str | None = None
    """What late interaction reads instead of the query (a follow-up's own words)."""


def examples(assistant: Assistant, items: Sequence[GoldItem]) -> list[Example]:
    """Each item's retrieval query and relevant chunks."""
    retriever = assistant.retriever
    documents = {d.doc_id: d for d in assistant.documents}
    out = []
    for item in items:
        terms = question_terms(item.question, list(item.history) or None, retriever.vocabulary)
        quotes = quote_spans(item, documents) if item.type != "unanswerable" else []
        relevant = np.array([
            any(holds(Span(c.doc_id, c.start, c.end), q) for q in quotes)
            for c in retriever.chunks
        ], dtype=bool)
        out.append(Example(item.id, terms.query, relevant, terms.late))
    return out


def out_of_fold(
    assistant: Assistant,
    items: Sequence[GoldItem],
    refit: Sequence[Fitter],
    *,
    k: int = 3,
    seed: int = 7,
) -> list[tuple[list[int], Assistant]]:
    """The items in ``k`` folds, each with the assistant whose ``refit`` sections were fitted
    on the other folds only.

    A section fitted on an item scores that item better than it will score a new question; a
    later fitter that learned from such scores would trust them too much. So each later fitter
    reads every item through sections that never saw it (cross-fitting). Only the sections the
    assistant's tuning holds are refitted; without any, one fold holds every item.
    """
    present = [f for f in refit if f.section in assistant.tuning.sections]
    if not present or len(items) < 2 * k:
        return [(list(range(len(items))), assistant)]
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    out = []
    for n in range(k):
        held = sorted(order[n::k])
        chosen = set(held)
        train = [item for i, item in enumerate(items) if i not in chosen]
        tuning = fit_all(assistant, train, fitters=present, base=assistant.tuning,
                         fitted_on=assistant.tuning.fitted_on)
        out.append((held, assistant.with_tuning(tuning)))
    return out


def fit_all(
    assistant: Assistant,
    items: Sequence[GoldItem],
    *,
    fitters: Sequence[Fitter],
    base: Tuning = UNTUNED,
    fitted_on: str = "",
) -> Tuning:
    """Fit every section on ``items``, in order, starting from ``base``."""
    tuning = Tuning(dict(base.sections), fitted_on)
    for fitter in fitters:
        values = fitter.fit(assistant.with_tuning(tuning), items)
        tuning = tuning.with_section(fitter.section, values)
    return tuning

