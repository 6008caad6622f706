"""The citation-accuracy suite: the whole gold set, run once, held to evals/floors.json.

Run it alone with ``pytest -m citation_suite``. A floor is a measured figure rounded down to two
decimals (a ceiling, for figures where lower is better, rounded up). Raise a floor when the system
improves; never lower one to make a run pass. The issue's targets are reported (in the figures
table and test-artifacts/citation-suite.html), not asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peerqa.evaluation import EvalRun, format_table, load_gold_items, run_eval, write_report

pytestmark = pytest.mark.citation_suite

FLOORS = Path(__file__).resolve().parents[1] / "evals" / "floors.json"


@pytest.fixture(scope="module")
def gold_run(assistant, artifacts_dir: Path) -> EvalRun:
    """Every gold item asked once; the figures and report are kept in test-artifacts/."""
    items, source = load_gold_items()
    run = run_eval(assistant, items, k=5, gold=source)
    (artifacts_dir / "citation-suite.txt").write_text(format_table(run) + "\n", encoding="utf-8")
    run.write_json(artifacts_dir / "citation-suite.json")
    write_report(run, artifacts_dir / "citation-suite.html")
    return run


@pytest.fixture(scope="module")
def limits() -> dict:
    return json.loads(FLOORS.read_text(encoding="utf-8"))


def test_quote_fidelity__every_shown_quote_is_the_document_text(gold_run):
    broken = [r.id for r in gold_run.items if r.quotes_verbatim < r.quotes_shown]
    assert gold_run.overall["quote_fidelity"] == 1.0, f"non-verbatim quotes in {broken}"


def test_markers__every_marker_resolves_and_every_citation_is_used(gold_run):
    answered = [r for r in gold_run.items if not r.abstained]
    assert answered, "every item abstained: nothing to check"
    unresolved = [r.id for r in answered if r.metrics["markers_resolve"] != 1.0]
    unused = [r.id for r in answered if r.metrics["citations_used"] != 1.0]
    assert not unresolved, f"[n] markers without a citation in {unresolved}"
    assert not unused, f"citations never cited in the text in {unused}"


def test_aggregates__stay_at_or_above_their_floors(gold_run, limits):
    figures = gold_run.overall
    below = {
        name: (figures.get(name), floor) for name, floor in limits["floors"].items()
        if figures.get(name) is None or figures[name] < floor
    }
    above = {
        name: (figures.get(name), ceiling) for name, ceiling in limits["ceilings"].items()
        if figures.get(name) is None or figures[name] > ceiling
    }
    assert not below, f"below their floors (measured, floor): {below}\n{format_table(gold_run)}"
    assert not above, f"above their ceilings (measured, ceiling): {above}"


def test_floors__cover_the_figures_the_issue_sets_targets_for(limits):
    bounded = set(limits["floors"]) | set(limits["ceilings"])
    for name in ("hit@5", "citation_correctness", "citation_recall", "citation_precision",
                 "abstention_unanswerable", "wrongful_abstention", "max_passage_words",
                 "decline_unanswerable", "wrongful_not_covered", "wrongful_partial",
                 "citation_precision_gold", "flawed_quotes", "key_fact_coverage"):
        assert name in bounded, f"{name} has no floor or ceiling in {FLOORS.name}"
