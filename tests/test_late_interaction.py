"""Late interaction: each chunk's content-token vectors stored in the index, and a question's
words matched against them one by one (the tiny corpus, fake embedders, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from peerqa import late
from peerqa.assistant import Assistant
from peerqa.generation import TokenVectors

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


def test_maxsim__averages_each_query_token_s_best_match_in_the_chunk():
    # Chunk 0 holds e1 and e2, chunk 1 nothing, chunk 2 a vector half way between e1 and e2.
    rows = _unit([1, 0, 0], [0, 1, 0], [1, 1, 0])
    tokens = TokenVectors(np.array([0, 2, 2, 3]), rows.astype(np.float16))
    query = _unit([1, 0, 0], [0, 0, 1])
    scores = late.maxsim(query, tokens, np.array([2, 0, 1]))
    assert scores[0] == pytest.approx((2 ** -0.5 + 0.0) / 2, abs=1e-3)  # stored as float16
    assert scores[1] == pytest.approx((1.0 + 0.0) / 2)
    assert scores[2] == 0.0  # no token
    assert np.all(late.maxsim(query[:0], tokens, np.array([0, 2])) == 0)


def test_rerank__moves_only_the_candidates_and_keeps_the_rest_behind_on_their_own_merits():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 9.0])
    mask = np.array([True, True, True, True, True, False])  # the last one is filtered out
    candidates = np.array([0, 1, 2])
    out = late.rerank(scores, mask, np.array([0.1, 0.2, 0.9]), candidates, weight=2.0)
    assert np.argsort(-out[:3]).tolist() == [2, 0, 1]  # the third candidate matched best
    lowest = out[candidates] - scores[candidates]
    assert np.allclose(out[3:5] - scores[3:5], lowest.min())  # the rest lowered alike
    assert out[5] == scores[5]
    assert late.rerank(scores, mask, np.array([0.1, 0.2, 0.9]), candidates, 0.0) is scores


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
    assert r.late is not None
    query = "twelve-week accredited course"
    every = np.arange(len(r.chunks))
    scores = late.maxsim(r.late.query_tokens(query), r.late.tokens, every)
    best = int(np.argmax(scores))
    assert "twelve-week accredited course" in r.chunks[best].text
    assert scores[best] == pytest.approx(1.0, abs=2e-3)  # every word found
    assert tiny_tokens.search(query, 1)[0].chunk_id == r.chunks[best].chunk_id
    # Ranked without it, the late-interaction weight changes the scores the search returns.
    plain = Assistant(corpus_dir=tiny_tokens.settings.corpus_dir,
                      index_dir=tiny_tokens.settings.index_dir, embedder=r.embedder,
                      tokens_weight=0).retriever
    assert plain.late is None
    assert not np.allclose(plain.rank(query).scores[:3], r.rank(query).scores[:3])


def test_query__is_read_once_for_its_vector_and_its_token_vectors(tiny_tokens: Assistant):
    r = tiny_tokens.retriever
    embedder = r.embedder
    before = (len(embedder.calls), len(embedder.token_calls))
    r.rank("a question read once")
    r.rank("a question read once")
    assert (len(embedder.calls), len(embedder.token_calls)) == (before[0] + 1, before[1] + 1)


def test_search__goes_without_late_interaction_for_an_embedder_without_token_vectors(
    tiny_fake: Assistant,
):
    assert tiny_fake.retriever.late is None and tiny_fake.search("supervision monthly", 2)


def test_search__a_zero_weight_turns_late_interaction_off(tiny_corpus: Path, tmp_path: Path):
    a = Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "off",
                  embedder=FakeTokenEmbedder(), tokens_weight=0)
    a.index()
    assert a.retriever.late is None
