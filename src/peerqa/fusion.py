"""How the retrievers' scores for every chunk combine into one: standardised and weighted
(``zscore``, the default) or by reciprocal rank (``rrf``), chosen by ``Settings.fusion``; and
the partial sort that takes the best of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Signals:
    """Each retriever's score for every chunk, and which chunks may be returned."""

    bm25: np.ndarray
    dense: np.ndarray
    sentence: np.ndarray | None  # best sentence's similarity; None without sentence vectors
    mask: np.ndarray  # the searchable chunks (the document filter)


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each signal counts, and the reciprocal-rank constant."""

    bm25: float
    dense: float
    sentence: float
    rrf_k: int


def _zscore(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scores standardised over the searchable chunks, so two retrievers' scales agree."""
    values = scores[mask]
    spread = float(values.std()) if values.size else 0.0
    return (scores - float(values.mean())) / spread if spread > 0 else np.zeros_like(scores)


def fuse_zscore(s: Signals, w: Weights) -> np.ndarray:
    """Weighted sum of the signals, each standardised over the searchable chunks."""
    fused = w.bm25 * _zscore(s.bm25, s.mask)
    fused = fused + w.dense * _zscore(s.dense, s.mask)
    if s.sentence is not None:
        fused = fused + w.sentence * _zscore(s.sentence, s.mask)
    return fused


def _order(scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    return candidates[np.argsort(-scores[candidates], kind="stable")]


def top(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best candidates, best first: the first ``k`` of ``_order`` (ties in candidate
    order), without sorting them all. ``candidates`` must be in increasing order."""
    if len(candidates) <= k:
        return _order(scores, candidates)
    values = -scores[candidates]
    kth = np.partition(values, k - 1)[k - 1]
    return _order(scores, candidates[values <= kth])[:k]  # ties at the k-th all stay in


def fuse_rrf(s: Signals, w: Weights) -> np.ndarray:
    """Weighted reciprocal-rank fusion; BM25 ranks only the chunks sharing a word with the query."""
    candidates = np.flatnonzero(s.mask)
    fused = np.zeros(len(s.mask), dtype=np.float64)
    ranks = np.arange(1, len(candidates) + 1, dtype=np.float64) + w.rrf_k
    order = _order(s.bm25, candidates)
    shared = s.bm25[order] > 0
    fused[order[shared]] += w.bm25 / ranks[shared]
    fused[_order(s.dense, candidates)] += w.dense / ranks
    if s.sentence is not None:
        fused[_order(s.sentence, candidates)] += w.sentence / ranks
    return fused


Fusion = Callable[[Signals, Weights], np.ndarray]

FUSIONS: dict[str, Fusion] = {"zscore": fuse_zscore, "rrf": fuse_rrf}
"""Fusion functions by the name ``Settings.fusion`` gives."""

MENTION_SCALE: dict[str, Callable[[Weights], float]] = {
    "zscore": lambda w: 1.0,  # one standard deviation
    "rrf": lambda w: 1.0 / (w.rrf_k + 1),  # a first rank
}
"""What one unit of the document-mention boost is worth in each fusion's scale."""
