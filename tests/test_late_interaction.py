"""Late interaction: each chunk's content-token vectors stored in the index, and a question's
words matched against them one by one (the tiny corpus, fake embedders, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from peerqa.assistant import Assistant
from peerqa.generation import TokenVectors
from peerqa.retrieval import Signals, Weights, fuse_zscore, late_interaction

from .helpers import FakeEmbedder, FakeTokenEmbedder


@pytest.fixture
def tiny_tokens(tiny_corpus: Path, tmp_path: Path) -> Assistant:
    """The tiny corpus indexed by an embedder that gives token vectors."""
    a = Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "tiny-token-index",
                  embedder=FakeTokenEmbedder())
    a.index()
    return a


def _unit(*rows: list[float]) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_late_interaction__averages_each_query_token_s_best_match_in_the_chunk():
    # Chunk 0 holds e1 and e2, chunk 1 nothing, chunk 2 a vector half way between e1 and e2.
    rows = _unit([1, 0, 0], [0, 1, 0], [1, 1, 0])
    tokens = TokenVectors(np.array([0, 2, 2, 3]), rows.astype(np.float16))
    query = _unit([1, 0, 0], [0, 0, 1])
    scores = late_interaction(query, tokens, rows)
    assert scores[0] == pytest.approx((1.0 + 0.0) / 2)
    assert scores[1] == -1.0  # no token: the lowest a similarity can be
    assert scores[2] == pytest.approx((2 ** -0.5 + 0.0) / 2, abs=1e-6)
    assert np.all(late_interaction(query[:0], tokens, rows) == 0)


def test_fusion__weighs_late_interaction_only_when_it_is_there():
    rng = np.random.default_rng(0)
    base = Signals(rng.random(6), rng.random(6), None, np.ones(6, bool))
    late = Signals(base.bm25, base.dense, None, base.mask, np.arange(6.0))
    weights = Weights(1.0, 1.0, 0.0, 60, tokens=0.5)
    assert np.array_equal(fuse_zscore(base, weights), fuse_zscore(late, Weights(1, 1, 0, 60)))
    gain = fuse_zscore(late, weights) - fuse_zscore(base, weights)
    assert np.all(np.diff(gain) > 0)  # more late interaction, higher score


def test_index__stores_every_chunk_s_token_vectors_recorded_and_checked(tiny_tokens: Assistant):
    r = tiny_tokens.retriever
    tokens = r.generation.tokens()
    assert tokens is not None and len(tokens.start) == len(r.chunks) + 1
    assert tokens.vectors.dtype == np.float16 and len(tokens.vectors) == tokens.start[-1]
    norms = np.linalg.norm(tokens.vectors.astype(np.float32), axis=1)
    assert np.allclose(norms, 1, atol=2e-3)
    # One row per content word of what the retrievers see of the chunk.
    assert tokens.start[1] - tokens.start[0] == len(
        tiny_tokens.embedder.embed_tokens([r._indexed[0]])[0]) > 0
    manifest = json.loads((r.generation.path / "manifest.json").read_text())
    assert "tokens.npz" in manifest["files"] and manifest["tokens"] == "fake:stems"


def test_index__built_without_token_vectors_is_rebuilt_once_for_an_embedder_with_them(
    tiny_corpus: Path, tmp_path: Path
):
    folder = tmp_path / "index"
    plain = Assistant(corpus_dir=tiny_corpus, index_dir=folder, embedder=FakeEmbedder())
    plain.index()
    assert plain.retriever.generation.tokens() is None
    with_tokens = FakeTokenEmbedder()  # same name, so chunk and sentence vectors are reused
    upgraded = Assistant(corpus_dir=tiny_corpus, index_dir=folder, embedder=with_tokens)
    assert not upgraded.index_is_current()
    assert upgraded.index().built and upgraded.index_is_current()
    assert with_tokens.built == [] and with_tokens.token_calls  # only the token pass ran
    assert upgraded.retriever.generation.tokens() is not None
    assert not upgraded.index().built


def test_search__late_interaction_finds_the_chunk_holding_the_question_s_words(
    tiny_tokens: Assistant,
):
    r = tiny_tokens.retriever
    query = "twelve-week accredited course"
    signals, _ = r.signals(query, None)
    assert signals.tokens is not None
    best = int(np.argmax(signals.tokens))
    assert "twelve-week accredited course" in r.chunks[best].text
    assert signals.tokens[best] == pytest.approx(1.0, abs=2e-3)  # every word found
    assert tiny_tokens.search(query, 1)[0].chunk_id == r.chunks[best].chunk_id


def test_search__goes_without_late_interaction_for_an_embedder_without_token_vectors(
    tiny_fake: Assistant,
):
    signals, _ = tiny_fake.retriever.signals("supervision monthly", None)
    assert signals.tokens is None and tiny_fake.search("supervision monthly", 2)


def test_search__a_zero_weight_turns_late_interaction_off(tiny_corpus: Path, tmp_path: Path):
    a = Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "off",
                  embedder=FakeTokenEmbedder(), tokens_weight=0)
    a.index()
    assert a.retriever.signals("supervision monthly", None)[0].tokens is None
