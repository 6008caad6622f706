"""Fitters of the search: the query adapter and the relevance calibration (``ranking.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..assistant import Assistant
from ..ranking import Adapter, Calibration
from .fitting import Fitter, examples, out_of_fold
from .gold import GoldItem
from .learners import fit_adapter, fit_logistic


class AdapterFitter:
    """The query adapter: a low-rank linear map of query vectors towards the chunks (and their
    sentences) that hold each training question's evidence."""

    section = "adapter"

    def __init__(
        self, rank: int = 16, l2: float = 0.1, steps: int = 200, temperature: float = 0.05
    ) -> None:
        self.rank, self.l2, self.steps, self.temperature = rank, l2, steps, temperature

    def fit(self, assistant: Assistant, items: Sequence[GoldItem]) -> dict[str, Any]:
        retriever = assistant.with_tuning(assistant.tuning.without("adapter")).retriever
        found = [e for e in examples(assistant, items) if e.relevant.any()]
        if not found:
            return {}
        queries = np.stack([retriever.embed(e.query) for e in found])
        sentences = retriever.sentences
        u, v = fit_adapter(
            queries, np.stack([e.relevant for e in found]), retriever.generation.vectors(),
            sentences.vectors if sentences is not None else None,
            sentences.chunk if sentences is not None else None,
            rank=self.rank, l2=self.l2, steps=self.steps, temperature=self.temperature,
        )
        adapter = Adapter(u.astype(np.float32), v.astype(np.float32))
        return {**adapter.to_section(retriever.documents.keys()), "items": len(found)}


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
                ranking = retriever.rank(found[i].query)
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
