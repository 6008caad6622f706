from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from peerqa import CorpusError, CorpusNotFoundError, load_corpus
from peerqa.corpus import MAX_FILE_BYTES, read_text, skip_reason
from peerqa.settings import bundled_corpus_dir

SOURCES = Path(__file__).resolve().parents[2] / "shared" / "corpus-sources"


def test_bundled_corpus__five_documents_with_manifest_metadata():
    corpus = load_corpus(bundled_corpus_dir())
    assert len(corpus.documents) == 5
    assert corpus.skipped == ()
    iriss = corpus.get("iriss-peer-support-roles")
    assert iriss.year == 2016 and iriss.organisation == "Iriss"
    fife = corpus.get("fife-scoping-review")
    assert fife.year is None and fife.year_label == "n.d."


@pytest.mark.skipif(not SOURCES.is_dir(), reason="shared/corpus-sources is not beside the repo")
def test_bundled_corpus__is_byte_for_byte_the_source_documents():
    corpus = load_corpus(bundled_corpus_dir())
    source_texts = {p.read_bytes() for p in SOURCES.glob("*.txt")}
    assert {Path(d.path).read_bytes() for d in corpus.documents} == source_texts
    for doc in corpus.documents:
        assert doc.text.encode("utf-8") == Path(doc.path).read_bytes()


def test_load__file_without_manifest_entry_takes_title_from_first_heading(tiny_corpus):
    corpus = load_corpus(tiny_corpus)
    titles = {d.doc_id: d.title for d in corpus.documents}
    assert titles["training-guide"] == "Peer Worker Training Guide"
    assert titles["pilot-notes"] == "Pilot notes from the coastal health board"


def test_load__missing_folder_says_how_to_fix(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="PEERQA_CORPUS_DIR"):
        load_corpus(tmp_path / "nope")


def test_load__empty_folder_is_an_error(tmp_path):
    with pytest.raises(CorpusError, match="no usable document"):
        load_corpus(tmp_path)


