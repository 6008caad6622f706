"""Fitters of the search: the query adapter, the section pull and the relevance calibration
(``ranking.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..assistant import Assistant
from ..ranking import Adapter, Calibration, SectionPull
from .fitting import Example, Fitter, examples, out_of_fold
from .gold import GoldItem
from .learners import fit_adapter, fit_logistic
from .metrics import MRR_DEPTH


def _standardised(scores: np.ndarray) -> np.ndarray:
    spread = float(scores.std())
    return (scores - float(scores.mean())) / spread if spread > 0 else np.zeros_like(scores)


class AdapterFitter:
    """The query adapter: a low-rank linear map of query vectors towards the chunks (and their
    sentences) that hold each training question's evidence.

    It is fitted as a residual: each chunk's logit starts from ``bm25_offset`` times its
    standardised BM25 score for the question, so the map spends itself on the questions whose
    words miss their evidence rather than on those BM25 already ranks well (cross-validated,
    this raised hit@1 0.542 -> 0.584 at the same hit@5; README, Evaluation).
    """

    section = "adapter"

    def __init__(
        self, rank: int = 16, l2: float = 0.1, steps: int = 200, temperature: float = 0.05,
        bm25_offset: float = 0.5,
    ) -> None:
        self.rank, self.l2, self.steps, self.temperature = rank, l2, steps, temperature
        self.bm25_offset = bm25_offset

    def fit(self, assistant: Assistant, items: Sequence[GoldItem]) -> dict[str, Any]:
        retriever = assistant.with_tuning(assistant.tuning.without("adapter")).retriever
        found = [e for e in examples(assistant, items) if e.relevant.any()]
        if not found:
            return {}
        queries = np.stack([retriever.embed(e.query) for e in found])
        offsets = None
        if self.bm25_offset:
            offsets = self.bm25_offset * np.stack([
                _standardised(retriever.signals(e.query, None, queries[n])[0].bm25)
                for n, e in enumerate(found)])
        sentences = retriever.sentences
        u, v = fit_adapter(
            queries, np.stack([e.relevant for e in found]), retriever.generation.vectors(),
            sentences.vectors if sentences is not None else None,
            sentences.chunk if sentences is not None else None,
            rank=self.rank, l2=self.l2, steps=self.steps, temperature=self.temperature,
            offsets=offsets,
        )
        adapter = Adapter(u.astype(np.float32), v.astype(np.float32))
        return {**adapter.to_section(retriever.documents.keys()), "items": len(found),
                "bm25_offset": self.bm25_offset}


def _ranking_quality(chunks: np.ndarray, e: Example) -> float:
    """Reciprocal rank of the first relevant chunk within ``MRR_DEPTH``, plus half a point when
    one is in the top 5: what the section pull is chosen for."""
    relevant = e.relevant[chunks[:MRR_DEPTH]]
    if not relevant.any():
        return 0.0
    first = int(np.argmax(relevant))
    return 1.0 / (first + 1) + (0.5 if first < 5 else 0.0)


class SectionPullFitter:
    """The section pull: the share, among ``shares``, that ranks the training questions'
    evidence best (reciprocal rank plus hit@5), each question ranked through adapters that
    never saw it."""

    section = "section_pull"

    def __init__(self, refit: Sequence[Fitter] = (), k: int = 5,
                 shares: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)) -> None:
        self.refit = list(refit)
        self.k = k
        self.shares = tuple(shares)

    def fit(self, assistant: Assistant, items: Sequence[GoldItem]) -> dict[str, Any]:
        found = examples(assistant, items)
        quality = np.zeros(len(self.shares))
        counted = 0
        for held, view in out_of_fold(assistant, items, self.refit, k=self.k):
            answerable = [found[i] for i in held if found[i].relevant.any()]
            counted += len(answerable)
            for n, share in enumerate(self.shares):
                tuning = view.tuning.with_section("section_pull", {"share": share})
                retriever = view.with_tuning(tuning).retriever
                quality[n] += sum(
                    _ranking_quality(retriever.rank(e.query, late_query=e.late).chunks, e)
                    for e in answerable)
        if not counted:
            return {}
        best = int(np.argmax(quality))  # the first (smallest) share among equals
        return {**SectionPull(self.shares[best]).to_section(), "items": counted}


class RelevanceFitter:
    """The relevance calibration: a logistic fit of "holds gold evidence" on the search score
    (and its gap to the search's best) of the top 10 of every item, answerable or not, each
    item scored through sections fitted without it."""

    section = "relevance"
    depth = 10

    def __init__(self, refit: Sequence[Fitter] = (), k: int = 3) -> None:
        self.refit = list(refit)
        self.k = k

    def fit(self, assistant: Assistant, items: Sequence[GoldItem]) -> dict[str, Any]:
        found = examples(assistant, items)
        rows, labels = [], []
        for held, view in out_of_fold(assistant, items, self.refit, k=self.k):
            retriever = view.retriever
            for i in held:
                ranking = retriever.rank(found[i].query, late_query=found[i].late)
                s = ranking.scores[: self.depth]
                if not len(s):
                    continue
                rows.append(np.stack([s, s - s.max(), np.ones(len(s))], axis=1))
                labels.append(found[i].relevant[ranking.chunks[: self.depth]].astype(np.float64))
        if not rows:
            return {}
        x, y = np.concatenate(rows), np.concatenate(labels)
        a, b, c = fit_logistic(x, y)
        if a + b < 0:  # relevance must not rise down a list: keep the gap only
            a = 0.0
            b, c = fit_logistic(x[:, 1:], y)
            b = max(b, 0.0)
        on = assistant.retriever.scored_on
        return {**Calibration(float(a), float(b), float(c), on).to_section(), "items": len(rows)}
