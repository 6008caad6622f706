"""Every fitter, in the order ``peerqa tune`` and the cross-validation run them."""

from __future__ import annotations

from .fit_answerability import AnswerabilityFitter
from .fit_ranking import AdapterFitter, RelevanceFitter
from .fitting import Fitter


def default_fitters() -> list[Fitter]:
    """Fresh fitters, in order: the adapter, the relevance calibration read through adapters
    that never saw the item, then the answerability thresholds, also read through adapters that
    never saw the item (relevance does not enter the answerability check)."""
    adapter = AdapterFitter()
    relevance = RelevanceFitter(refit=[adapter], k=5)
    return [adapter, relevance, AnswerabilityFitter(refit=[adapter], k=5)]
