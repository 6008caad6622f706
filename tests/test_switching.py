"""A long-running Assistant (the app) moves to a newer index generation between questions,
never in the middle of one, and never answers from a generation that is gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from peerqa import Assistant
from peerqa.retrieval import Retriever
from tests.helpers import FakeEmbedder

PRISON = "# Prison peer teams\n\nPrison peer teams meet every Wednesday with their supervisor.\n"
QUESTION = "When do the prison peer teams meet?"


def _assistant(corpus: Path, index: Path) -> Assistant:
    return Assistant(corpus_dir=corpus, index_dir=index, embedder=FakeEmbedder())


def test_assistant__switches_between_questions_never_during_one(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    index = tmp_path / "index"
    app = _assistant(tiny_corpus, index)
    first = app.index().generation
    assert all(c.doc_id != "prison" for c in app.ask(QUESTION).citations)

    (tiny_corpus / "prison.md").write_text(PRISON, encoding="utf-8")
    rebuilt: list[str] = []
    search = Retriever.search

    def search_then_rebuild(self, *args, **kwargs):  # `peerqa index` runs mid-question
        hits = search(self, *args, **kwargs)
        if not rebuilt:
            rebuilt.append(_assistant(tiny_corpus, index).index().generation)
        return hits

    monkeypatch.setattr(Retriever, "search", search_then_rebuild)
    during = app.ask(QUESTION)
    assert rebuilt and rebuilt[0] != first
    assert all(c.doc_id != "prison" for c in during.citations)
    assert app.retriever.generation.name == first  # the question kept its generation
    monkeypatch.setattr(Retriever, "search", search)

    after = app.ask(QUESTION)  # the next question sees the new generation and its document
    assert app.retriever.generation.name == rebuilt[0]
    assert [c.doc_id for c in after.citations][:1] == ["prison"]
    doc = app.document("prison")
    assert all(doc.text[c.start:c.end] == c.text for c in after.citations if c.doc_id == "prison")


def test_assistant__follows_the_live_generation_after_old_ones_are_deleted(
    tiny_corpus: Path, tmp_path: Path
):
    index = tmp_path / "index"
    app = _assistant(tiny_corpus, index)
    first = app.index().generation
    assert app.search("supervision", k=1)
    builder = _assistant(tiny_corpus, index)
    names = [builder.index(rebuild=True).generation for _ in range(2)]
    assert not (index / "generations" / first).exists()  # pruned while the app had it open
    assert app.search("supervision", k=1)
    assert app.retriever.generation.name == names[-1]


def test_assistant__keeps_its_generation_when_the_new_one_is_for_other_documents(
    tiny_corpus: Path, tmp_path: Path
):
    index = tmp_path / "index"
    app = _assistant(tiny_corpus, index)
    first = app.index().generation
    other = tmp_path / "other-corpus"
    shutil.copytree(tiny_corpus, other)
    (other / "prison.md").write_text(PRISON, encoding="utf-8")
    # Built for the same index folder from a corpus this assistant does not have on disk.
    assert _assistant(other, index).index().built
    assert app.search("supervision", k=1)
    assert app.retriever.generation.name == first


def test_assistant__never_answers_from_an_index_that_was_deleted(tiny_corpus: Path, tmp_path: Path):
    index = tmp_path / "index"
    app = _assistant(tiny_corpus, index)
    first = app.index().generation
    assert app.search("supervision", k=1)
    (tiny_corpus / "pilot-notes.txt").unlink()  # a document taken down, and its index with it
    shutil.rmtree(index)
    passages = app.search("supervision", k=5)  # the app built a new index from what is left
    assert passages and app.retriever.generation.name != first
    assert all(p.doc_id != "pilot-notes" for p in passages)
    assert "pilot-notes" not in {d.doc_id for d in app.documents}
