"""k-fold cross-validation by item: fit on k-1 folds, score the held-out fold, k times.

Every figure ``peerqa eval --cv K`` prints for a fitted system comes from items the fitted
parameters never saw. The folds are a fixed-seed shuffle of the items, so a run repeats exactly.
Pooled figures aggregate the held-out results of all folds (each item scored once); fold-wise
figures show their spread.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..answer.judge import supports
from ..assistant import Assistant
from ..errors import InputError
from ..tuning import Tuning
from .fitters import default_fitters
from .fitting import Fitter, fit_all
from .gold import GoldItem
from .metrics import Judge
from .runner import EvalRun, run_eval
from .scoring import aggregate
from .tables import fmt, label, text_table

SEED = 20261201
CV_METRICS = (
    "hit@1", "hit@5", "mrr@10", "evidence_recall@5", "citation_correctness",
    "citation_precision_gold", "key_fact_coverage", "token_f1", "abstention_unanswerable",
    "wrongful_abstention", "decline_unanswerable", "wrongful_not_covered", "wrongful_partial",
    "coverage_accuracy", "flawed_quotes",
)


def folds(items: Sequence[GoldItem], k: int, seed: int = SEED) -> list[list[int]]:
    """Item indices in ``k`` folds of near-equal size: a fixed-seed shuffle, dealt in turn."""
    if not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= len(items):
        raise InputError(f"--cv needs a whole number of folds from 2 to {len(items)}, not {k!r}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


@dataclass(slots=True)
class CVRun:
    """A cross-validated evaluation: each fold's held-out run and the pooled figures."""

    k: int
    seed: int
    runs: list[EvalRun]
    pooled: dict[str, float | None]
    seconds: float
    fitted: list[str] = field(default_factory=list)
    tunings: list[Tuning] = field(default_factory=list)
    """What was fitted on each training fold, in fold order."""


def cross_validate(
    assistant: Assistant,
    items: Sequence[GoldItem],
    *,
    k: int = 5,
    seed: int = SEED,
    eval_k: int = 5,
    fitters: Sequence[Fitter] | None = None,
    judge: Judge = supports,
    gold: str = "",
) -> CVRun:
    """Fit on k-1 folds and evaluate on the held-out fold, for each of the ``k`` folds."""
    t0 = time.perf_counter()
    runs = []
    tunings: list[Tuning] = []
    fitted: list[str] = []
    for n, held_out in enumerate(folds(items, k, seed), start=1):
        test = [items[i] for i in held_out]
        chosen = set(held_out)
        train = [item for i, item in enumerate(items) if i not in chosen]
        tuning = fit_all(assistant, train,
                         fitters=default_fitters() if fitters is None else fitters,
                         fitted_on=f"{gold}: folds other than {n} of {k} ({len(train)} items)")
        fitted = sorted(tuning.sections)
        tunings.append(tuning)
        runs.append(run_eval(assistant.with_tuning(tuning), test, k=eval_k, judge=judge,
                             gold=f"{gold} (fold {n} of {k})"))
    pooled = aggregate([r for run in runs for r in run.items], eval_k)
    return CVRun(k=k, seed=seed, runs=runs, pooled=pooled, seconds=time.perf_counter() - t0,
                 fitted=fitted, tunings=tunings)


def format_cv(cv: CVRun) -> str:
    """Fold-wise, mean and pooled figures of the metrics a fitted part can move."""
    heads = ["metric", *[f"fold {i}" for i in range(1, cv.k + 1)], "mean", "pooled"]
    rows = [heads]
    for name in CV_METRICS:
        values = [run.overall.get(name) for run in cv.runs]
        present = [v for v in values if v is not None]
        mean = sum(present) / len(present) if present else None
        rows.append([label(name), *[fmt(v, name) for v in values], fmt(mean, name),
                     fmt(cv.pooled.get(name), name)])
    lines = text_table(rows)
    for n, tuning in enumerate(cv.tunings, start=1):
        for name, section in sorted(tuning.sections.items()):
            shown = ", ".join(f"{key}={value:g}" for key, value in sorted(section.items())
                              if isinstance(value, (int, float)))
            lines.append(f"fold {n} {name}: {shown}")
    sizes = ", ".join(str(len(run.items)) for run in cv.runs)
    fitted = ", ".join(cv.fitted) or "nothing (no fitter is registered)"
    lines.append(f"{cv.k}-fold cross-validation by item, seed {cv.seed}, folds of {sizes} items; "
                 f"fitted on each training fold: {fitted}; {cv.seconds:.1f} s")
    return "\n".join(lines)
