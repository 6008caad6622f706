"""Structured answers for programs: Answer.to_dict(), the CLI's --json output and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from peerqa import Answer, Assistant, Citation, Conflict, ConflictSide, Passage
from peerqa.render import answer_markdown

FIELDS = ["text", "coverage", "missing", "citations", "conflicts"]
CITATION_FIELDS = ["number", "doc_id", "title", "section", "year", "page", "text", "start", "end",
                   "relevance"]


def _peerqa(*args: str, index_dir: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERQA_")}
    env.pop("OPENAI_API_KEY", None)
    env["PEERQA_INDEX_DIR"] = str(index_dir)
    return subprocess.run([sys.executable, "-m", "peerqa", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_to_dict__leads_with_the_documented_fields_and_is_json_ready():
    citation = Citation(number=1, doc_id="d", title="Doc", section="S", text="Peer work.",
                        start=10, end=20, score=2.5, year=2016, relevance=0.8, page=3,
                        highlights=((10, 20),))
    conflict = Conflict("paid posts", (ConflictSide(1, "Peer work.", 10, 20, "around 37",
                                                    "2012"),))
    answer = Answer(question="q", text="Peer work. [1]", citations=[citation], abstained=False,
                    coverage="partial", missing="the cost", conflicts=[conflict],
                    passages=[Passage("d", "Doc", "S", "Peer work.", 10, 20, 2.5)])
    data = answer.to_dict()
    assert list(data)[:5] == FIELDS
    assert list(data["citations"][0])[:10] == CITATION_FIELDS
    assert data["citations"][0]["page"] == 3 and data["citations"][0]["highlights"] == [[10, 20]]
    assert data["coverage"] == "partial" and data["missing"] == "the cost"
    assert data["conflicts"][0]["sides"][0]["value"] == "around 37"
    assert data["abstained"] is False and data["passages"][0]["doc_id"] == "d"
    assert json.loads(json.dumps(data)) == data  # plain JSON values only


def test_to_dict__and_markdown_give_the_same_answer(tiny_fake: Assistant):
    answer = tiny_fake.ask("What training do peer workers need?")
    data = answer.to_dict()
    markdown = answer_markdown(answer)
    assert data["text"] == answer.text and data["citations"]
    for c in data["citations"]:
        assert tiny_fake.document(c["doc_id"]).text[c["start"] : c["end"]] == c["text"]
        assert f"**[{c['number']}]**" in markdown
        assert f"characters {c['start']}–{c['end']}" in markdown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ask", "   "), "the question is empty"),
        (("search", "supervision", "--docs", "nope"), "unknown document id"),
        (("search", "supervision", "-k", "0"), "k must be a whole number"),
        (("ask", "Why?", "--corpus", "/nonexistent/folder"), "does not exist"),
        (("docs", "--corpus", "/nonexistent/folder"), "does not exist"),
        (("ask",), "required: question"),
        (("search", "x", "-k", "many"), "invalid int value"),
    ],
)
def test_cli_json__bad_input_is_a_json_error_on_stderr_with_exit_2(
    corpus_index_dir: Path, args: tuple[str, ...], message: str
):
    r = _peerqa(*args, "--json", index_dir=corpus_index_dir)
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    error = json.loads(line)
    assert set(error) == {"error", "hint"} and message in error["error"] and error["hint"]


def test_cli__missing_corpus_folder_is_bad_input_also_without_json(tmp_path: Path):
    r = _peerqa("ask", "Why?", "--corpus", str(tmp_path / "missing"), index_dir=tmp_path / "i")
    assert r.returncode == 2
    assert r.stderr.startswith("peerqa: error: corpus folder") and "Traceback" not in r.stderr


def test_cli_json__missing_corpus_error_hint_says_how_to_fix(tmp_path: Path):
    r = _peerqa("index", "--corpus", str(tmp_path / "missing"), "--json",
                index_dir=tmp_path / "i")
    error = json.loads(r.stderr)
    assert r.returncode == 2 and "PEERQA_CORPUS_DIR" in error["hint"]
