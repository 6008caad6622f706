"""Relevance on the bundled corpus with the shipped tuning: a 0..1 figure that falls down every
result list and that, across the gold set, holds evidence more often the higher it is."""

from __future__ import annotations

import numpy as np

from peerqa.evaluation import load_gold_items
from peerqa.evaluation.fitting import examples


def test_shipped_tuning__applies_to_the_bundled_corpus(assistant):
    retriever = assistant.retriever
    assert retriever.adapter is not None, "tuning.json was fitted on other documents: peerqa tune"
    assert retriever.scored_on.startswith("fused+adapter")
    assert retriever.calibration.on == retriever.scored_on  # fitted on these scores, not defaults


def test_relevance__falls_down_each_list_and_higher_means_evidence_more_often(assistant):
    items, _ = load_gold_items()
    retriever = assistant.retriever
    row = {c.chunk_id: i for i, c in enumerate(retriever.chunks)}
    pairs = []
    for e in examples(assistant, items):
        hits = retriever.search(e.query, 10)
        rel = [h.passage.relevance for h in hits]
        assert all(r is not None and 0.0 <= r <= 1.0 for r in rel), (e.id, rel)
        assert all(a >= b for a, b in zip(rel, rel[1:], strict=False)), (e.id, rel)
        pairs += [(h.passage.relevance, e.relevant[row[h.passage.chunk_id]]) for h in hits]
    rel, holds = np.array(pairs, dtype=float).T
    bands = [(0.0, 0.2), (0.2, 0.5), (0.5, 1.01)]
    rates = [float(holds[(rel >= lo) & (rel < hi)].mean()) for lo, hi in bands]
    assert rates[0] < rates[1] < rates[2], rates
    # Calibrated, not just ordered: each band's rate lies near the relevance it shows.
    assert rates[0] < 0.2 and rates[2] >= 0.5, rates
