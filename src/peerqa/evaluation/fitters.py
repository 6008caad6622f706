"""Every fitter, in the order ``peerqa tune`` and the cross-validation run them."""

from __future__ import annotations

from .fit_answerability import AnswerabilityFitter
from .fit_ranking import AdapterFitter, RelevanceFitter, SectionPullFitter
from .fitting import Fitter


def default_fitters() -> list[Fitter]:
    """Fresh fitters, in order: the adapter; the section pull and the relevance calibration,
    each read through adapters that never saw the item; then the answerability thresholds, also
    read through adapters that never saw the item (relevance does not enter the answerability
    check). The section pull is one number chosen from six, so the later fitters read it as
    fitted on all their items instead of refitting it per inner fold."""
    adapter = AdapterFitter()
    pull = SectionPullFitter(refit=[adapter], k=5)
    relevance = RelevanceFitter(refit=[adapter], k=5)
    return [adapter, pull, relevance, AnswerabilityFitter(refit=[adapter], k=5)]
