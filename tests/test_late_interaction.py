"""Late interaction: each chunk's content-token vectors stored in the index, and a question's
words matched against them one by one (the tiny corpus, fake embedders, no model)."""

from __future__ import annotations

import json
import mmap
import shutil
from pathlib import Path

import numpy as np
import pytest

from peerqa import late, tables
from peerqa.answer.meaning import WordMeaning
from peerqa.assistant import Assistant
from peerqa.embeddings import integer
from peerqa.errors import IndexDamagedError
from peerqa.tables import TOKEN_FILES, WORD_FILES, TokenVectors

from .helpers import TINY, FakeEmbedder, FakeTokenEmbedder, damage


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
    tokens = TokenVectors.of(np.array([0, 2, 2, 3]), rows)
    query = _unit([1, 0, 0], [0, 0, 1])
    scores = late.maxsim(query, tokens, np.array([2, 0, 1]))
    assert scores[0] == pytest.approx((2 ** -0.5 + 0.0) / 2, abs=1e-3)  # stored as int8
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


def test_token_vectors__stored_as_int8_give_the_float_rows_within_a_step():
    rows = np.random.default_rng(3).standard_normal((50, 16)).astype(np.float32)
    rows[7] = 0  # a row of zeros stays zeros
    stored = TokenVectors.of(np.array([0, 20, 50]), rows)
    back = stored.vectors * stored.scale[:, None]
    step = np.abs(rows).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(back - rows) <= step / 2 + 1e-6) and not back[7].any()


def test_integer_products__are_exact_and_the_same_with_or_without_onnxruntime(
    monkeypatch: pytest.MonkeyPatch,
):
    rng = np.random.default_rng(5)
    rows = rng.integers(-127, 128, (700, 384)).astype(np.int8)
    rows[:3] = 127  # the largest sums there can be
    columns = rng.integers(-127, 128, (6, 384)).astype(np.int8)
    columns[0] = 127
    exact = rows.astype(np.int64) @ columns.astype(np.int64).T
    kernel = integer.products(rows, columns)
    assert integer._kernel() is not None  # onnxruntime is installed: its kernel ran
    monkeypatch.setattr(integer, "_kernel", lambda: None)
    fallback = integer.products(rows, columns)
    assert kernel.dtype == fallback.dtype == np.float32
    assert np.array_equal(kernel, exact) and np.array_equal(fallback, exact)
    with pytest.raises(ValueError, match="at most"):
        integer.products(np.zeros((2, 2000), np.int8), np.zeros((1, 2000), np.int8))


def test_held_rows__multiply_exactly_as_products_with_or_without_onnxruntime(
    monkeypatch: pytest.MonkeyPatch,
):
    rng = np.random.default_rng(8)
    rows = rng.integers(-127, 128, (500, 96)).astype(np.int8)
    rows[0] = -127
    columns = rng.integers(-127, 128, (7, 96)).astype(np.int8)
    columns[1] = -127  # the kernel's shift: -127 + 128 = 1 as uint8
    exact = (rows.astype(np.int64) @ columns.astype(np.int64).T).astype(np.float32)
    held = integer.HeldRows(rows)
    assert held._session is not None  # onnxruntime holds the rows
    assert np.array_equal(held.products(columns), exact)
    assert held.products(columns[:0]).shape == (500, 0)
    with pytest.raises(ValueError, match="columns of shape"):
        held.products(np.zeros((2, 95), np.int8))
    monkeypatch.setattr(integer, "_kernel", lambda: None)
    held._session = None  # as when onnxruntime could not make the session
    assert np.array_equal(held.products(columns), exact)


def test_maxsim__over_held_rows_gives_the_gathered_blocks_scores_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
):
    rng = np.random.default_rng(13)
    lengths = rng.integers(0, 9, 150)
    lengths[[0, 77, 149]] = 0  # empty chunks first, between and last
    start = np.concatenate([[0], np.cumsum(lengths)])
    rows = rng.standard_normal((int(start[-1]), 48)).astype(np.float32)
    stored = TokenVectors.of(start, rows)
    query = rng.standard_normal((5, 48)).astype(np.float32)
    monkeypatch.setattr(late, "BLOCK", 16)  # several blocks on the gathering side
    held = integer.HeldRows(stored.vectors)
    for chunks in (np.arange(150), rng.permutation(150)[:60], np.array([149, 0, 77])):
        assert np.array_equal(late.maxsim(query, stored, chunks, held),
                              late.maxsim(query, stored, chunks))
    assert not late.maxsim(query[:0], stored, np.arange(3), held).any()


