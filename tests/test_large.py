"""Corpora larger than the tiny one: over a thousand chunks reopened by a new process, and more
chunks than Chroma takes in one batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from peerqa import Assistant
from peerqa.store import IndexStore, SentenceVectors
from peerqa.types import Chunk
from tests.helpers import FakeEmbedder, fake_peerqa, synthetic_corpus

QUERIES = ("peer3 team17 care42 ward8", "staff51 trust9 group33", "role12 shift40 plan7")


SIZES = [
    pytest.param((12, 90, 1000), id="1080-chunks"),
    pytest.param((40, 210, 8000), id="8400-chunks", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("size", SIZES)
def test_large_corpus__reopened_by_a_new_process_gives_the_same_results(
    size: tuple[int, int, int], tmp_path: Path
):
    documents, paragraphs, at_least = size
    large_corpus = synthetic_corpus(tmp_path / "corpus", documents, paragraphs)
    index = tmp_path / "index"
    a = Assistant(corpus_dir=large_corpus, index_dir=index, embedder=FakeEmbedder())
    info = a.index()
    assert info.n_chunks > at_least
    expected = {q: [p.chunk_id for p in a.search(q, k=5)] for q in QUERIES}
    r = fake_peerqa("search", str(large_corpus), str(index), "5", *QUERIES, timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == expected
    assert IndexStore(index).damage() is None


def test_more_chunks_than_chroma_takes_in_one_batch__all_stored_and_found(tmp_path: Path):
    import chromadb

    client = chromadb.EphemeralClient()
    limit = int(client.get_max_batch_size())
    n = limit + 300
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(f"c{i}", "doc", "S", 10 * i, 10 * i + 9, f"chunk text {i}", 3, 4)
              for i in range(n)]
    store = IndexStore(tmp_path / "index")
    stored: list[int] = []
    with store.write_lock():
        generation = store.write_generation(
            {"embedder": "test"}, chunks, vectors, [{"doc_id": "doc"}] * n,
            progress=stored.append,
            sentences=SentenceVectors.of(np.arange(n, dtype=np.int32),
                                      np.zeros((n, 2), dtype=np.int32), vectors),
        )
    assert sum(stored) == n and len(stored) > 1 and max(stored) <= limit
    assert generation.collection.count() == n
    for i in (0, limit - 1, limit, n - 1):  # either side of the first batch's end
        assert generation.query(vectors[i], 1)[0][0] == f"c{i}"
    assert store.damage() is None
