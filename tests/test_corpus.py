from __future__ import annotations

import json
from pathlib import Path

import pytest

from peerqa import CorpusError, CorpusNotFoundError, load_corpus
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
