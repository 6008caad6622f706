"""The terminal tables of an evaluation, and the legend that says what each figure means."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
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


# --------------------------------------------------------------------------- the legend

# One line per metric, for the table and the report. A metric added to ``metric_names`` adds
# its line here (a test holds every metric to having one); "@k" stands for any cutoff.
LEGEND: dict[str, str] = {
    "items": "gold items scored",
    "answerable": "items the documents answer (every type but unanswerable)",
    "failed": "items with at least one failure (the report lists why)",
    "hit@1": "the first passage holds a gold quote (answerable items)",
    "hit@k": "some passage in the top k holds a gold quote (answerable items)",
    "mrr@10": "1 / rank of the first passage holding a gold quote in the top 10, else 0",
    "evidence_recall@k": "share of an item's gold quotes held by some top-k passage",
    "avg_passage_words": "words in a top-k passage, on average",
    "max_passage_words": "words in the longest top-k passage (chunks are capped: 150 by default)",
    "citation_recall": "share of answer sentences that their cited passages support (ALCE)",
    "citation_precision": "share of citations a sentence needs to be supported (ALCE)",
    "citation_correctness": "the answer cites a passage holding a gold quote; abstaining scores 0",
    "quote_fidelity": "share of quotes shown that equal the document text at their offsets",
    "markers_resolve": "every [n] in the answer names one of its citations",
    "citations_used": "every citation listed is named by some [n]",
    "key_fact_coverage": "share of key facts with 6 in 10 of their stemmed words in the answer",
    "token_f1": "overlap (F1) of stemmed content words between answer and gold answer",
    "abstention_unanswerable": "share of unanswerable items answered 'not covered'",
    "wrongful_abstention": "share of answerable items answered 'not covered'",
    "citation_precision_gold": "share of an answer's citations that hold a gold quote",
    "flawed_quotes": "quoted sentences that are headings, boilerplate, references or fragments",
    "decline_unanswerable": "share of unanswerable items answered 'partial' or 'not covered'",
    "wrongful_not_covered": "share of answerable items answered 'not covered'",
    "wrongful_partial": "share of answerable items answered 'partial'",
    "coverage_accuracy": "share of items whose coverage is the one the gold item expects",
    "latency_p50_ms": "median time of one question, the index already open",
    "latency_p95_ms": "95th-percentile time of one question, the index already open",
}
LOWER_IS_BETTER = {"max_passage_words", "avg_passage_words", "wrongful_abstention",
                   "wrongful_not_covered", "wrongful_partial", "flawed_quotes",
                   "latency_p50_ms", "latency_p95_ms"}
"""Figures where less is better; the table and charts mark them."""
GUARANTEED_EXTRACTIVE = {"quote_fidelity", "markers_resolve", "citations_used",
                         "citation_recall", "citation_precision"}
"""1.0 by construction when every answer is extractive: each sentence is a verbatim quote of
the one passage it cites. They check the machinery, not the quality of the answers."""
LOWER, GUARANTEED = "↓", "*"


def text_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned text lines: the first column left, the others right, a rule under the
    heading row."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join([r[0].ljust(widths[0]),
                                *[c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]]))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def legend(name: str) -> str:
    """What a metric means, in one line ("" for one without a legend)."""
    return LEGEND.get(name) or LEGEND.get(re.sub(r"@\d+$", "@k", name), "")


def marks(name: str, mode: str) -> str:
    """The table's marks after a metric's name: lower is better, guaranteed by construction."""
    out = LOWER if name in LOWER_IS_BETTER else ""
    if mode == "extractive" and name in GUARANTEED_EXTRACTIVE:
        out += GUARANTEED
    return out


def legend_lines(names: Iterable[str], mode: str) -> list[str]:
    """The legend under the table: one line per metric, and what the marks mean."""
    rows = [(label(n) + (" " + m if (m := marks(n, mode)) else ""), legend(n)) for n in names]
    width = max(len(r[0]) for r in rows)
    lines = ["Legend:"] + [f"  {name.ljust(width)}  {text}" for name, text in rows]
    lines.append(f"  {LOWER} lower is better.")
    if mode == "extractive":
        lines.append(f"  {GUARANTEED} 1.0 by construction in extractive mode (every sentence "
                     "is a verbatim quote of the passage it cites): a check, not a quality "
                     "measure.")
    return lines


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
    """The metrics, overall and per type, with peerqa's targets and a legend, as plain text."""
    types = list(run.by_type)
    heads = ["metric", "overall", *[t[:12] for t in types], "target"]
    rows = [heads]
    names = ["items", "answerable", "failed", *metric_names(run.k)]
    for name in names:
        target = target_text(name)
        ok = meets(name, run.overall.get(name))
        if ok is False:
            target += " ✗"
        mark = marks(name, run.mode)
        rows.append([label(name) + (f" {mark}" if mark else ""), fmt(run.overall.get(name), name),
                     *[fmt(run.by_type[t].get(name), name) for t in types], target])
    widths = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1],
                                                                      strict=True)]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += ["", *legend_lines(names, run.mode)]
    if run.comparison:
        lines += ["", format_comparison(run.comparison)]
    for note in run.notes:
        lines.append(f"note: {note}")
    lines.append(f"{len(run.items)} items in {run.seconds:.1f} s (k = {run.k}); opening the "
                 f"index and a warm-up question took {run.open_seconds:.1f} s, not counted in "
                 f"latency; gold: {run.gold}")
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
    lines = text_table(rows)
    n = systems[0].items if systems else 0
    lines.append(f"on the {n} answerable items, each system given the same query "
                 "(the answer's retrieval query)")
    return "\n".join(lines)
