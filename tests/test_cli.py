from __future__ import annotations

import json
import os
import shutil
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


def test_cli_docs__lists_every_skipped_file_with_its_reason_and_never_hangs(tiny_corpus, tmp_path):
    os.mkfifo(tiny_corpus / "fifo.txt")
    (tiny_corpus / "passwd.txt").symlink_to("/etc/passwd")
    (tiny_corpus / "sub.md").mkdir()
    (tiny_corpus / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tiny_corpus / "late-nul.txt").write_bytes(b"Peer text. " * 1000 + b"\x00")
    r = _peerqa("docs", "--corpus", str(tiny_corpus), index_dir=tmp_path / "idx", timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 3 and "root:" not in r.stdout
    for line in ("skipped fifo.txt: not a regular file (a named pipe)",
                 "skipped passwd.txt: a link to a file outside the corpus folder",
                 "skipped sub.md: a folder, not a file",
                 "skipped .DS_Store: hidden or system file",
                 "skipped late-nul.txt: binary file (a NUL byte at byte 11000)"):
        assert line in r.stderr, line


def test_cli_ask__invalid_bytes_in_the_question_are_a_one_line_error(corpus_index_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERQA_")}
    env["PEERQA_INDEX_DIR"] = str(corpus_index_dir)
    for question in (b"caf\xe9 supervision?", b"\xff\xfe peer workers"):
        r = subprocess.run([sys.executable, "-m", "peerqa", "ask", question],
                           capture_output=True, env=env, timeout=180)
        err = r.stderr.decode("utf-8", "replace")
        assert r.returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "not text at character" in lines[0], err
        assert "Traceback" not in err and r.stdout == b""


def test_cli_ask__a_reader_that_stops_early_ends_it_quietly(corpus_index_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERQA_")}
    env["PEERQA_INDEX_DIR"] = str(corpus_index_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "peerqa", "ask", "What training do peer workers need?"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    proc.stdout.close()  # `| head` that has already gone
    try:
        err = proc.stderr.read().decode()
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception" not in err


def test_cli__a_damaged_index_is_repaired_with_one_line_and_no_panic(corpus_index_dir, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(corpus_index_dir, index)
    live = json.loads((index / "CURRENT").read_text())["generation"]
    with open(index / "generations" / live / "chroma" / "chroma.sqlite3", "r+b") as f:
        f.seek(4096)  # SQLite's second page: Chroma's Rust side panics on it
        f.write(b"\xa5" * 4096)
    # Every command checks the index first (as `peerqa index` does) and rebuilds it if damaged.
    r = _peerqa("search", "supervision", "--json", "-q", index_dir=index)
    assert r.returncode == 0 and json.loads(r.stdout), r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("peerqa: the index was damaged (chroma/"), lines
    assert lines[0].endswith("; rebuilt it")
    assert "panicked" not in r.stderr and "Traceback" not in r.stderr
    again = _peerqa("index", index_dir=index)
    assert again.returncode == 0 and "Reused index" in again.stdout, again.stderr
    assert "damaged" not in again.stderr
