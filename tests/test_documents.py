"""Practitioners' own PDF and Word files in a corpus folder: read, indexed, cited with pages.

The files are written at test time (tests/helpers.py: a PDF by hand, a .docx with python-docx).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from peerqa import Assistant, load_corpus
from peerqa.render import answer_html, answer_markdown, format_answer, format_passage
from tests.helpers import FakeEmbedder, write_docx, write_pdf

EXTRA = "needs the optional extra: pip install 'peerqa[documents]'"
needs_extra = pytest.mark.skipif(
    importlib.util.find_spec("pypdf") is None or importlib.util.find_spec("docx") is None,
    reason=EXTRA,
)

NIGHT = "Peer workers on night shifts receive a weekly debrief with the ward manager."
PAGES = [
    ["Supporting peer workers in acute wards", "This guide sets out how wards welcome a new",
     "peer worker and what the first month looks like."],
    ["Induction covers the ward routine, safeguarding and record keeping.",
     "Each new peer worker shadows an experienced colleague for two weeks."],
    [NIGHT, "The debrief lasts thirty minutes and is protected time."],
]


def _assistant(corpus: Path, tmp_path: Path, name: str = "idx") -> Assistant:
    return Assistant(corpus_dir=corpus, index_dir=tmp_path / name, embedder=FakeEmbedder())


@needs_extra
def test_pdf__indexed_beside_text_files_and_cited_verbatim_with_its_page(tiny_corpus, tmp_path):
    write_pdf(tiny_corpus / "acute-wards.pdf", PAGES, title="Acute ward peer work guide")
    assistant = _assistant(tiny_corpus, tmp_path)
    doc = assistant.document("acute-wards")
    assert doc.title == "Acute ward peer work guide"
    assert len(doc.page_starts) == 3

    from pypdf import PdfReader

    page3 = PdfReader(tiny_corpus / "acute-wards.pdf").pages[2].extract_text()
    assert doc.text[doc.page_starts[2]:].startswith(page3.strip())  # stored as extracted

    top = assistant.search("night shifts weekly debrief ward manager", k=3)[0]
    assert (top.doc_id, top.page) == ("acute-wards", 3)
    assert doc.text[top.start:top.end] == top.text and NIGHT in top.text

    answer = assistant.ask("How often do peer workers on night shifts get a debrief?")
    cited = [c for c in answer.citations if c.doc_id == "acute-wards"]
    assert cited and {c.page for c in cited} == {3}
    assert "page 3, characters" in format_answer(answer)
    assert "page 3, characters" in answer_markdown(answer)
    assert "page 3 · " in answer_html(answer, {doc.doc_id: doc}, "1")  # the card's location
    assert "page 3, characters" in format_passage(1, top)
    text_passages = assistant.search("supervision from someone who understands peer values")
    assert text_passages[0].doc_id == "training-guide" and text_passages[0].page is None


@needs_extra
def test_pdf__passages_never_cross_a_page_break(tiny_corpus, tmp_path):
    write_pdf(tiny_corpus / "acute-wards.pdf", PAGES)
    assistant = _assistant(tiny_corpus, tmp_path)
    assistant.index()
    doc = assistant.document("acute-wards")
    chunks = [c for c in assistant.chunks if c.doc_id == "acute-wards"]
    assert len(chunks) == 3  # a short guide of three pages: one passage per page
    for c in chunks:
        page = doc.page_at(c.start)
        assert page == doc.page_at(c.end - 1)
        assert doc.text[c.start : c.end] == c.text


@needs_extra
def test_pdf_title__from_metadata_else_its_first_line(tmp_path):
    write_pdf(tmp_path / "a.pdf", PAGES, title="Microsoft Word - draft3.docx")
    write_pdf(tmp_path / "b.pdf", [["Recruiting peer workers: a checklist", "Advertise widely."]],
              title="Recruitment checklist")
    titles = {d.doc_id: d.title for d in load_corpus(tmp_path).documents}
    assert titles == {"a": "Supporting peer workers in acute wards",
                      "b": "Recruitment checklist"}


@needs_extra
def test_docx__headings_become_sections_and_the_title_comes_from_its_properties(
    tiny_corpus, tmp_path
):
    write_docx(tiny_corpus / "peer-roles.docx", [
        ("heading1", "Peer roles in community teams"),
        ("para", "Peer workers share their lived experience of recovery with people they "
                 "support."),
        ("heading2", "Rostering"),
        ("para", "Rotas for peer workers are agreed a month ahead with the team leader."),
        ("table", "Role|Hours per week;Peer worker|30"),
    ], title="Community peer roles")
    write_docx(tiny_corpus / "untitled.docx", [
        ("heading1", "Welcome pack for volunteers"),
        ("para", "Volunteers receive a welcome pack in their first week."),
    ])
    assistant = _assistant(tiny_corpus, tmp_path)
    roles = assistant.document("peer-roles")
    assert roles.title == "Community peer roles"
    assert assistant.document("untitled").title == "Welcome pack for volunteers"
    assert "Peer worker | 30" in roles.text and roles.page_starts == ()
    top = assistant.search("rotas agreed a month ahead with the team leader", k=2)[0]
    assert top.doc_id == "peer-roles" and top.section == "Rostering" and top.page is None
    assert roles.text[top.start : top.end] == top.text


@needs_extra
def test_unusable_pdf_and_word_files__are_skipped_with_a_reason(tiny_corpus):
    from pypdf import PdfReader, PdfWriter

    plain = write_pdf(tiny_corpus / "plain.pdf", PAGES)
    for name, user in (("locked.pdf", "secret"), ("owner-only.pdf", "")):
        writer = PdfWriter(clone_from=PdfReader(plain))
        writer.encrypt(user_password=user, owner_password="owner", algorithm="RC4-128")
        writer.write(tiny_corpus / name)
    plain.unlink()
    write_pdf(tiny_corpus / "scanned.pdf", [[], []])
    (tiny_corpus / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Cat")
    (tiny_corpus / "corrupt.docx").write_bytes(b"PK\x03\x04 not a zip archive")
    (tiny_corpus / "protected.docx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)
    corpus = load_corpus(tiny_corpus)
    reasons = {s.path: s.reason for s in corpus.skipped}
    assert "encrypted PDF" in reasons["locked.pdf"]
    assert "no text layer" in reasons["scanned.pdf"] and "OCR" in reasons["scanned.pdf"]
    assert "not a readable PDF" in reasons["corrupt.pdf"]
    assert "not a readable Word file" in reasons["corrupt.docx"]
    assert "password-protected" in reasons["protected.docx"]
    # Encrypted with an owner password only: it opens without one, so it is read.
    assert NIGHT in corpus.get("owner-only").text
    assert {d.doc_id for d in corpus.documents} >= {"training-guide", "owner-only"}


def test_without_the_documents_extra__pdf_and_word_files_are_skipped_naming_it(
    tiny_corpus, monkeypatch
):
    (tiny_corpus / "guide.pdf").write_bytes(b"%PDF-1.4\n")
    (tiny_corpus / "roles.docx").write_bytes(b"PK\x03\x04")
    for module in ("pypdf", "pypdf.errors", "docx", "docx.opc.exceptions"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    reasons = {s.path: s.reason for s in load_corpus(tiny_corpus).skipped}
    assert "pip install 'peerqa[documents]'" in reasons["guide.pdf"]
    assert "pip install 'peerqa[documents]'" in reasons["roles.docx"]


@needs_extra
def test_changed_pdf__rebuilds_the_index_and_cites_the_new_text(tiny_corpus, tmp_path):
    path = write_pdf(tiny_corpus / "acute-wards.pdf", PAGES)
    assert _assistant(tiny_corpus, tmp_path).index().built
    assert not _assistant(tiny_corpus, tmp_path).index().built  # unchanged: reused
    changed = [*PAGES[:2], ["Night-shift peer workers now meet the ward manager every day."]]
    write_pdf(path, changed)
    again = _assistant(tiny_corpus, tmp_path)
    assert again.index().built
    top = again.search("night shift ward manager", k=1)[0]
    assert "every day" in top.text and top.page == 3
    assert again.document("acute-wards").text[top.start : top.end] == top.text


@needs_extra
def test_cli__indexes_a_folder_with_a_pdf_and_shows_its_page(tiny_corpus, tmp_path):
    write_pdf(tiny_corpus / "acute-wards.pdf", PAGES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERQA_")}
    env["PEERQA_INDEX_DIR"] = str(tmp_path / "cli-idx")

    def peerqa(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "peerqa", *args, "--corpus",
                               str(tiny_corpus)], capture_output=True, text=True, env=env,
                              timeout=300)

    found = peerqa("search", "night shifts weekly debrief", "-k", "1")  # builds the index
    assert found.returncode == 0, found.stderr
    assert "[acute-wards, page 3, characters" in found.stdout
    assert "skipped" not in found.stderr


def test_oversized_pdf__is_skipped_before_it_is_read(tiny_corpus, monkeypatch):
    from peerqa import readers

    (tiny_corpus / "huge.pdf").write_bytes(b"%PDF-1.4\n" + b"0" * 4096)
    monkeypatch.setattr(readers, "MAX_BYTES", 1024)  # the size is checked before any reading
    reasons = {s.path: s.reason for s in load_corpus(tiny_corpus).skipped}
    assert reasons["huge.pdf"].startswith("larger than")


def test_corpus_fingerprint__changes_when_only_a_pdfs_page_breaks_move():
    import dataclasses
    import hashlib

    from peerqa import Corpus, Document

    text = "Induction covers the ward routine.\nNight shifts end with a debrief.\n"
    doc = Document(doc_id="guide", title="Guide", text=text, path="guide.pdf", sha256="abc",
                   page_starts=(0, 35))
    moved = dataclasses.replace(doc, page_starts=(0, 20))
    plain = dataclasses.replace(doc, page_starts=())
    prints = {Corpus(Path("."), (d,)).fingerprint for d in (doc, moved, plain)}
    assert len(prints) == 3
    # An unpaged document hashes as before pages existed: no index is rebuilt for nothing.
    before = hashlib.sha256(b"guide\0abc\0Guide\0()\n").hexdigest()
    assert Corpus(Path("."), (plain,)).fingerprint == before
