"""The terminal tables of an evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .baselines import COMPARE_CUTOFFS, SystemScores
from .scoring import TARGETS, metric_names

if TYPE_CHECKING:
    from .runner import EvalRun



# --------------------------------------------------------------------------- the terminal table


_LABELS = {
    "avg_passage_words": "avg passage words",
    "max_passage_words": "max passage words",
    "citation_recall": "citation recall",
    "citation_precision": "citation precision",
    "citation_correctness": "citation correctness",
    "quote_fidelity": "quote fidelity",
    "markers_resolve": "[n] resolve",
    "citations_used": "citations used",
    "key_fact_coverage": "key-fact coverage",
    "token_f1": "token F1",
    "abstention_unanswerable": "abstain (unanswerable)",
    "wrongful_abstention": "wrongful abstention",
    "citation_precision_gold": "cit. precision (gold)",
    "flawed_quotes": "flawed quotes (count)",
    "decline_unanswerable": "decline (unanswerable)",
    "wrongful_not_covered": "wrongful not covered",
    "wrongful_partial": "wrongful partial",
    "coverage_accuracy": "coverage = expected",
    "latency_p50_ms": "latency p50 (ms)",
    "latency_p95_ms": "latency p95 (ms)",
}


def label(name: str) -> str:
    """A metric's name for people."""
    return _LABELS.get(name, name.replace("_", " "))


def fmt(value: float | None, name: str = "") -> str:
    """A figure for a table: counts and milliseconds whole, rates with three decimals."""
    if value is None:
        return "—"
    if "words" in name or name.startswith("latency") or name in {"items", "answerable", "failed",
                                                                 "flawed_quotes"}:
        return f"{value:.0f}"
    return f"{value:.3f}"


def target_text(name: str) -> str:
    if name not in TARGETS:
        return ""
    op, v = TARGETS[name]
    return f"{'≥' if op == '>=' else '≤'} {v:g}"



def meets(name: str, value: float | None) -> bool | None:
    """Whether a figure meets its target (None when there is no target or no figure)."""
    if name not in TARGETS or value is None:
        return None
    op, v = TARGETS[name]
    return value >= v - 1e-12 if op == ">=" else value <= v + 1e-12


def format_table(run: EvalRun) -> str:
    """The metrics, overall and per type, with the issue's targets, as plain text."""
    types = list(run.by_type)
    heads = ["metric", "overall", *[t[:12] for t in types], "target"]
    rows = [heads]
    for name in ["items", "answerable", "failed", *metric_names(run.k)]:
        target = target_text(name)
        ok = meets(name, run.overall.get(name))
        if ok is False:
            target += " ✗"
        rows.append([label(name), fmt(run.overall.get(name), name),
                     *[fmt(run.by_type[t].get(name), name) for t in types], target])
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1],
                                                                      strict=True)]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    if run.comparison:
        lines += ["", format_comparison(run.comparison)]
    for note in run.notes:
        lines.append(f"note: {note}")
    lines.append(f"{len(run.items)} items in {run.seconds:.1f} s (k = {run.k}); gold: {run.gold}")
    return "\n".join(lines)


def comparison_columns(systems: Sequence[SystemScores]) -> list[str]:
    return [f"hit@{c}" for c in COMPARE_CUTOFFS if any(f"hit@{c}" in s.hits for s in systems)]


def format_comparison(systems: Sequence[SystemScores]) -> str:
    """The --compare table: hit@k, MRR, evidence recall and passage length per system."""
    cols = comparison_columns(systems)
    heads = ["system", "passages", *cols, "MRR@passages", "evid. recall", "avg words", "max words"]
    rows = [heads]
    for s in systems:
        rows.append([s.name, str(s.returned), *[fmt(s.hits.get(c)) for c in cols], fmt(s.mrr),
                     fmt(s.evidence_recall), fmt(s.avg_passage_words, "words"),
                     fmt(s.max_passage_words, "words")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join([r[0].ljust(widths[0]),
                                *[c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]]))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    n = systems[0].items if systems else 0
    lines.append(f"on the {n} answerable items, each system given the same query "
                 "(the answer's retrieval query)")
    return "\n".join(lines)
