"""Retrieval on the tiny corpus with a deterministic fake embedder: no model is loaded."""

from __future__ import annotations

import numpy as np
import pytest

from peerqa import Assistant, retrieval
from peerqa.fusion import FUSIONS, Signals, Weights, fuse_rrf, fuse_zscore
from peerqa.retrieval import Retriever, Vocabulary
from peerqa.text import tokenize
from peerqa.types import Document

WEIGHTS = Weights(bm25=0.25, dense=0.45, sentence=0.3, rrf_k=60)


def _doc(doc_id: str, text: str, aliases: tuple[str, ...] = ()) -> Document:
    return Document(doc_id=doc_id, title=doc_id.title(), text=text, path=f"{doc_id}.txt",
                    sha256=doc_id, aliases=aliases)


# -- fusion, as pure functions ---------------------------------------------------------------


def test_fusions__are_chosen_by_name():
    assert {"zscore": fuse_zscore, "rrf": fuse_rrf} == FUSIONS


def test_fuse_zscore__standardises_each_signal_over_the_searchable_chunks():
    s = Signals(bm25=np.array([0.0, 2.0, 4.0], np.float32),
                dense=np.array([0.1, 0.1, 0.1], np.float32),  # no spread: contributes nothing
                sentence=None, mask=np.array([True, True, True]))
    fused = fuse_zscore(s, WEIGHTS)
    assert np.allclose(fused, 0.25 * np.array([-1.2247449, 0.0, 1.2247449]), atol=1e-6)
    masked = fuse_zscore(Signals(s.bm25, s.dense, None, np.array([False, True, True])), WEIGHTS)
    assert np.allclose(masked[1:], 0.25 * np.array([-1.0, 1.0]))  # mean and spread of 2 and 4


def test_fuse_rrf__bm25_ranks_only_chunks_that_share_a_word():
    s = Signals(bm25=np.array([0.0, 3.0, 1.0], np.float32),
                dense=np.array([0.9, 0.2, 0.5], np.float32),
                sentence=np.array([0.1, 0.8, 0.3], np.float32), mask=np.ones(3, bool))
    fused = fuse_rrf(s, WEIGHTS)
    k = WEIGHTS.rrf_k
    expected_0 = 0.45 / (k + 1) + 0.3 / (k + 3)  # no BM25 share for a zero score
    assert fused[0] == pytest.approx(expected_0)
    assert fused[1] == pytest.approx(0.25 / (k + 1) + 0.45 / (k + 3) + 0.3 / (k + 1))


# -- the vocabulary ---------------------------------------------------------------------------


def test_vocabulary__idf_weighs_rare_words_more_and_unseen_words_most():
    docs = {"a": _doc("a", "supervision training training")}
    chunks = [tokenize("supervision training"), tokenize("training"), tokenize("training hope")]
    vocab = Vocabulary.from_tokens(docs, chunks)
    assert vocab.idf("supervis") > vocab.idf("train")
    assert vocab.idf("unseen") > vocab.idf("supervis")
    assert vocab.knows_word("supervision") and not vocab.knows_word("salary")


def test_vocabulary__names_documents_by_whole_alias_words():
    docs = {"fife": _doc("fife", "text", aliases=("Fife", "Fife review")),
            "qub": _doc("qub", "text", aliases=("QUB",))}
    vocab = Vocabulary.from_tokens(docs, [])
    assert vocab.mentioned_documents("What did the Fife review find?") == ["fife"]
    assert vocab.mentioned_documents("what does qub say") == ["qub"]
    assert vocab.mentioned_documents("Fifeshire and QUBE") == []


# -- search over a real tiny index ------------------------------------------------------------