def test_late_interaction__holds_only_a_token_file_small_enough_to_keep(
    tiny_tokens: Assistant, monkeypatch: pytest.MonkeyPatch,
):
    tokens = tiny_tokens.retriever.generation.tokens()
    assert tokens is not None
    assert late.LateInteraction(tokens, FakeTokenEmbedder()).held is not None
    monkeypatch.setattr(late, "TOKENS_KEPT", tokens.vectors.nbytes - 1)
    assert late.LateInteraction(tokens, FakeTokenEmbedder()).held is None


def test_maxsim__in_integers_gives_the_float_scores_within_the_rows_steps():
    rng = np.random.default_rng(11)
    rows = rng.standard_normal((60, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    start = np.array([0, 10, 10, 35, 60])  # chunk 1 has no token
    stored = TokenVectors.of(start, rows)
    query = rows[[3, 40, 41]] + 0.1 * rng.standard_normal((3, 32)).astype(np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    scores = late.maxsim(query, stored, np.array([3, 1, 0, 2]))
    expected = [float((query @ rows[a:b].T).max(axis=1).mean()) if b > a else 0.0
                for a, b in ((35, 60), (10, 10), (0, 10), (10, 35))]
    assert scores[1] == 0.0 and np.allclose(scores, expected, atol=0.01)


def test_index__stores_every_chunk_s_token_vectors_recorded_and_checked(tiny_tokens: Assistant):
    r = tiny_tokens.retriever
    tokens = r.generation.tokens()
    assert tokens is not None and len(tokens.start) == len(r.chunks) + 1
    assert tokens.vectors.dtype == np.int8 and len(tokens.vectors) == tokens.start[-1]
    norms = np.linalg.norm(tokens.vectors * tokens.scale[:, None], axis=1)
    assert np.allclose(norms, 1, atol=1e-2)
    # One row per content word of what the retrievers see of the chunk.
    assert tokens.start[1] - tokens.start[0] == len(
        tiny_tokens.embedder.embed_tokens([r.indexed(0)])[0]) > 0
    manifest = json.loads((r.generation.path / "manifest.json").read_text())
    assert all(name in manifest["files"] for name in TOKEN_FILES.values())
    assert manifest["tokens"] == "fake:stems"


def test_opening__memory_maps_the_token_vectors_and_a_search_reads_only_its_candidates_rows(
    tiny_tokens: Assistant, monkeypatch: pytest.MonkeyPatch
):
    opened = Assistant(corpus_dir=tiny_tokens.settings.corpus_dir,
                       index_dir=tiny_tokens.settings.index_dir, embedder=FakeTokenEmbedder())
    r = opened.retriever
    assert r.late is not None and isinstance(r.late.tokens.mapping, mmap.mmap)
    assert not r.late.tokens.vectors.flags.owndata  # a view of the file's mapping, not a copy
    assert isinstance(r.late.tokens.scale, np.memmap)
    read: list[np.ndarray] = []

    class Recorded:
        """The memory-mapped rows, recording which a search reads."""

        def __init__(self, rows: np.ndarray) -> None:
            self.rows = rows

        def __getitem__(self, index: np.ndarray) -> np.ndarray:
            read.append(np.asarray(index))
            return np.asarray(self.rows[index])

    monkeypatch.setattr(late, "TOKENS_KEPT", 0)  # a file too large to hold: rows are gathered
    assert r.late.held is None
    tokens = r.late.tokens
    monkeypatch.setattr(r.late, "tokens", TokenVectors(tokens.start, Recorded(tokens.vectors),
                                                       tokens.scale))
    monkeypatch.setattr(late, "CANDIDATES", 3)
    scores = np.arange(len(r.chunks), dtype=np.float64)  # the last three are the best
    query_tokens = r.late.read("supervision monthly")[1]
    r.late.rerank(query_tokens, scores, np.ones(len(r.chunks), bool), 1.0)
    best = range(len(r.chunks) - 3, len(r.chunks))
    expected = np.concatenate([np.arange(tokens.start[i], tokens.start[i + 1]) for i in best])
    assert len(read) == 1 and sorted(read[0].tolist()) == expected.tolist()


@pytest.mark.parametrize("damage", ["beyond", "backwards", "count"])
def test_opening__refuses_token_starts_that_point_outside_the_vectors(
    tiny_tokens: Assistant, damage: str
):
    live = tiny_tokens.retriever.generation.path
    starts = np.load(live / TOKEN_FILES["start"])
    if damage == "beyond":
        starts[-1] += 1
    elif damage == "backwards":
        starts[1], starts[2] = starts[2], starts[1]
    else:  # one chunk short: the same file size would need another shape
        starts = np.concatenate([starts[:-2], starts[-1:]])
    np.save(live / TOKEN_FILES["start"], starts)
    if damage == "count":  # another size: the load's own check, beside the size records'
        with pytest.raises(ValueError, match="1 chunks|chunks, not"):
            TokenVectors.load(live, len(tiny_tokens.retriever.chunks))
        return
    # The same size: only the bounds check on open can see it.
    opened = Assistant(corpus_dir=tiny_tokens.settings.corpus_dir,
                       index_dir=tiny_tokens.settings.index_dir, embedder=FakeTokenEmbedder())
    with pytest.raises(IndexDamagedError, match="token files"):
        opened.search("supervision monthly", 1)


def test_adding_a_document__reads_only_the_new_chunks_token_vectors(tmp_path: Path):
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(TINY, corpus)
    Assistant(corpus_dir=corpus, index_dir=index, embedder=FakeTokenEmbedder()).index()
    before = Assistant(corpus_dir=corpus, index_dir=index,
                       embedder=FakeTokenEmbedder()).retriever
    (corpus / "night-shifts.md").write_text(
        "# Night shifts\n\nPeer workers on night shifts meet their supervisor by telephone.\n",
        encoding="utf-8")
    embedder = FakeTokenEmbedder()
    a = Assistant(corpus_dir=corpus, index_dir=index, embedder=embedder)
    assert a.index().built
    r = a.retriever
    new = [i for i, c in enumerate(r.chunks) if c.doc_id == "night-shifts"]
    assert new and sum(embedder.token_calls) == len(new)
    tokens, old = r.generation.tokens(), before.generation.tokens()
    assert tokens is not None and old is not None
    kept = {c.chunk_id: i for i, c in enumerate(before.chunks)}
    for i, c in enumerate(r.chunks):  # the others' rows copied as they were
        if c.doc_id != "night-shifts":
            for now, then in zip(tokens.rows(i), old.rows(kept[c.chunk_id]), strict=True):
                assert np.array_equal(now, then)


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
    # Only the token pass ran, and the vocabulary's words were embedded (a local embedder's).
    assert upgraded.retriever.generation.tokens() is not None
    assert with_tokens.built == [len(upgraded.retriever.words.words)] and with_tokens.token_calls
    assert not upgraded.index().built


def test_search__late_interaction_finds_the_chunk_holding_the_question_s_words(
    tiny_tokens: Assistant,
):
    r = tiny_tokens.retriever
    assert r.late is not None
    query = "twelve-week accredited course"
    every = np.arange(len(r.chunks))
    scores = late.maxsim(r.late.read(query)[1], r.late.tokens, every)
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


class _CountingTokenEmbedder(FakeTokenEmbedder):
    """Records which of its reading methods a build calls."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, int]] = []

    def embed_tokens(self, texts, progress=None):
        self.reads.append(("tokens", len(texts)))
        return super().embed_tokens(texts, progress)

    def embed_documents_and_tokens(self, texts, progress=None):
        self.reads.append(("both", len(texts)))
        return self.embed_documents(texts), FakeTokenEmbedder.embed_tokens(self, texts, progress)


def test_build__reads_each_chunk_once_for_its_vector_and_its_token_vectors(
    tiny_corpus: Path, tmp_path: Path
):
    embedder = _CountingTokenEmbedder()
    a = Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "one-pass", embedder=embedder)
    a.index()
    distinct = {c.text for c in a.retriever.chunks}
    assert [kind for kind, _ in embedder.reads] == ["both"]
    assert embedder.reads[0][1] >= len(distinct) > 0
    gen = a.store.open()
    tokens = gen.tokens()
    assert tokens is not None and len(tokens.start) - 1 == len(a.retriever.chunks)


def test_rerank__gives_back_the_pages_it_read_and_scores_the_same_next_time(
    tiny_tokens: Assistant, monkeypatch: pytest.MonkeyPatch
):
    opened = Assistant(corpus_dir=tiny_tokens.settings.corpus_dir,
                       index_dir=tiny_tokens.settings.index_dir, embedder=FakeTokenEmbedder())
    r = opened.retriever
    assert r.late is not None
    forgotten: list[TokenVectors] = []
    real = TokenVectors.forget
    monkeypatch.setattr(TokenVectors, "forget",
                        lambda self: forgotten.append(self) or real(self))
    scores = np.arange(len(r.chunks), dtype=np.float64)
    mask = np.ones(len(r.chunks), bool)
    query_tokens = r.late.read("supervision monthly")[1]
    first = r.late.rerank(query_tokens, scores, mask, 1.0)
    assert forgotten == [r.late.tokens]  # asked to give back the pages read after each rerank
    again = r.late.rerank(query_tokens, scores, mask, 1.0)  # read back from the file
    assert np.array_equal(first, again) and len(forgotten) == 2


def test_words__the_index_holds_every_word_its_chunks_use_and_the_check_embeds_no_other(
    tiny_tokens: Assistant, tiny_fake: Assistant,
):
    r = tiny_tokens.retriever
    table = r.words
    assert table is not None and tiny_tokens.meaning.known() is table
    assert {"supervision", "monthly", "reflective"} <= set(table.words)
    assert "the" not in table.position and table.get("salary") is None  # a stop word; unused
    assert np.allclose(table.get("supervision"), r.embedder.embed_documents(["supervision"])[0])
    embedder = r.embedder
    before = len(embedder.calls)
    evidence = ["supervision", "monthly", "reflective"]
    sims = tiny_tokens.meaning(["salary", "payroll"], evidence)
    assert embedder.calls[before:] == [2]  # the question's words the chunks never use, only
    assert np.allclose(sims, WordMeaning(embedder)(["salary", "payroll"], evidence))
    # An embedder behind an API (no token vectors) is not asked for the whole vocabulary.
    assert tiny_fake.retriever.words is None


@pytest.mark.parametrize("mode", ["truncate", "garble"])
def test_words__a_damaged_word_file_says_so_in_one_line_and_only_the_words_are_embedded_again(
    tiny_tokens: Assistant, mode: str
):
    live = tiny_tokens.retriever.generation.path
    n_words = len(tiny_tokens.retriever.words.words)
    damage(live / WORD_FILES["vectors"], mode, seed=3)
    opened = Assistant(corpus_dir=tiny_tokens.settings.corpus_dir,
                       index_dir=tiny_tokens.settings.index_dir, embedder=FakeTokenEmbedder())
    if mode == "truncate":  # its size is checked on open
        with pytest.raises(IndexDamagedError, match=r"word_vectors.npy .*run `peerqa index`"):
            opened.ask("How often is supervision?")
    embedder = FakeTokenEmbedder()
    repairing = Assistant(corpus_dir=tiny_tokens.settings.corpus_dir,
                          index_dir=tiny_tokens.settings.index_dir, embedder=embedder)
    info = repairing.index()
    assert info.built and info.repaired and sum(embedder.built) == n_words
    assert repairing.ask("How often is supervision?").citations


def test_forget__gives_pages_back_only_for_a_token_file_larger_than_the_budget(
    monkeypatch: pytest.MonkeyPatch,
):
    advised: list[int] = []

    class Mapping:
        def __len__(self) -> int:
            return 8 * 2**20  # the bundled corpus's file: read whole by every search

        def madvise(self, flag: int) -> None:
            advised.append(flag)

    rows = TokenVectors.of(np.array([0, 2]), np.ones((2, 4), np.float32))
    kept = TokenVectors(rows.start, rows.vectors, rows.scale, Mapping())  # type: ignore[arg-type]
    kept.forget()
    assert advised == []
    monkeypatch.setattr(tables, "TOKENS_KEPT", 2**20)  # a file larger than the budget
    kept.forget()
    assert advised == [mmap.MADV_DONTNEED]


def test_rerank__holds_the_rows_only_from_a_process_s_second_search_on(
    tiny_tokens: Assistant, monkeypatch: pytest.MonkeyPatch,
):
    opened = Assistant(corpus_dir=tiny_tokens.settings.corpus_dir,
                       index_dir=tiny_tokens.settings.index_dir, embedder=FakeTokenEmbedder())
    made: list[int] = []
    real = integer.HeldRows

    def counted(rows: np.ndarray) -> integer.HeldRows:
        made.append(len(rows))
        return real(rows)

    monkeypatch.setattr(late, "HeldRows", counted)
    r = opened.retriever
    assert r.late is not None
    query_tokens = r.late.read("supervision monthly")[1]
    scores = np.arange(len(r.chunks), dtype=np.float64)
    mask = np.ones(len(r.chunks), bool)
    first = r.late.rerank(query_tokens, scores, mask, 1.0)
    assert made == []  # a one-off question gathers its candidates' rows: nothing handed over
    second = r.late.rerank(query_tokens, scores, mask, 1.0)
    assert made == [len(r.late.tokens.vectors)]  # held from the second search on, once
    r.late.rerank(query_tokens, scores, mask, 1.0)
    assert len(made) == 1
    assert np.array_equal(first, second)  # the same scores, bit for bit
