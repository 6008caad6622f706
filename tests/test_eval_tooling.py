"""Evaluator tooling: the gold format documented, validated, enforced; a legend for the figures."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from peerqa import Assistant
from peerqa.cli import main
from peerqa.evaluation import load_gold, metric_names, render, run_eval
from peerqa.evaluation.gold import OPTIONAL_FIELDS, REQUIRED_FIELDS, TYPES, check_gold_file
from peerqa.evaluation.report import bar_chart
from peerqa.evaluation.tables import GUARANTEED_EXTRACTIVE, LOWER_IS_BETTER, format_table, legend
from peerqa.types import Answer, Chunk, Document, Passage
from tests.helpers import REPO, TINY

QUOTE = "Service users said that peer workers gave them hope."
GOOD = {"id": "t-1", "question": "What did service users say peer workers gave them?",
        "answer": "Hope.", "key_facts": ["peer workers gave hope"], "type": "factoid",
        "evidence": [{"doc_id": "pilot-notes", "quote": QUOTE}], "history": []}


def _gold(path: Path, *lines: dict[str, Any] | str) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
                    encoding="utf-8")
    return path


def _texts() -> dict[str, str]:
    return {d.doc_id: d.text for d in Assistant(corpus_dir=TINY).documents}


# --------------------------------------------------------------------------- the format, documented


def test_evals_readme__documents_every_field_and_shows_a_valid_item_of_each_type(
    tmp_path: Path,
):
    readme = (REPO / "evals" / "README.md").read_text(encoding="utf-8")
    for name in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS):
        assert re.search(rf"^\| `{name}` \|", readme, re.M), f"{name} is not documented"
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", readme, re.S)]
    assert {e["type"] for e in examples} == set(TYPES)
    assert any(e.get("expected_coverage") == "partial" and e.get("missing") for e in examples)
    path = _gold(tmp_path / "readme-examples.jsonl", *examples)
    documents = {d.doc_id: d.text for d in Assistant().documents}
    items, problems = check_gold_file(path, documents)
    assert problems == [] and len(items) == len(examples)


# --------------------------------------------------------------------------- validate


def test_check_gold_file__lists_every_problem_not_only_the_first(tmp_path: Path):
    bad = [
        GOOD,
        {**GOOD, "id": "t-2", "evidence": [{"doc_id": "no-such-doc", "quote": QUOTE}]},
        {**GOOD, "id": "t-3", "evidence": [{"doc_id": "pilot-notes", "quote": "gave them joy"}]},
        "{not json",
        {k: v for k, v in GOOD.items() if k != "answer"} | {"id": "t-5"},
        {**GOOD, "id": "t-6", "key_facts": "hope"},
        {**GOOD, "id": "t-7", "expected_coverge": "partial"},
        {**GOOD, "id": "t-1"},
    ]
    items, problems = check_gold_file(_gold(tmp_path / "g.jsonl", *bad), _texts())
    text = "\n".join(problems)
    assert "t-2: evidence[0] has unknown doc_id 'no-such-doc'" in text
    assert "t-3: evidence[0] quote is not verbatim in pilot-notes" in text
    assert "g.jsonl:4: not valid JSON" in text
    assert "g.jsonl:5: missing field(s) answer" in text
    assert "g.jsonl:6: 'key_facts' must be a list of strings" in text
    assert "g.jsonl:7: unknown field(s) expected_coverge" in text
    assert "t-1: duplicate id" in text
    assert len(problems) == 7 and len(items) == 5


def test_cli_eval_validate__exit_0_for_a_valid_file_and_2_with_the_list_of_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    good = _gold(tmp_path / "good.jsonl", GOOD)
    assert main(["eval", "validate", str(good), "--corpus", str(TINY)]) == 0
    assert "1 items, valid against the corpus" in capsys.readouterr().err

    bad = _gold(tmp_path / "bad.jsonl", GOOD,
                {**GOOD, "id": "t-2", "evidence": [{"doc_id": "fife", "quote": QUOTE}]})
    assert main(["eval", "validate", str(bad), "--corpus", str(TINY)]) == 2
    out = capsys.readouterr()
    assert out.out.splitlines() == ["t-2: evidence[0] has unknown doc_id 'fife'"]
    assert "1 problem(s)" in out.err

    assert main(["eval", "validate", str(bad), "--corpus", str(TINY), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] is False and data["items"] == 2 and len(data["problems"]) == 1


def test_cli_eval__refuses_a_gold_file_that_does_not_match_the_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # The bundled gold set against another corpus: every doc_id unknown, every quote missing.
    code = main(["eval", "--corpus", str(TINY), "--index-dir", str(tmp_path / "idx"), "-q"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("peerqa: error: the gold file")
    assert "peerqa eval validate" in err[0] and "--allow-mismatch" in err[0]
    assert not (tmp_path / "idx").exists()  # refused before any index work


def test_cli_eval__allow_mismatch_evaluates_and_summarises_the_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    lines = [GOOD] + [{**GOOD, "id": f"m-{n}", "evidence": [{"doc_id": "elsewhere",
                                                            "quote": "x"}]} for n in range(14)]
    gold = _gold(tmp_path / "gold.jsonl", *lines)
    code = main(["eval", "--corpus", str(TINY), "--index-dir", str(tmp_path / "idx"), "-q",
                 "--gold", str(gold), "--allow-mismatch"])
    assert code == 0
    table = capsys.readouterr().out
    notes = [line for line in table.splitlines() if line.startswith("note: gold:")]
    assert len(notes) == 11 and "4 more problem(s)" in notes[-1]


# --------------------------------------------------------------------------- the legend


def test_legend__every_metric_has_one_line():
    for k in (3, 5, 10):
        missing = [n for n in ["items", "answerable", "failed", *metric_names(k)] if not legend(n)]
        assert missing == []
    assert all("\n" not in legend(n) for n in metric_names(5))


class _Answerer:
    """A stand-in system: opening its index takes a while; each answer after is instant."""

    def __init__(self, assistant: Assistant, open_delay: float) -> None:
        self._assistant = assistant
        self._delay = open_delay
        self.opened = False

    @property
    def documents(self) -> list[Document]:
        return self._assistant.documents

    @property
    def chunks(self) -> list[Chunk]:
        return self._assistant.chunks

    @property
    def embedder(self) -> Any:
        return self._assistant.embedder

    def ask(self, question: str, history: Sequence[Mapping[str, Any]] | None = None) -> Answer:
        if not self.opened:
            time.sleep(self._delay)
            self.opened = True
        return self._assistant.ask(question, history=history)

    def search(self, query: str, k: int | None = None, *,
               history: Sequence[Mapping[str, Any]] | None = None) -> list[Passage]:
        return self._assistant.search(query, k, history=history)


@pytest.fixture
def tiny_run(tiny_fake: Assistant, tmp_path: Path):
    items = load_gold(_gold(tmp_path / "g.jsonl", GOOD, {
        "id": "t-u", "question": "What bonus do astronauts on Mars receive?", "answer": "None.",
        "key_facts": [], "evidence": [], "type": "unanswerable", "absent_terms": ["astronaut"]}))
    system = _Answerer(tiny_fake, open_delay=1.0)
    return run_eval(system, items, k=3)


def test_run_eval__opening_the_index_is_not_in_the_first_items_latency(tiny_run):
    assert tiny_run.open_seconds >= 1.0
    assert tiny_run.items[0].latency_ms < 500  # the 1 s of opening went to open_seconds
    assert "not counted in latency" in format_table(tiny_run)


def test_table__legend_marks_guaranteed_and_lower_is_better_figures(tiny_run):
    assert tiny_run.mode == "extractive"
    table = format_table(tiny_run)
    rows = {line.split("  ")[0].strip(): line for line in table.splitlines()}
    assert "quote fidelity *" in rows and "citation recall *" in rows
    assert "wrongful abstention ↓" in rows and "hit@1" in rows
    legend_lines = table[table.index("Legend:"):].splitlines()
    assert any(line.strip().startswith("MRR") or "mrr@10" in line for line in legend_lines)
    assert "1.0 by construction in extractive mode" in table
    for name in metric_names(3):
        assert legend(name) in table


def test_report__carries_the_legend_charts_lower_is_better_and_names_its_own_targets(tiny_run):
    page = render(tiny_run)
    assert "What the figures mean" in page
    for name in metric_names(3):
        assert legend(name).replace("'", "&#x27;") in page
    assert "lower is better" in page and "wrongful abstention ↓" in page
    assert "by construction in extractive mode" in page
    assert "the issue" not in page.lower()  # targets are peerqa's own, named where defined
    assert "TARGETS</code> in <code>peerqa/evaluation/scoring.py" in page
    assert GUARANTEED_EXTRACTIVE and LOWER_IS_BETTER


def test_bar_chart__draws_lower_is_better_bars_apart():
    svg = bar_chart("t", [("hit", 0.8, None), ("wrong", 0.1, 0.05)], frozenset({"wrong"}))
    bars = re.findall(r'<rect [^>]*fill="([^"]+)"><title>([^<]+)</title>', svg)
    assert len({fill for fill, _ in bars}) == 2
    assert any("lower is better" in title for _, title in bars)
