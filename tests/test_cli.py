from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _peerqa(*args: str, index_dir, env_extra=None, timeout: float = 180):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERQA_")}
    env.pop("OPENAI_API_KEY", None)
    env["PEERQA_INDEX_DIR"] = str(index_dir)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "peerqa", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def test_cli_ask__prints_answer_and_numbered_sources(corpus_index_dir):
    r = _peerqa("ask", "What training do peer workers need?", index_dir=corpus_index_dir)
    assert r.returncode == 0, r.stderr
    assert "[1]" in r.stdout and "Sources:" in r.stdout
    assert "characters" in r.stdout


def test_cli_ask_json__has_the_api_fields(corpus_index_dir, assistant):
    r = _peerqa("ask", "What training do peer workers need?", "--json", index_dir=corpus_index_dir)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data) >= {"text", "citations", "abstained", "coverage", "missing", "conflicts",
                         "parts"}
    assert data["coverage"] in ("answered", "partial", "not_covered")
    assert {p["kind"] for p in data["parts"]} >= {"lead", "quote"}
    c = data["citations"][0]
    assert set(c) >= {"number", "doc_id", "title", "section", "text", "start", "end", "score"}
    assert data == assistant.ask("What training do peer workers need?").to_dict()


def test_cli_search_json__filters_documents(corpus_index_dir):
    r = _peerqa("search", "supervision", "-k", "3", "--docs", "fife-scoping-review", "--json",
                index_dir=corpus_index_dir)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert len(data) == 3 and {p["doc_id"] for p in data} == {"fife-scoping-review"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ask", "   "), "question is empty"),
        (("search", "x", "--docs", "nope"), "unknown document id"),
        (("ask", "Why?", "--corpus", "/nonexistent/folder"), "does not exist"),
    ],
)
def test_cli__errors_are_one_line_with_nonzero_exit(corpus_index_dir, args, message):
    r = _peerqa(*args, index_dir=corpus_index_dir)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("peerqa: error:") and message in lines[0]
    assert "Traceback" not in r.stderr


def test_cli_index__shows_progress_and_reports_skipped_files(tiny_corpus, tmp_path):
    (tiny_corpus / "broken.txt").write_bytes(b"\xff\xfe\xfa not utf-8")
    r = _peerqa("index", "--corpus", str(tiny_corpus), index_dir=tmp_path / "idx")
    assert r.returncode == 0, r.stderr
    assert "Built index" in r.stdout
    assert "Embedding chunks" in r.stderr
    assert "skipped broken.txt: not UTF-8" in r.stderr
    again = _peerqa("index", "--corpus", str(tiny_corpus), "--json", index_dir=tmp_path / "idx")
    assert json.loads(again.stdout)["built"] is False
