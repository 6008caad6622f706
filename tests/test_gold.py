"""The gold files validate against the corpus, and validate_gold catches each kind of problem."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from peerqa.corpus import load_corpus
from peerqa.errors import InputError
from peerqa.evaluation.gold import (
    TYPES,
    Evidence,
    GoldItem,
    default_gold_path,
    load_gold,
    validate_gold,
)

ROOT = Path(__file__).resolve().parents[1]
EVALS = ROOT / "evals"
GOLD_FILES = sorted(EVALS.glob("gold*.jsonl"))


@pytest.fixture(scope="module")
def corpus_texts() -> dict[str, str]:
    return {d.doc_id: d.text for d in load_corpus(ROOT / "corpus").documents}


@pytest.mark.parametrize("path", GOLD_FILES, ids=[p.name for p in GOLD_FILES])
def test_gold_file_validates(path: Path, corpus_texts: dict[str, str]) -> None:
    items = load_gold(path)
    assert items, f"{path.name} has no items"
    assert validate_gold(items, corpus_texts) == []


def test_gold_set__composition_meets_the_evaluation_brief() -> None:
    items = load_gold(default_gold_path())
    assert len(items) >= 150
    assert len({item.id for item in items}) == len(items)
    types = Counter(item.type for item in items)
    assert set(types) == set(TYPES)
    assert types["unanswerable"] >= 15
    assert types["multi-document"] >= 5 and types["follow-up"] >= 9
    per_doc = Counter(ev.doc_id for item in items for ev in item.evidence)
    assert len(per_doc) == 5 and min(per_doc.values()) >= 25
    # The paid-posts trap: the 2016 figure alone, and set against the 2012 figure.
    quotes = [(ev.doc_id, ev.quote) for item in items for ev in item.evidence]
    assert any(d == "iriss-peer-support-roles" and "around 80 paid" in q for d, q in quotes)
    assert any(
        item.type == "multi-document"
        and any("around 37" in ev.quote for ev in item.evidence)
        and any("around 80" in ev.quote for ev in item.evidence)
        for item in items
    )


# --- validate_gold on tiny hand-made items ---------------------------------------------

DOCS = {
    "doc-a": (
        "Peer support workers need training before starting in post. They share lived experience."
    ),
    "doc-b": "Around 80 paid posts exist in Scotland. Supervision should be peer-led.",
}


def _item(**changes) -> GoldItem:
    base = GoldItem(
        id="t-001",
        question="What do new peer workers need first?",
        answer="Training before starting in post.",
        key_facts=("training before starting in post",),
        evidence=(Evidence("doc-a", "need training before starting in post"),),
        type="factoid",
    )
    return replace(base, **changes)


def _one_problem(items: list[GoldItem], fragment: str) -> None:
    problems = validate_gold(items, DOCS)
    assert len(problems) == 1, problems
    assert fragment in problems[0], problems


def test_valid_items_have_no_problems() -> None:
    follow = _item(
        id="t-002",
        type="follow-up",
        question="And who supervises them?",
        history=(
            {"role": "user", "content": "What do new peer workers need first?"},
            {"role": "assistant", "content": "Training before they start."},
        ),
        evidence=(Evidence("doc-b", "Supervision should be peer-led"),),
    )
    multi = _item(
        id="t-003",
        type="multi-document",
        evidence=(
            Evidence("doc-a", "They share lived experience"),
            Evidence("doc-b", "Around 80 paid posts"),
        ),
    )
    unans = _item(
        id="t-004", type="unanswerable", answer="The documents do not cover this.",
        key_facts=(), evidence=(), absent_terms=("pension",),
    )
    assert validate_gold([_item(), follow, multi, unans], DOCS) == []


def test_catches_non_verbatim_quote() -> None:
    item = _item(evidence=(Evidence("doc-a", "need training before they start in post"),))
    _one_problem([item], "not verbatim")


def test_quote_match_is_exact_not_case_or_space_insensitive() -> None:
    wrong_case, double_space = "Need training", "need  training"
    for quote in (wrong_case, double_space):
        _one_problem([_item(evidence=(Evidence("doc-a", quote),))], "not verbatim")


def test_catches_duplicate_id() -> None:
    _one_problem([_item(), _item()], "duplicate id")


def test_catches_unknown_type() -> None:
    _one_problem([_item(type="trivia")], "unknown type")


def test_catches_unknown_doc_id() -> None:
    _one_problem([_item(evidence=(Evidence("doc-z", "need training"),))], "unknown doc_id")


def test_catches_empty_question() -> None:
    _one_problem([_item(question="   ")], "empty question")


@pytest.mark.parametrize("facts", [(), ("a", "b", "c", "d", "e")])
def test_catches_key_fact_count_for_answerable(facts: tuple[str, ...]) -> None:
    _one_problem([_item(key_facts=facts)], "key facts")


def test_catches_answerable_without_evidence() -> None:
    _one_problem([_item(evidence=())], "without evidence")


def test_catches_absent_term_that_is_present() -> None:
    item = _item(
        type="unanswerable", answer="The documents do not cover this.",
        key_facts=(), evidence=(), absent_terms=("SCOTLAND",),
    )
    _one_problem([item], "absent term 'SCOTLAND' occurs in doc-b")


def test_expected_coverage__defaults_by_type_and_is_checked() -> None:
    unans = dict(type="unanswerable", answer="No figure is given.", key_facts=(), evidence=(),
                 absent_terms=("pension",))
    assert _item().coverage == "answered" and _item(**unans).coverage == "not_covered"
    partial = _item(**unans, expected_coverage="partial", missing="a pension figure")
    assert partial.coverage == "partial" and validate_gold([partial], DOCS) == []
    _one_problem([_item(expected_coverage="mostly")], "unknown expected_coverage 'mostly'")
    _one_problem([_item(**unans, expected_coverage="answered")], "expected to be answered")


def test_gold_set__holds_near_misses_and_practitioner_questions() -> None:
    items = load_gold(default_gold_path())
    unanswerable = [i for i in items if i.type == "unanswerable"]
    assert len(unanswerable) >= 22 + 60
    assert sum(i.coverage == "partial" for i in unanswerable) >= 30
    assert sum(i.type != "unanswerable" for i in items) >= 198 + 80


def test_catches_unanswerable_with_evidence_or_key_facts() -> None:
    base = dict(
        type="unanswerable", answer="The documents do not cover this.", absent_terms=("pension",)
    )
    _one_problem([_item(**base, key_facts=())], "with evidence")
    _one_problem([_item(**base, evidence=())], "with key facts")


def test_catches_follow_up_without_history() -> None:
    _one_problem([_item(type="follow-up")], "follow-up item without history")


@pytest.mark.parametrize(
    "history",
    [
        ({"role": "user"},),
        ({"role": "system", "content": "hi"},),
        ({"speaker": "user", "content": "hi"},),
        ("just a string",),
    ],
)
def test_catches_malformed_history(history: tuple) -> None:
    _one_problem([_item(type="follow-up", history=history)], "history[0]")


def test_catches_multi_document_with_one_document() -> None:
    item = _item(
        type="multi-document",
        evidence=(
            Evidence("doc-a", "need training"),
            Evidence("doc-a", "They share lived experience"),
        ),
    )
    _one_problem([item], "fewer than 2 documents")


def test_types_constant() -> None:
    assert TYPES == (
        "factoid", "list", "explanatory", "multi-document", "follow-up", "unanswerable"
    )


# --- load_gold -----------------------------------------------------------------------

def _line(**changes) -> str:
    obj = {
        "id": "t-001", "question": "Q?", "answer": "A.", "key_facts": ["a fact"],
        "evidence": [{"doc_id": "doc-a", "quote": "need training"}],
        "type": "factoid",
        "history": [],
    }
    obj.update(changes)
    return json.dumps(obj)


def test_load_gold_reads_items(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    second = _line(id="t-002", absent_terms=["pension"])
    path.write_text(_line() + "\n\n" + second + "\n", encoding="utf-8")
    items = load_gold(path)
    assert [i.id for i in items] == ["t-001", "t-002"]
    assert items[0].evidence == (Evidence("doc-a", "need training"),)
    assert items[0].key_facts == ("a fact",)
    assert items[1].absent_terms == ("pension",)


def test_load_gold_reports_file_and_line_on_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text(_line() + "\n{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"gold\.jsonl:2"):
        load_gold(path)


def test_load_gold_reports_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    obj = json.loads(_line())
    del obj["answer"]
    path.write_text(json.dumps(obj) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"gold\.jsonl:1: missing field\(s\) answer"):
        load_gold(path)


def test_load_gold_rejects_malformed_evidence(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text(_line(evidence=[{"doc": "doc-a"}]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"gold\.jsonl:1: evidence\[0\]"):
        load_gold(path)


def test_load_gold_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_gold(tmp_path / "nope.jsonl")


def test_default_gold_path() -> None:
    assert default_gold_path() == ROOT / "evals" / "gold.jsonl"