def test_load__bad_files_are_skipped_with_reasons(tiny_corpus):
    (tiny_corpus / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00data")
    (tiny_corpus / "latin1.txt").write_bytes("Caf\xe9 peer workers".encode("latin-1"))
    (tiny_corpus / "empty.md").write_text("")
    (tiny_corpus / "blank.txt").write_text("  \n\t\n")
    (tiny_corpus / "zz-copy.md").write_bytes((tiny_corpus / "training-guide.md").read_bytes())
    (tiny_corpus / "dangling.txt").symlink_to(tiny_corpus / "missing-target.txt")
    (tiny_corpus / "notes.xlsx").write_bytes(b"PK\x03\x04")
    corpus = load_corpus(tiny_corpus)
    reasons = {s.path: s.reason for s in corpus.skipped}
    assert "binary" in reasons["binary.txt"]
    assert "not UTF-8" in reasons["latin1.txt"]
    assert reasons["empty.md"] == "empty file"
    assert reasons["blank.txt"] == "empty file"
    assert "duplicate of" in reasons["zz-copy.md"]
    assert "unreadable" in reasons["dangling.txt"]
    assert reasons["notes.xlsx"] == "not a .txt, .md, .pdf or .docx file"
    assert len(corpus.documents) == 3


def test_load__folder_of_only_bad_files_lists_the_reasons(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(CorpusError, match="a.txt: binary"):
        load_corpus(tmp_path)


def test_load__malformed_manifest_is_a_clear_error(tiny_corpus):
    (tiny_corpus / "manifest.json").write_text("{not json")
    with pytest.raises(CorpusError, match="not a valid manifest"):
        load_corpus(tiny_corpus)


def test_load__manifest_sets_ids_and_metadata(tiny_corpus):
    (tiny_corpus / "manifest.json").write_text(json.dumps({"documents": [
        {"file": "pilot-notes.txt", "doc_id": "coastal", "title": "Coastal pilot", "year": 2020}
    ]}))
    doc = load_corpus(tiny_corpus).get("coastal")
    assert doc.title == "Coastal pilot" and doc.year == 2020


def test_load__crlf_text_is_kept_verbatim(tmp_path):
    raw = "# Title\r\n\r\nPeer workers need supervision.\r\n"
    (tmp_path / "crlf.md").write_bytes(raw.encode())
    assert load_corpus(tmp_path).documents[0].text == raw


# -- what the folder may hold: links, pipes, folders, hidden files, binary and huge files ------


def _load_within(directory: Path, seconds: float = 20):
    """load_corpus in a thread that must finish in time (a FIFO read would block forever)."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(load_corpus(directory)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "load_corpus hung"
    return result[0]


def test_load__links_outside_the_folder_are_skipped_by_resolved_path(tiny_corpus, tmp_path):
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("A secret about peer workers that must stay private.")
    (tiny_corpus / "passwd.txt").symlink_to("/etc/passwd")
    (tiny_corpus / "secret.md").symlink_to(outside / "secret.txt")
    (tiny_corpus / "sneaky.md").symlink_to(Path("..") / "private" / "secret.txt")
    (tiny_corpus / "outside-folder.md").symlink_to(outside)
    (tiny_corpus / "alias.md").symlink_to(tiny_corpus / "pilot-notes.txt")  # inside: allowed
    corpus = _load_within(tiny_corpus)
    reasons = {s.path: s.reason for s in corpus.skipped}
    for name in ("passwd.txt", "secret.md", "sneaky.md", "outside-folder.md"):
        assert reasons[name] == "a link to a file outside the corpus folder", name
    assert reasons["alias.md"] == "duplicate of pilot-notes.txt"  # the file keeps its place
    assert all("secret" not in d.text and "root:" not in d.text for d in corpus.documents)
    assert len(corpus.documents) == 3


def test_load__anything_not_a_regular_file_is_skipped_with_a_reason_and_never_read(tiny_corpus):
    os.mkfifo(tiny_corpus / "fifo.txt")
    (tiny_corpus / "sub.md").mkdir()
    (tiny_corpus / "archive").mkdir()
    (tiny_corpus / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tiny_corpus / ".notes.md").write_text("Hidden notes about peer workers.")
    (tiny_corpus / "Thumbs.db").write_bytes(b"\x00thumbs")
    corpus = _load_within(tiny_corpus)
    reasons = {s.path: s.reason for s in corpus.skipped}
    assert reasons["fifo.txt"] == "not a regular file (a named pipe)"
    assert reasons["sub.md"].startswith("a folder, not a file")
    assert reasons["archive"].startswith("a folder, not a file")
    assert reasons[".DS_Store"] == reasons[".notes.md"] == "hidden or system file"
    assert reasons["Thumbs.db"] == "hidden or system file"
    assert len(corpus.documents) == 3


def test_load__a_manifest_that_is_a_pipe_is_an_error_not_a_hang(tiny_corpus):
    os.mkfifo(tiny_corpus / "manifest.json")
    worker_error: list[BaseException] = []

    def load() -> None:
        try:
            load_corpus(tiny_corpus)
        except CorpusError as e:
            worker_error.append(e)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive() and worker_error
    assert "not a regular file" in str(worker_error[0])


def test_read_text__binary_is_found_anywhere_in_the_file(tmp_path):
    late_nul = tmp_path / "late.txt"
    late_nul.write_bytes(b"Peer workers need supervision. " * 400 + b"\x00tail")
    assert late_nul.stat().st_size > 8192
    with pytest.raises(CorpusError, match=r"binary file \(a NUL byte at byte 12400\)"):
        read_text(late_nul)
    controls = tmp_path / "controls.txt"
    controls.write_text("Peer support text. " * 10 + "\x1b\x07\x02" * 40)
    with pytest.raises(CorpusError, match="too many control characters"):
        read_text(controls)
    escape = tmp_path / "one-escape.txt"
    escape.write_text("Peer support text. " * 10 + "One stray \x1b escape.")
    assert read_text(escape).startswith("Peer support")


def test_read_text__oversized_file_is_refused_without_reading_it(tmp_path):
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as f:  # sparse: no disk space used
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(CorpusError, match="larger than 20 MiB"):
        read_text(huge)
    assert skip_reason(huge, tmp_path) is None  # the name and kind are fine; the size is not
