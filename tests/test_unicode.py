"""Text in any Unicode form: folded the same way at index and query time; text no encoder can
take is a clear InputError, never a crash."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerqa import Assistant, InputError
from peerqa.chunking import chunk_document
from peerqa.text import fold, tokenize, words
from peerqa.types import Document
from tests.helpers import FakeEmbedder

SURROGATE = "How often is supervision \udce9 needed?"  # what an invalid byte in argv becomes


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


@pytest.mark.parametrize(("typed", "expected"), [
    ("café", ["cafe"]),
    ("résumé", ["resume"]),
    ("ﬁnance", ["finance"]),  # a ligature (NFKC)
    ("ＰＥＥＲ ２０２４", ["peer", "2024"]),  # full-width letters and digits (NFKC)
    ("Straße", ["strasse"]),  # case folding
    ("workers’ rights", ["workers", "rights"]),
])
def test_words__every_form_of_a_word_gives_the_same_tokens(typed, expected):
    assert words(nfc(typed)) == words(nfd(typed)) == expected
    assert tokenize(nfc(typed)) == tokenize(nfd(typed)) == tokenize(" ".join(expected))


def test_fold__leaves_plain_text_as_it_was_but_lower_case():
    assert fold("Peer Support Workers") == "peer support workers"


def _fold_by_character(text: str) -> str:
    """fold as first written: every combining mark dropped one character at a time."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    text = "".join(c for c in text if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", text).casefold()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fold__equals_dropping_combining_marks_one_character_at_a_time(text):
    assert fold(text) == (text.lower() if text.isascii() else _fold_by_character(text))


@pytest.fixture
def accented(tiny_corpus) -> Assistant:
    """The tiny corpus with one document written composed (NFC) and one decomposed (NFD)."""
    (tiny_corpus / "cafe.md").write_text(
        nfc("# The peer café\n\nThe résumé café for peer workers meets every Thursday.\n"),
        encoding="utf-8")
    (tiny_corpus / "naive.md").write_text(
        nfd("# Naïve questions\n\nA naïve question from a new coördinator is always welcome.\n"),
        encoding="utf-8")
    a = Assistant(corpus_dir=tiny_corpus, index_dir=tiny_corpus.parent / "accented-index",
                  embedder=FakeEmbedder())
    a.index()
    return a


def test_search__nfc_nfd_and_unaccented_queries_find_the_same_passages(accented):
    for query, doc in (("résumé café", "cafe"), ("naïve coördinator", "naive")):
        found = [[p.chunk_id for p in accented.search(q, k=3)]
                 for q in (nfc(query), nfd(query), fold(query))]
        assert found[0] == found[1] == found[2], query
        assert accented.search(nfd(query), k=1)[0].doc_id == doc


def test_search__quotes_stay_verbatim_in_the_documents_own_form(accented):
    passage = accented.search(nfc("naïve coördinator"), k=1)[0]
    doc = accented.document(passage.doc_id)
    assert doc.text[passage.start:passage.end] == passage.text
    assert nfd("coördinator") in passage.text  # stored decomposed, shown decomposed


def test_search__nfc_and_nfd_questions_agree_with_the_local_model_too(assistant):
    question = "What does the international scoping review say about peer workers’ rôle?"
    a = [p.chunk_id for p in assistant.search(nfc(question), k=5)]
    b = [p.chunk_id for p in assistant.search(nfd(question), k=5)]
    assert a == b


@pytest.mark.parametrize("call", [
    lambda a: a.ask(SURROGATE),
    lambda a: a.search(SURROGATE),
    lambda a: list(a.stream(SURROGATE)),
    lambda a: a.ask("What training?", history=[{"role": "user", "content": SURROGATE}]),
    lambda a: a.ask("What training?", doc_ids=["pilot-notes\udcff"]),
], ids=["ask", "search", "stream", "history", "filter"])
def test_unencodable_text__is_an_input_error_that_says_what_to_do(tiny_fake, call):
    with pytest.raises(InputError, match="not text at character") as info:
        call(tiny_fake)
    assert "UTF-8" in str(info.value)
    str(info.value).encode("utf-8")  # the message itself can be printed anywhere


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=600))
def test_property__any_unicode_chunks_exactly_and_tokenizes_alike_in_every_normal_form(text):
    doc = Document(doc_id="d", title="T", text=text, path="d.md", sha256="0")
    for c in chunk_document(doc, target_words=20, max_words=30):
        assert text[c.start : c.end] == c.text
    assert tokenize(nfc(text)) == tokenize(nfd(text)) == tokenize(fold(text))
