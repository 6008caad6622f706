"""What the fitted parts do to a search: the query adapter, the pull of a section's passages
towards its best one, and the calibrated relevance.

The fused score ranks the corpus well enough that the evidence is almost always in its top 50;
which of those comes first is what fails, mostly because a practitioner's words and the
documents' differ. The ``adapter`` section holds a low-rank linear map of query vectors, fitted
on the gold set's question -> evidence pairs, that moves a question's vector towards the
passages that answer such questions; the dense and sentence signals are computed with the
adapted vector. It is fitted as a residual: beside the BM25 score each chunk already has, so it
learns what the words miss. The ``section_pull`` section moves each passage's score part of the
way towards the best score in its section (evidence for a list or an explanation is often spread
over a section's passages). The ``relevance`` section turns a search's scores into 0..1 figures
that mean the same across questions. All are fitted in ``evaluation/fit_ranking.py``; without a
section each falls back to its default (the plain vector; no pull; the calibration of the plain
fused score).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEPTH = 50
"""How many of a search's best chunks it ranks and calibrates (the most a search may return)."""


@dataclass(frozen=True, slots=True)
class Adapter:
    """A linear map of query vectors, W = I + U V^T (low rank), fitted on question->passage pairs;
    the adapted vector is renormalised."""

    u: np.ndarray
    v: np.ndarray

    @classmethod
    def from_section(
        cls, section: Mapping[str, Any], dim: int, documents: Collection[str]
    ) -> Adapter | None:
        """The adapter of an ``adapter`` section; None when absent, for another vector size, or
        fitted on other documents (it learned where this corpus answers, not a general skill)."""
        if not section or int(section.get("dim", -1)) != dim:
            return None
        if sorted(section.get("documents", [])) != sorted(documents):
            return None
        return cls(np.asarray(section["u"], dtype=np.float32),
                   np.asarray(section["v"], dtype=np.float32))

    def to_section(self, documents: Collection[str]) -> dict[str, Any]:
        return {"dim": int(self.u.shape[0]), "rank": int(self.u.shape[1]),
                "documents": sorted(documents),
                "u": _rounded(self.u, 5), "v": _rounded(self.v, 5)}

    def apply(self, vector: np.ndarray) -> np.ndarray:
        """The adapted, unit-length query vector."""
        q = np.asarray(vector, dtype=np.float32)
        out = q + self.u @ (self.v.T @ q)
        norm = float(np.linalg.norm(out))
        return out / norm if norm > 0 else q


@dataclass(frozen=True, slots=True)
class SectionPull:
    """score' = (1 - share) * score + share * (best score in the passage's section).

    A passage alone in its section keeps its score; the best passage of a section keeps its
    own; the others rise towards it, in the same order among themselves.
    """

    share: float = 0.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> SectionPull:
        """The pull of a ``section_pull`` section; no pull when absent or out of [0, 1]."""
        share = float(section.get("share", 0.0)) if section else 0.0
        return cls(share if 0.0 <= share <= 1.0 else 0.0)

    def to_section(self) -> dict[str, Any]:
        return {"share": round(self.share, 6)}

    def apply(self, scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """The pulled scores; ``groups`` numbers each score's section (0..n-1)."""
        if not self.share or not len(scores):
            return scores
        best = np.full(int(groups.max()) + 1, -np.inf)
        np.maximum.at(best, groups, scores)
        return np.asarray((1 - self.share) * scores + self.share * best[groups], dtype=scores.dtype)


def section_groups(keys: Sequence[Hashable]) -> np.ndarray:
    """A number per item for its key (a passage's document and section), in first-seen order."""
    numbers: dict[Hashable, int] = {}
    return np.array([numbers.setdefault(k, len(numbers)) for k in keys], dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Calibration:
    """relevance = sigmoid(a * score + b * (score - best score of the search) + c).

    With a + b >= 0 it never rises as a list goes down. ``on`` names the scores it was fitted
    on ("fused"; "fused+adapter" when the query adapter was in use, "+pull" added when the
    section pull was); a section fitted on other scores is not used, and the defaults (fitted on
    the plain fused score) stand in.
    """

    a: float
    b: float
    c: float
    on: str = "fused"

    @classmethod
    def from_section(cls, section: Mapping[str, Any], on: str) -> Calibration:
        """The section's calibration if it was fitted for scores of kind ``on``, else defaults."""
        if section and section.get("on") == on:
            return cls(float(section["a"]), float(section["b"]), float(section["c"]), on)
        return DEFAULT_CALIBRATION

    def to_section(self) -> dict[str, Any]:
        return {"on": self.on, "a": round(self.a, 6), "b": round(self.b, 6), "c": round(self.c, 6)}

    def relevance(self, scores: np.ndarray) -> np.ndarray:
        """The 0..1 relevance of each score of one search (best first or not)."""
        if not len(scores):
            return np.zeros(0)
        z = self.a * scores + self.b * (scores - float(scores.max())) + self.c
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40, 40))), dtype=np.float64)


DEFAULT_CALIBRATION = Calibration(0.879794, 1.134038, -3.98071, "fused")
"""Relevance of the plain fused score: the fit of "holds gold evidence" on the untuned ranking's
top 10 of every gold item (evals/gold.jsonl, 422 items, 2026-12-01)."""

def _rounded(x: np.ndarray, digits: int = 6) -> list[Any]:
    return np.round(np.asarray(x, dtype=np.float64), digits).tolist()  # type: ignore[no-any-return]
