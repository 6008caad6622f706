"""Fitter of the answerability check: the thresholds that decide answered, partial or not
covered, chosen on a trade-off curve of declines against wrongful declines."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..answer.answerability import SECTION as ANSWERABILITY
from ..answer.answerability import Assessment, Thresholds, decide
from ..assistant import Assistant
from .fitting import Fitter, out_of_fold
from .gold import GoldItem


@dataclass(frozen=True, slots=True)
class Point:
    """One setting of the answerability thresholds and what it does on the items fitted on."""

    thresholds: Thresholds
    declines: float
    """Share of unanswerable items declined (partial or not covered)."""
    wrongful_not_covered: float
    wrongful_partial: float
    accuracy: float
    """Share of items whose coverage is the one expected."""

    @property
    def wrongful(self) -> float:
        return self.wrongful_not_covered + self.wrongful_partial


GRID: dict[str, tuple[float, ...]] = {
    "min_relevance": (0.2, 0.25),
    "focus": (0.25, 0.3, 0.35, 0.4),
    "count_noun": (0.0, 1.0),
    "meaning": (0.5, 0.55, 0.6),
    "focal": (0.06, 0.08, 0.1, 0.12, 0.15, 1.01),
    "focal_idf": (0.0, 3.0, 3.5),
    "named_relevance": (0.0, 0.25),
    "named_quoted": (0.0, 1.0),
    # Never switched off: a question resting on a name the documents never use ("the capital
    # of France") is not covered, whatever word of it a passage happens to share; on the gold
    # set switching it off spares one answerable item (0.023 -> 0.019 wrongly not covered) and
    # turns such questions into partial answers quoting the shared word.
    "name_focus": (0.1, 0.15, 0.2, 0.3),
    "term_share": (0.0,),
    "common_idf": (1.0,),
    "unknown_share": (1.01,),
}
"""The thresholds tried (1.01: a check switched off)."""
CAP_NOT_COVERED = 0.02
CAP_PARTIAL = 0.07
"""Wrongful declines allowed on the items fitted on: below the issue's 0.03 and 0.08, leaving
room for items never seen."""


def score_point(
    t: Thresholds, assessed: Sequence[tuple[GoldItem, Assessment]], min_coverage: float
) -> Point:
    """What the thresholds do on assessed items."""
    declined = not_covered = partial = right = 0
    answerable = [item for item, _ in assessed if item.type != "unanswerable"]
    for item, a in assessed:
        coverage = decide(a, t, min_coverage=min_coverage, words=False).coverage
        right += coverage == item.coverage
        if item.type == "unanswerable":
            declined += coverage != "answered"
        else:
            not_covered += coverage == "not_covered"
            partial += coverage == "partial"
    n_unanswerable = len(assessed) - len(answerable)
    return Point(t, declined / max(n_unanswerable, 1), not_covered / max(len(answerable), 1),
                 partial / max(len(answerable), 1), right / max(len(assessed), 1))


def frontier(points: Sequence[Point]) -> list[Point]:
    """The trade-off curve: for each level of wrongful declines, the most declines reached."""
    best: list[Point] = []
    for p in sorted(points, key=lambda p: (p.wrongful, -p.declines, -p.accuracy)):
        if not best or p.declines > best[-1].declines:
            best.append(p)
    return best


def choose_point(points: Sequence[Point]) -> Point:
    """The operating point: the most declines within the caps on wrongful declines (then the
    best coverage accuracy). A cap no setting can keep to becomes the least any setting
    reaches: one item wrongly declined whatever the thresholds must not push the choice to
    a setting that declines nothing."""
    cap_not_covered = max(CAP_NOT_COVERED, min(p.wrongful_not_covered for p in points))
    within = [p for p in points if p.wrongful_not_covered <= cap_not_covered + 1e-9]
    cap_partial = max(CAP_PARTIAL, min(p.wrongful_partial for p in within))
    allowed = [p for p in within if p.wrongful_partial <= cap_partial + 1e-9]
    return max(allowed, key=lambda p: (round(p.declines, 6), round(p.accuracy, 6),
                                       -p.wrongful))


class AnswerabilityFitter:
    """Fits the answerability check's thresholds: every setting of ``GRID`` is tried on the
    items' assessments (each question searched and assessed once, through sections in
    ``refit`` fitted without it) and the one declining most unanswerable items within the caps
    on wrongful declines is kept."""

    section = ANSWERABILITY

    def __init__(self, refit: Sequence[Fitter] = (), k: int = 5) -> None:
        self.refit = list(refit)
        self.k = k
        self.curve: list[Point] = []
        self.chosen: Point | None = None

    def fit(self, assistant: Assistant, items: Sequence[GoldItem]) -> dict[str, Any]:
        # Each item is assessed through a search fitted without it (cross-fitting), so the
        # thresholds are chosen on retrieval as good as a new question gets, not better.
        found: dict[int, Assessment] = {}
        for held, view in out_of_fold(assistant, items, self.refit, k=self.k):
            for i in held:
                found[i] = view.assess(items[i].question, list(items[i].history) or None)
        assessed = [(item, found[i]) for i, item in enumerate(items)]
        min_coverage = assistant.settings.min_coverage
        names = list(GRID)
        points = [
            score_point(Thresholds(**dict(zip(names, values, strict=True))), assessed,
                        min_coverage)
            for values in itertools.product(*(GRID[n] for n in names))
        ]
        self.curve = frontier(points)
        self.chosen = choose_point(points)
        c = self.chosen
        return {**c.thresholds.as_dict(), "fitted": {
            "items": len(items), "declines_unanswerable": round(c.declines, 4),
            "wrongful_not_covered": round(c.wrongful_not_covered, 4),
            "wrongful_partial": round(c.wrongful_partial, 4),
            "coverage_accuracy": round(c.accuracy, 4)}}

    def describe(self) -> str:
        """The trade-off curve and the chosen operating point, as a table."""
        lines = ["answerability: declines on unanswerable items against wrongful declines on "
                 "answerable ones (the frontier of every setting tried)",
                 "  wrongful (not covered + partial)  declines  coverage=expected  thresholds"]
        for p in self.curve:
            mark = "  <- chosen" if self.chosen is not None and p == self.chosen else ""
            lines.append(f"  {p.wrongful_not_covered:.3f} + {p.wrongful_partial:.3f} = "
                         f"{p.wrongful:.3f}           {p.declines:.3f}      {p.accuracy:.3f}  "
                         f"{_brief(p.thresholds)}{mark}")
        if self.chosen is not None and self.chosen not in self.curve:
            p = self.chosen
            lines.append(f"  chosen (within the caps {CAP_NOT_COVERED} / {CAP_PARTIAL}): "
                         f"{p.wrongful_not_covered:.3f} + {p.wrongful_partial:.3f}, declines "
                         f"{p.declines:.3f}, {_brief(p.thresholds)}")
        return "\n".join(lines)


def _brief(t: Thresholds) -> str:
    return " ".join(f"{f.name}={getattr(t, f.name):g}" for f in dataclasses.fields(t))