def test_search__returns_verbatim_passages_best_first(tiny_fake):
    hits = tiny_fake.retriever.search("remote supervision by video call in rural areas", 3)
    assert "video call" in hits[0].passage.text
    for hit in hits:
        doc = tiny_fake.document(hit.passage.doc_id)
        assert doc.text[hit.passage.start : hit.passage.end] == hit.passage.text
    scores = [h.passage.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_search__hits_carry_every_sentence_with_offsets_and_similarity(tiny_fake):
    hit = tiny_fake.retriever.search("how often should supervision happen", 1)[0]
    doc = tiny_fake.document(hit.passage.doc_id)
    assert hit.sentences
    for a, b, sim in hit.sentences:
        assert hit.passage.start <= a < b <= hit.passage.end and -1.0 <= sim <= 1.0
        assert doc.text[a:b] == doc.text[a:b].strip()
    assert hit.indexed.endswith(hit.passage.text) and doc.title in hit.indexed


def test_search__document_filter_and_mention_boost(tiny_fake):
    only = tiny_fake.retriever.search("peer workers", 5, ["pilot-notes"])
    assert only and {h.passage.doc_id for h in only} == {"pilot-notes"}
    plain = {h.passage.chunk_id: h.passage for h in tiny_fake.retriever.search("supervision", 20)}
    boosted = tiny_fake.retriever.search("supervision", 20, mentioned=["bibliography"])
    for hit in boosted:  # one standard deviation for the named document's passages, none else
        lift = hit.passage.score - plain[hit.passage.chunk_id].score
        assert lift == pytest.approx(1.0 if hit.passage.doc_id == "bibliography" else 0.0)


def test_retriever__refuses_an_unknown_fusion(tiny_fake):
    r = tiny_fake.retriever
    with pytest.raises(ValueError, match="unknown fusion"):
        Retriever(r.generation, r.embedder, r.documents, fusion="max", bm25_weight=1,
                  dense_weight=1, sentence_weight=1, tokens_weight=1, rrf_k=60, mention_boost=1,
                  tuning=r.tuning)


def test_tiny_index__was_built_without_loading_a_model(tiny_fake, fake_embedder):
    assert tiny_fake.store.current_manifest()["embedder"] == "fake:hashed-words"
    assert sum(fake_embedder.calls) > len(tiny_fake.chunks)  # chunks, sentences, queries


def test_search__a_question_who_made_a_document_brings_its_credit_lines_forward(
    tiny_corpus, tmp_path, fake_embedder, monkeypatch
):
    (tiny_corpus / "evaluation.md").write_text(
        "# Evaluation of a peer pilot\n\nDeveloped by Dr Jane Smith on behalf of Peer Network UK"
        "\n\n## Findings\n\nPeer workers built trust with the people they supported, and teams "
        "valued the role more as the pilot went on.\n\n## Supervision\n\nSupervision was "
        "monthly, by a senior peer worker, and covered wellbeing as well as casework.\n",
        encoding="utf-8")
    a = Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "idx", embedder=fake_embedder)
    a.index()
    r = a.retriever
    credited = [c for c, held in zip(r.chunks, r.credits, strict=True) if held]
    assert [c.doc_id for c in credited] == ["evaluation"]
    assert "Developed by Dr Jane Smith" in credited[0].text

    def scores(query: str) -> dict[str, float]:
        return {h.passage.chunk_id: h.passage.score for h in r.search(query, 30)}

    question = "Who developed the peer pilot evaluation, and for which organisation?"
    boosted = scores(question)
    monkeypatch.setattr(retrieval, "CREDIT_BOOST", 0.0)
    plain = scores(question)
    for chunk_id, score in boosted.items():  # the credit chunk alone, by two units
        lift = score - plain[chunk_id]
        assert lift == pytest.approx(2.0 if chunk_id == credited[0].chunk_id else 0.0, abs=1e-6)
    # A question about what the document says is not one about who made it: no lift.
    content = "What did the evaluation find about supervision?"
    unboosted = scores(content)
    monkeypatch.setattr(retrieval, "CREDIT_BOOST", 2.0)
    assert scores(content) == pytest.approx(unboosted)
    assert "Developed by" not in r.search(content, 1)[0].passage.text
