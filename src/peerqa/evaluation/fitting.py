"""Fitting peerqa's tunable parts on gold items, in order, each on top of the ones before.

A ``Fitter`` learns one section of ``Tuning`` (see ``peerqa.tuning``) from gold items, using an
assistant that already carries the sections fitted before it (a ranker first, then what reads
the ranking). ``fit_all`` is what ``peerqa tune`` runs on the whole gold set and what the
cross-validation runs on each training fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..assistant import Assistant
from ..tuning import UNTUNED, Tuning
from .gold import GoldItem


class Fitter(Protocol):
    """Learns one section of the tuning from gold items."""

    @property
    def section(self) -> str:
        """The name of the ``Tuning`` section it writes."""
        ...

    def fit(self, assistant: Assistant, items: Sequence[GoldItem]) -> dict[str, Any]:
        """The section's parameters, fitted on ``items`` (never on anything else)."""
        ...


FITTERS: list[Fitter] = []
"""Every fitter, in the order they run: each sees the sections fitted before it."""


def fit_all(
    assistant: Assistant,
    items: Sequence[GoldItem],
    *,
    fitters: Sequence[Fitter] | None = None,
    base: Tuning = UNTUNED,
    fitted_on: str = "",
) -> Tuning:
    """Fit every section on ``items``, in order, starting from ``base``."""
    tuning = Tuning(dict(base.sections), fitted_on)
    for fitter in FITTERS if fitters is None else fitters:
        values = fitter.fit(assistant.with_tuning(tuning), items)
        tuning = tuning.with_section(fitter.section, values)
    return tuning
