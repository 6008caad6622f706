"""Building an index: each distinct text embedded once; the exact scan agrees with Chroma."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from peerqa import Assistant
from peerqa.indexing import text_key
from tests.helpers import TINY, FakeEmbedder


def _corpus_with_a_copy(tmp_path: Path) -> Path:
    """The tiny documents plus a second edition of one: most of its sentences repeat."""
    folder = tmp_path / "corpus"
    shutil.copytree(TINY, folder)
    source = sorted(p for p in folder.iterdir() if p.suffix in {".md", ".txt"})[0]
    text = source.read_text(encoding="utf-8")
    # An identical copy would be skipped as a duplicate document: a new closing line differs.
    (folder / f"second-edition-{source.name}").write_text(
        text + "\n\nThis edition adds a closing note on review dates.\n", encoding="utf-8")
    return folder


def test_build__embeds_each_distinct_text_once(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    a = Assistant(corpus_dir=_corpus_with_a_copy(tmp_path), index_dir=tmp_path / "index",
                  embedder=fake)
    a.index()
    gen = a.store.open()
    chunk_keys, sentence_keys = gen.keys()
    assert len(set(sentence_keys)) < len(sentence_keys), "the copy should repeat sentences"
    assert sum(fake.calls) == len(set(chunk_keys) | set(sentence_keys))
    # Every row holds the vector of its own text, duplicates included.
    sentences = gen.sentences()
    assert sentences is not None
    texts = {d.doc_id: d.text for d in a.documents}
    chunk_of = gen.chunks
    for row, (start, end) in enumerate(sentences.spans[:40]):
        text = texts[chunk_of[int(sentences.chunk[row])].doc_id][start:end]
        assert text_key(text) == sentence_keys[row]
        assert np.allclose(sentences.vectors[row], fake.embed_documents([text])[0], atol=1e-6)


def test_build__progress_counts_every_text_duplicates_included(tmp_path: Path) -> None:
    seen: dict[str, tuple[int, int]] = {}
    a = Assistant(corpus_dir=_corpus_with_a_copy(tmp_path), index_dir=tmp_path / "index",
                  embedder=FakeEmbedder())
    a.index(progress=lambda stage, done, total: seen.__setitem__(stage, (done, total)))
    for stage in ("embedding", "sentences"):
        done, total = seen[stage]
        assert done == total > 0


def test_exact_scan__agrees_with_chroma(tiny_fake: Assistant, fake_embedder: FakeEmbedder) -> None:
    gen = tiny_fake.store.open()
    vector = fake_embedder.embed_query("peer support training and supervision")
    n = len(gen.chunks)
    scanned = gen.query(vector, n)  # every chunk asked for: the numpy scan
    from_chroma = gen.collection.query(
        query_embeddings=vector[None, :], n_results=n, include=["distances"]
    )
    chroma = dict(zip(from_chroma["ids"][0], (1 - d for d in from_chroma["distances"][0]),
                      strict=True))
    assert [c for c, _ in scanned] == sorted(chroma, key=lambda c: -chroma[c])
    assert all(abs(s - chroma[c]) < 1e-5 for c, s in scanned)
    doc = gen.chunks[0].doc_id
    filtered = gen.query(vector, n, [doc])
    assert filtered and {gen.chunks[[c.chunk_id for c in gen.chunks].index(i)].doc_id
                         for i, _ in filtered} == {doc}
    assert len(filtered) == sum(1 for c in gen.chunks if c.doc_id == doc)
