"""What a build saves for the retriever (BM25, the vocabulary's counts, memory-mapped sentence
vectors) gives the same searches as computing it all on open; a build after a change embeds and
stores only what changed; an index of the previous format is rebuilt once, its vectors reused."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import bm25s
import numpy as np
import pytest

from peerqa import Assistant, chunking
from peerqa.evaluation.gold import default_gold_path, load_gold
from peerqa.fusion import Signals, _order, top
from peerqa.lexical import Counts
from peerqa.records import file_records
from peerqa.retrieval import Hit, Retriever, Vocabulary
from peerqa.store import FORMAT_VERSION, IndexStore
from peerqa.tables import ChunkList
from peerqa.text import sentence_spans, tokenize
from tests.helpers import TINY, FakeEmbedder

QUERIES = ("How often should supervision happen?", "remote supervision by video call",
           "training peer workers need before they start", "what does the pilot say about pay",
           "supervision supervision supervision", "zebra quantum")


def _unpersisted(r: Retriever) -> Retriever:
    """The retriever as it was before anything was saved for it: BM25 (bm25s's own scoring)
    and the vocabulary computed from every chunk's tokens on open; each chunk's dense score
    read from ``Generation.query``'s list; every sentence's similarity computed over one vector
    per sentence (not each distinct one once), for the query's adapted vector and its own."""
    view = copy.copy(r)
    tokens = [tokenize(view.indexed(i)) for i in range(len(view.chunks))]
    model = bm25s.BM25()
    model.index(tokens, show_progress=False)

    class Bm25s:
        size = len(tokens)

        def scores(self, query_tokens: list[str]) -> np.ndarray:
            known = [t for t in query_tokens if t in model.vocab_dict]
            if not known:
                return np.zeros(self.size, dtype=np.float32)
            return np.asarray(model.get_scores(known), dtype=np.float32)

    view.lexical = Bm25s()
    view.vocabulary = Vocabulary.from_tokens(view.documents, tokens)
    row = {c.chunk_id: i for i, c in enumerate(view.chunks)}

    def dense(vector: np.ndarray, doc_ids: list[str] | None) -> np.ndarray:
        found = view.generation.query(vector, len(view.chunks), doc_ids)
        out = np.full(len(view.chunks), min(s for _, s in found), dtype=np.float32)
        for chunk_id, sim in found:
            out[row[chunk_id]] = sim
        return out

    per_sentence = view.sentences.vectors

    def every_sentence(vector: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        return per_sentence @ np.asarray(vector, dtype=np.float32)

    def signals(query: str, doc_ids: list[str] | None, vector: np.ndarray):
        found, _ = Retriever.signals(view, query, doc_ids, vector)
        sims = every_sentence(vector, np.zeros(0))
        best = np.full(len(view.chunks), -1.0, dtype=np.float32)
        np.maximum.at(best, view.sentences.chunk, sims)
        return Signals(found.bm25, found.dense, best, found.mask), sims

    view._dense = dense  # type: ignore[method-assign]
    view._sims_of = every_sentence  # type: ignore[method-assign]
    view.signals = signals  # type: ignore[method-assign]
    return view


def _same(hits: list[Hit], expected: list[Hit]) -> bool:
    """The same passages (scores and relevance included) in the same order, and the same
    sentences, their similarities within 1e-6: a product over a matrix's last, partial block of
    rows sums differently in BLAS, so the last few sentences of a table may differ by a unit in
    the last place."""
    return [(h.passage, h.indexed) for h in hits] == [(h.passage, h.indexed) for h in expected] \
        and all([(a, b) for a, b, _ in h.sentences] == [(a, b) for a, b, _ in e.sentences]
                and [s for *_, s in h.sentences] == pytest.approx([s for *_, s in e.sentences],
                                                                  abs=1e-6)
                for h, e in zip(hits, expected, strict=True))


def _same_searches(r: Retriever, queries: list[str]) -> None:
    reference = _unpersisted(r)
    doc = r.chunks[0].doc_id
    for q in queries:
        assert _same(r.search(q, 10), reference.search(q, 10)), q
        assert _same(r.search(q, 5, [doc]), reference.search(q, 5, [doc])), q
        assert _same(r.search(q, 5, mentioned=[doc]), reference.search(q, 5, mentioned=[doc])), q


def test_saved_bm25__scores_as_bm25s_does_and_counts_as_a_recount(tiny_fake):
    r = tiny_fake.retriever
    tokens = [tokenize(r.indexed(i)) for i in range(len(r.chunks))]
    model = bm25s.BM25()
    model.index(tokens, show_progress=False)
    saved = r.generation.lexical()
    for q in QUERIES:
        known = [t for t in tokenize(q) if t in model.vocab_dict]
        expected = model.get_scores(known) if known else np.zeros(len(tokens), np.float32)
        assert np.array_equal(saved.scores(tokenize(q)), expected), q
    fresh = Counts.of(tiny_fake.documents, tokens)
    assert r.generation.counts() == fresh
    assert all(saved.document_frequency(t) == n for t, n in fresh.df.items())


def test_saved_sentence_vectors__are_memory_mapped_and_equal_the_embedded_ones(tiny_fake):
    sentences = tiny_fake.retriever.sentences
    assert isinstance(sentences.table, np.memmap) and len(sentences.table) % 64 == 0
    texts = {d.doc_id: d.text for d in tiny_fake.documents}
    spans, rows = [], []
    for i, c in enumerate(tiny_fake.chunks):
        for a, b in sentence_spans(texts[c.doc_id], c.start, c.end):
            spans.append((a, b))
            rows.append(i)
    assert np.array_equal(sentences.spans, np.array(spans)) and sentences.chunk.tolist() == rows
    computed = FakeEmbedder().embed_documents(
        [texts[tiny_fake.chunks[i].doc_id][a:b] for i, (a, b) in zip(rows, spans, strict=True)])
    assert np.array_equal(sentences.vectors, computed)


def test_search__equals_the_unpersisted_path_on_the_tiny_corpus(tiny_fake):
    _same_searches(tiny_fake.retriever, list(QUERIES))


def test_search__equals_the_unpersisted_path_on_the_bundled_corpus(assistant):
    r = assistant.retriever
    assert r.adapter is not None  # the shipped adapter: raw sentence similarities by block
    questions = [item.question for item in load_gold(default_gold_path())[::7]]
    _same_searches(r, questions)


def test_opening__parses_no_chunk_until_a_search_returns_it(tiny_fake):
    opened = Assistant(corpus_dir=tiny_fake.settings.corpus_dir,
                       index_dir=tiny_fake.settings.index_dir, embedder=FakeEmbedder())
    chunks = opened.retriever.chunks
    assert isinstance(chunks, ChunkList) and chunks._parsed == {}
    hit = opened.search(QUERIES[0], 1)[0]
    assert [c.chunk_id for c in chunks._parsed.values()] == [hit.chunk_id]
    assert list(chunks) == list(tiny_fake.store.open().chunks) == tiny_fake.chunks


def test_top__equals_a_full_stable_sort_with_ties():
    rng = np.random.default_rng(5)
    for _ in range(200):
        scores = rng.integers(0, 6, size=rng.integers(1, 120)).astype(np.float64)
        candidates = np.flatnonzero(rng.random(len(scores)) < 0.8)
        k = int(rng.integers(1, 60))
        assert top(scores, candidates, k).tolist() == _order(scores, candidates)[:k].tolist()


# -- builds after a change -------------------------------------------------------------------


def _corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    shutil.copytree(TINY, folder)
    return folder


NEW_DOCUMENT = """# Night shifts

Peer workers on night shifts meet their supervisor by telephone once a week.

Handover notes record what was agreed, so the day team can follow it up.
"""


def test_adding_a_document__embeds_only_its_texts_and_edits_a_copy_of_the_collection(
    tmp_path, monkeypatch
):
    corpus, index = _corpus(tmp_path), tmp_path / "index"
    first = Assistant(corpus_dir=corpus, index_dir=index, embedder=FakeEmbedder())
    first.index()
    before = first.store.open()
    (corpus / "night-shifts.md").write_text(NEW_DOCUMENT, encoding="utf-8")

    chunked: list[str] = []
    real = chunking.chunk_document
    monkeypatch.setattr(chunking, "chunk_document",
                        lambda doc, **kw: chunked.append(doc.doc_id) or real(doc, **kw))
    embedder = FakeEmbedder()
    a = Assistant(corpus_dir=corpus, index_dir=index, embedder=embedder)
    assert a.index().built
    assert chunked == ["night-shifts"]  # the unchanged documents keep their chunks
    gen = a.store.open()
    new_chunks = [c for c in gen.chunks if c.doc_id == "night-shifts"]
    new_sentences = [row for row, chunk in enumerate(gen.sentences().chunk.tolist())
                     if gen.chunks[chunk].doc_id == "night-shifts"]
    assert new_chunks and sum(embedder.built) == len(new_chunks) + len(new_sentences)
    assert gen.manifest["chroma_from"] == before.name and gen.manifest["chroma_deleted"] == 0
    assert IndexStore(index).damage() is None
    # Chroma's answers (nearest first, fewer than every chunk) agree with the exact scan.
    vector = embedder.embed_query("night shifts supervisor by telephone")
    assert gen.collection.count() == len(gen.chunks)
    nearest, exact = gen.query(vector, 3), gen.query(vector, len(gen.chunks))[:3]
    assert [c for c, _ in nearest] == [c for c, _ in exact]
    assert [s for _, s in nearest] == pytest.approx([s for _, s in exact], abs=1e-5)
    assert gen.query(vector, 1)[0][0] == new_chunks[0].chunk_id
    assert a.search("night shifts supervisor by telephone", 1)[0].doc_id == "night-shifts"


def test_changing_a_document__deletes_its_old_rows_from_the_copied_collection(tmp_path):
    corpus, index = _corpus(tmp_path), tmp_path / "index"
    Assistant(corpus_dir=corpus, index_dir=index, embedder=FakeEmbedder()).index()
    before = IndexStore(index).open()
    path = corpus / "training-guide.md"
    path.write_text(path.read_text(encoding="utf-8").replace("supervision", "oversight"),
                    encoding="utf-8")
    a = Assistant(corpus_dir=corpus, index_dir=index, embedder=FakeEmbedder())
    a.index()
    gen = a.store.open()
    unchanged = set(before.chunks) & set(gen.chunks)  # same id, offsets and text
    assert gen.manifest["chroma_from"] == before.name
    assert gen.manifest["chroma_deleted"] == len(before.chunks) - len(unchanged) > 0
    stored = gen.collection.get(include=["documents"])
    assert sorted(stored["ids"]) == sorted(c.chunk_id for c in gen.chunks)
    by_id = {c.chunk_id: c.text for c in gen.chunks}
    assert all(by_id[i] == text for i, text in zip(stored["ids"], stored["documents"],
                                                   strict=True))
    assert IndexStore(index).damage() is None


# -- an index of the previous format -----------------------------------------------------------


def _as_format_3(index: Path) -> None:
    """Rewrite the live generation as peerqa wrote format 3: sentences in one .npz, the text keys
    in the manifest, nothing saved for BM25 or the vocabulary."""
    pointer = json.loads((index / "CURRENT").read_text())
    live = index / "generations" / pointer["generation"]
    manifest = json.loads((live / "manifest.json").read_text())
    keys = json.loads((live / "keys.json").read_text())
    table, rows = np.load(live / "sentence_vectors.npy"), np.load(live / "sentence_rows.npy")
    np.savez(live / "sentences.npz", chunk=np.load(live / "sentence_chunks.npy"),
             spans=np.load(live / "sentence_spans.npy"), vectors=table[rows])
    for name in ("keys.json", "vocabulary.json", "chunk_table.npz", "sentence_chunks.npy",
                 "sentence_spans.npy", "sentence_rows.npy", "sentence_vectors.npy"):
        (live / name).unlink()
    shutil.rmtree(live / "bm25")
    manifest.update(keys, format=3, files=file_records(live))
    data = json.dumps(manifest, indent=1).encode()
    (live / "manifest.json").write_bytes(data)
    pointer["manifest_sha256"] = hashlib.sha256(data).hexdigest()
    (index / "CURRENT").write_text(json.dumps(pointer))


def test_index_of_the_previous_format__rebuilt_once_reusing_every_vector(tmp_path):
    corpus, index = _corpus(tmp_path), tmp_path / "index"
    Assistant(corpus_dir=corpus, index_dir=index, embedder=FakeEmbedder()).index()
    expected = Assistant(corpus_dir=corpus, index_dir=index,
                         embedder=FakeEmbedder()).search(QUERIES[0])
    _as_format_3(index)
    embedder = FakeEmbedder()
    a = Assistant(corpus_dir=corpus, index_dir=index, embedder=embedder)
    assert a.index().built and embedder.built == []
    assert a.store.current_manifest()["format"] == FORMAT_VERSION
    assert a.search(QUERIES[0]) == expected
    again = Assistant(corpus_dir=corpus, index_dir=index, embedder=embedder)
    assert not again.index().built
