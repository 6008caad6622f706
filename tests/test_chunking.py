from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from peerqa import load_corpus
from peerqa.chunking import chunk_corpus, chunk_document, paragraphs
from peerqa.settings import bundled_corpus_dir
from peerqa.text import sentence_spans
from peerqa.types import Document

SIZES = {"target_words": 110, "max_words": 150}  # the settings' defaults


def _doc(text: str, doc_id: str = "d") -> Document:
    return Document(doc_id=doc_id, title="T", text=text, path="x", sha256="0")


def test_bundled_corpus__offsets_slice_documents_exactly_and_chunks_stay_short():
    corpus = load_corpus(bundled_corpus_dir())
    docs = {d.doc_id: d for d in corpus.documents}
    chunks = chunk_corpus(corpus.documents, **SIZES)
    assert len(chunks) > 150
    for c in chunks:
        assert docs[c.doc_id].text[c.start : c.end] == c.text
        assert 0 < c.n_words <= 150
        assert c.n_tokens > 0
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_bundled_corpus__sections_follow_headings_not_running_headers():
    corpus = load_corpus(bundled_corpus_dir())
    chunks = chunk_corpus(corpus.documents, **SIZES)
    sections = {c.section for c in chunks}
    assert not any(s.startswith("Evidence Brief: Peer Support Workers") for s in sections)
    assert "Main Findings" in sections  # plain-text heading (pilot evaluation)
    assert "What does this mean for the project? > Supporting Peer Support Workers" in sections
    assert any(s.startswith("What is the evidence for peer support roles?") for s in sections)
    assert not any(s == "Contents" for s in sections)


def test_bibliography_entry_is_its_own_unit_with_title_as_section():
    text = (
        "# Reading list\n\n## Implementation\n\n[First study](#) May 2019, J One\n\n"
        "Abstract of the first study about preparation.\n\n[Second study](#) 2020, J Two\n\n"
        "Abstract of the second study about supervision.\n"
    )
    chunks = chunk_document(_doc(text), **SIZES)
    assert [c.section for c in chunks] == ["Implementation > First study",
                                           "Implementation > Second study"]
    assert "second" not in chunks[0].text.lower()


def test_long_paragraph_is_cut_at_sentences_within_the_bound():
    sentence = "Peer workers bring lived experience to the team and share hope with others. "
    text = "## Section\n\n" + sentence * 40
    chunks = chunk_document(_doc(text), target_words=50, max_words=60)
    assert len(chunks) > 5
    for c in chunks:
        assert c.n_words <= 60
        assert c.text.endswith(".")


def test_sentence_spans__keep_abbreviations_and_split_bullets():
    text = "Training matters, e.g. boundaries. Supervision too.\n- First item here\n- Second item"
    spans = [text[a:b] for a, b in sentence_spans(text)]
    assert spans == ["Training matters, e.g. boundaries.", "Supervision too.",
                     "- First item here", "- Second item"]


def test_paragraphs__trim_white_space_and_keep_offsets():
    text = "\t\tIndented line\n\t\t\n\nNext one\n"
    pars = paragraphs(text)
    assert [p.text for p in pars] == ["Indented line", "Next one"]
    assert all(text[p.start : p.end] == p.text for p in pars)


_alphabet = st.sampled_from(list("abc def.\n\n#?-[]()\t’é") + ["Peer ", "## H\n", "[T](#) "])


@settings(max_examples=150, deadline=None)
@given(st.lists(_alphabet, max_size=400).map("".join))
def test_property__every_chunk_slices_its_document_exactly(text):
    for c in chunk_document(_doc(text), target_words=20, max_words=30):
        assert text[c.start : c.end] == c.text
        assert c.n_words <= 30
        assert c.text.strip() == c.text


def test_a_heading_that_is_a_sentence_is_also_its_section_s_text():
    # A review's recommendations set in bold as headings say something: a search must be able
    # to return them and a citation to point at them, so they are inside a chunk.
    text = (
        "# Review\n\n## What this means\n\n"
        "### **Agree outcomes with peer workers before the evaluation starts.**\n\n"
        "Agreed outcomes make the assessment fair.\n\n### **Supervision**\n\n"
        "Supervision by a peer matters.\n"
    )
    chunks = chunk_document(_doc(text), **SIZES)
    by_section = {c.section: c.text for c in chunks}
    statement = "What this means > Agree outcomes with peer workers before the evaluation starts."
    assert by_section[statement].startswith("### **Agree outcomes with peer workers")
    assert "Agreed outcomes make the assessment fair." in by_section[statement]
    # A heading that is only a name stays a name: it is not quoted as content.
    assert by_section["What this means > Supervision"] == "Supervision by a peer matters."


def test_contents__the_table_is_dropped_and_the_prose_after_it_is_kept():
    text = (
        "# Evidence brief\n\n## Contents\n\nKey publications .....\t3\nCase studies.....\t4\n\n"
        "Produced by the knowledge team. A quick overview of the published evidence on peer "
        "workers.\n\nPlease cite this brief as: Evidence brief on peer workers (2021).\n\n"
        "## Key publications\n\nThe long term plan names peer support workers.\n"
    )
    chunks = chunk_document(_doc(text), **SIZES)
    joined = "\n".join(c.text for c in chunks)
    assert "....." not in joined
    assert "A quick overview of the published evidence" in joined
    assert "Please cite this brief as" in joined
    front = [c for c in chunks if "quick overview" in c.text]
    assert front and front[0].section == ""  # not a section called "Contents"
    assert all(text[c.start : c.end] == c.text for c in chunks)
