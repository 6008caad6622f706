"""The onnxruntime encoder against the numpy reference, its cached graph, scoped BLAS threads."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from peerqa import Assistant
from peerqa.embeddings import LocalEmbedder, minilm, minilm_onnx
from peerqa.embeddings import local as local_module
from peerqa.embeddings.threads import BUILD_THREADS, blas_threads, blas_threads_now
from peerqa.errors import ModelError
from peerqa.retrieval import Retriever

REFERENCE = Path(__file__).resolve().parent / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def graph_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the cached graph (written here even if a session is already open)."""
    folder = tmp_path_factory.mktemp("graph-cache")
    minilm_onnx.cached_graph(folder, lambda: minilm.load_model(minilm.local_model_dir()))
    minilm_onnx.cached_quantized(folder, lambda: minilm.load_model(minilm.local_model_dir()))
    return folder


@pytest.fixture(scope="module")
def onnx_embedder(graph_cache: Path) -> LocalEmbedder:
    """The float32 graph (the default): the one compared with the numpy reference."""
    embedder = LocalEmbedder(runtime="onnx", cache_dir=graph_cache)
    assert embedder.runtime == "onnxruntime" and embedder.precision == "fp32"
    return embedder


@pytest.fixture(scope="module")
def int8_embedder(graph_cache: Path) -> LocalEmbedder:
    """The int8 graph (PEERQA_LOCAL_PRECISION=int8)."""
    embedder = LocalEmbedder(runtime="onnx", cache_dir=graph_cache, precision="int8")
    assert embedder.runtime == "onnxruntime" and embedder.precision == "int8"
    return embedder


@pytest.fixture(scope="module")
def numpy_embedder() -> LocalEmbedder:
    return LocalEmbedder(runtime="numpy")


def _texts() -> list[str]:
    cases = json.loads(REFERENCE.read_text(encoding="utf-8"))["cases"]
    rng = np.random.default_rng(5)
    words = ["peer", "workers", "bring", "lived", "experience", "to", "recovery", "teams"]
    # Lengths from an empty text (just [CLS] [SEP]) to past the 256-token window, shuffled so
    # that batches are sorted and padded.
    made = [" ".join(rng.choice(words, size=int(n))) for n in (0, 1, 3, 17, 60, 140, 400)]
    texts = [c["text"] for c in cases] + made + ["", "a", "Supervision matters."]
    rng.shuffle(texts)
    return texts


# ---------------------------------------------------------------- same vectors


def test_onnx__equals_the_numpy_reference_within_1e_5(
    onnx_embedder: LocalEmbedder, numpy_embedder: LocalEmbedder
) -> None:
    texts = _texts()
    small = LocalEmbedder(runtime="onnx", batch_size=3, cache_dir=None)  # many padded batches
    batched = small.embed_documents(texts)
    reference = numpy_embedder.embed_documents(texts)
    assert batched.dtype == np.float32 and batched.shape == reference.shape
    assert np.abs(batched - reference).max() < 1e-5
    one_by_one = np.stack([onnx_embedder.embed_query(t) for t in texts])
    assert np.abs(one_by_one - reference).max() < 1e-5


def test_token_vectors__both_runtimes_agree_and_keep_only_content_words(
    onnx_embedder: LocalEmbedder, numpy_embedder: LocalEmbedder
) -> None:
    texts = ["Who wrote the Fife review, and when?", "Peer workers draw on lived experience."]
    onnx_tokens = onnx_embedder.embed_tokens(texts)
    numpy_tokens = numpy_embedder.embed_tokens(texts)
    # "wrote", "fife", "review"; then "peer", "workers", "draw", "lived", "experience".
    assert [len(t) for t in onnx_tokens] == [3, 5] == [len(t) for t in numpy_tokens]
    for a, b in zip(onnx_tokens, numpy_tokens, strict=True):
        assert a.dtype == np.float32 and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
        assert np.abs(a - b).max() < 1e-4
    for embedder in (onnx_embedder, numpy_embedder):  # one pass gives both, the same
        vector, tokens = embedder.embed_query_tokens(texts[0])
        assert np.abs(vector - embedder.embed_query(texts[0])).max() < 1e-5
        assert np.abs(tokens - embedder.embed_tokens(texts[:1])[0]).max() < 1e-5
    # In context: the same word reads differently in another sentence.
    other = onnx_embedder.embed_tokens(["The review was written in Fife."])[0]
    assert not np.allclose(other[0], onnx_tokens[0][2])


def test_vectors_and_tokens__one_pass_gives_exactly_the_two_passes_results(
    onnx_embedder: LocalEmbedder, numpy_embedder: LocalEmbedder
) -> None:
    # A build reads every chunk once for both; an index must not depend on which path made it.
    texts = _texts()
    for embedder in (onnx_embedder, numpy_embedder):
        finished: list[int] = []
        vectors, tokens = embedder.embed_documents_and_tokens(texts, progress=finished.append)
        assert np.array_equal(vectors, embedder.embed_documents(texts))
        for a, b in zip(tokens, embedder.embed_tokens(texts), strict=True):
            assert np.array_equal(a, b)
        assert sum(finished) == len(texts)


def test_onnx__equals_sentence_transformers_within_1e_5(onnx_embedder: LocalEmbedder) -> None:
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    got = onnx_embedder.embed_documents([c["text"] for c in reference["cases"]])
    want = np.asarray([c["vector"] for c in reference["cases"]], dtype=np.float32)
    assert np.abs(got - want).max() < 1e-5


def test_runtimes__share_one_name_so_an_index_is_reused(
    onnx_embedder: LocalEmbedder, numpy_embedder: LocalEmbedder
) -> None:
    assert onnx_embedder.name == numpy_embedder.name == "local:all-MiniLM-L6-v2:53aa5117"
    assert onnx_embedder.dim == numpy_embedder.dim == 384


def test_onnx__order_and_progress_survive_length_sorting(onnx_embedder: LocalEmbedder) -> None:
    texts = _texts()
    calls: list[int] = []
    embedder = LocalEmbedder(runtime="onnx", batch_size=4)
    together = embedder.embed_documents(texts, progress=calls.append)
    alone = np.stack([onnx_embedder.embed_query(t) for t in texts])
    assert np.abs(together - alone).max() < 1e-5
    assert sum(calls) == len(texts) and max(calls) == 4


# ---------------------------------------------------------------- the int8 graph


def test_int8__close_to_float32_and_named_apart(
    int8_embedder: LocalEmbedder, onnx_embedder: LocalEmbedder, numpy_embedder: LocalEmbedder
) -> None:
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    texts = [c["text"] for c in reference["cases"]]
    got = int8_embedder.embed_documents(texts)
    want = np.asarray([c["vector"] for c in reference["cases"]], dtype=np.float32)
    cosines = (got * want).sum(axis=1)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert cosines.min() > 0.95 and cosines.mean() > 0.98
    assert not np.allclose(got, want, atol=1e-3)  # really the int8 graph, not float32
    # Different vectors, so another index: an index of one is never searched with the other.
    assert int8_embedder.name == onnx_embedder.name + ":int8"
    assert numpy_embedder.precision == "fp32" and ":int8" not in numpy_embedder.name


def test_int8__a_text_reads_the_same_alone_and_among_others(int8_embedder: LocalEmbedder) -> None:
    """Its activations are quantised with one scale per run: batched, a text's vector would
    depend on its neighbours (an index's reused vectors and the answer's cached words would
    then depend on what was embedded before)."""
    texts = _texts()
    together = int8_embedder.embed_documents(texts)
    alone = np.stack([int8_embedder.embed_query(t) for t in texts])
    assert np.array_equal(together, alone)
    vectors, tokens = int8_embedder.embed_documents_and_tokens(texts[:4])
    assert np.array_equal(vectors, together[:4])
    for text, states in zip(texts[:4], tokens, strict=True):
        assert np.array_equal(states, int8_embedder.embed_tokens([text])[0])


def test_int8_graph__made_once_from_the_float32_one_verified_and_the_same_every_time(
    graph_cache: Path, tmp_path: Path
) -> None:
    folder = _copy_of(graph_cache, tmp_path)
    good = (folder / minilm_onnx.QUANTIZED).read_bytes()
    for name in (minilm_onnx.QUANTIZED, minilm_onnx.QUANTIZED_RECORD):
        (folder / name).unlink()
    calls, load = _counting_loader()
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    made = minilm_onnx.cached_quantized(tmp_path, load)  # type: ignore[arg-type]
    assert (root.handlers[:], root.level) == before  # the quantizer's logging set-up undone
    assert made == folder / minilm_onnx.QUANTIZED and calls == []  # from the cached graph
    assert made.read_bytes() == good  # deterministic
    record = json.loads((folder / minilm_onnx.QUANTIZED_RECORD).read_text())
    assert record["sha256"] == hashlib.sha256(good).hexdigest()
    assert record["weights_sha256"] == minilm.WEIGHTS_SHA256
    _flip_a_byte(folder / minilm_onnx.QUANTIZED)
    assert not minilm_onnx.quantized_verified(folder)
    again = minilm_onnx.cached_quantized(tmp_path, load)  # type: ignore[arg-type]
    assert again == made and again.read_bytes() == good and minilm_onnx.quantized_verified(folder)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_precision__unknown_says_which_exist() -> None:
    with pytest.raises(Exception, match="int8, fp32"):
        LocalEmbedder(precision="fp16")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the cached graph


def _counting_loader() -> tuple[list[int], object]:
    calls: list[int] = []

    def load() -> minilm.Model:
        calls.append(1)
        return minilm.load_model(minilm.local_model_dir())

    return calls, load


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_graph_cache__built_once_then_read_back_verified(tmp_path: Path) -> None:
    tmp_path = tmp_path / "cache"
    calls, load = _counting_loader()
    first = minilm_onnx.cached_graph(tmp_path, load)  # type: ignore[arg-type]
    folder = minilm_onnx.graph_dir(tmp_path)
    assert first == folder / minilm_onnx.GRAPH
    record = json.loads((folder / minilm_onnx.RECORD).read_text())
    assert record["weights_sha256"] == minilm.WEIGHTS_SHA256
    for name in (minilm_onnx.GRAPH, minilm_onnx.WEIGHTS):
        assert record["files"][name] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert minilm.WEIGHTS_SHA256[:16] in folder.name
    assert (folder / minilm_onnx.WEIGHTS).stat().st_size > 80_000_000  # the weights, outside
    again = minilm_onnx.cached_graph(tmp_path, load)  # type: ignore[arg-type]
    assert again == first and calls == [1]  # the second call verified the files, built nothing
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporary left behind


def test_graph_cache__a_new_build_removes_graphs_of_other_versions(
    graph_cache: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    stale = cache / f"{minilm.MODEL_NAME}-{minilm.WEIGHTS_SHA256[:16]}-g0"
    stale.mkdir(parents=True)
    (stale / minilm_onnx.WEIGHTS).write_bytes(b"old weights")
    unrelated = cache / "something-else"
    unrelated.mkdir()
    calls, load = _counting_loader()
    minilm_onnx.cached_graph(cache, load)  # type: ignore[arg-type]
    assert not stale.exists() and unrelated.is_dir()
    assert minilm_onnx.verified(minilm_onnx.graph_dir(cache))


def test_graph_cache__keeps_another_version_opened_within_a_week(
    graph_cache: Path, tmp_path: Path
) -> None:
    """Two installed versions on one machine must not remove each other's graph at every
    start (each start would rebuild its own)."""
    cache = tmp_path / "cache"
    recent = cache / f"{minilm.MODEL_NAME}-{minilm.WEIGHTS_SHA256[:16]}-g98"
    old = cache / f"{minilm.MODEL_NAME}-{minilm.WEIGHTS_SHA256[:16]}-g99"
    for folder in (recent, old):
        folder.mkdir(parents=True)
        (folder / minilm_onnx.RECORD).write_text("{}")
    week = minilm_onnx.UNUSED_FOR
    os.utime(old / minilm_onnx.RECORD, (time.time() - week - 60,) * 2)
    calls, load = _counting_loader()
    minilm_onnx.cached_graph(cache, load)  # type: ignore[arg-type]
    assert recent.is_dir() and not old.exists()
    # Opening a verified graph marks it as in use.
    own = minilm_onnx.graph_dir(cache) / minilm_onnx.RECORD
    os.utime(own, (time.time() - week - 60,) * 2)
    minilm_onnx.cached_graph(cache, load)  # type: ignore[arg-type]
    assert own.stat().st_mtime > time.time() - 60 and calls == [1]


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_record(folder: Path, **changes: object) -> None:
    path = folder / minilm_onnx.RECORD
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


DAMAGES = {
    "a flipped byte in the weights": lambda f: _flip_a_byte(f / minilm_onnx.WEIGHTS),
    "a flipped byte in the graph": lambda f: _flip_a_byte(f / minilm_onnx.GRAPH),
    "truncated weights": lambda f: (f / minilm_onnx.WEIGHTS).write_bytes(b"\0" * 1000),
    "missing weights": lambda f: (f / minilm_onnx.WEIGHTS).unlink(),
    "a garbled record": lambda f: (f / minilm_onnx.RECORD).write_text("{not json"),
    "a record for other weights": lambda f: _edit_record(f, weights_sha256="0" * 64),
    "a record from another builder": lambda f: _edit_record(f, graph_version=0),
}


def _copy_of(graph_cache: Path, tmp_path: Path) -> Path:
    """A private copy of the module's verified cache, so that each case starts from good files."""
    folder = minilm_onnx.graph_dir(tmp_path)
    shutil.copytree(minilm_onnx.graph_dir(graph_cache), folder)
    assert minilm_onnx.verified(folder)
    return folder


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_graph_cache__damage_is_detected(damage: str, graph_cache: Path, tmp_path: Path) -> None:
    folder = _copy_of(graph_cache, tmp_path)
    DAMAGES[damage](folder)
    assert not minilm_onnx.verified(folder)


def test_graph_cache__damaged_is_rebuilt_never_run(graph_cache: Path, tmp_path: Path) -> None:
    folder = _copy_of(graph_cache, tmp_path)
    _flip_a_byte(folder / minilm_onnx.WEIGHTS)
    calls, load = _counting_loader()
    rebuilt = minilm_onnx.cached_graph(tmp_path, load)  # type: ignore[arg-type]
    assert calls == [1] and rebuilt == folder / minilm_onnx.GRAPH
    assert minilm_onnx.verified(folder)
    good = minilm_onnx.graph_dir(graph_cache)
    # The build is deterministic: the same files (the int8 graph went with the damaged folder;
    # it is made again from the new one when asked for).
    fp32 = (minilm_onnx.GRAPH, minilm_onnx.WEIGHTS, minilm_onnx.RECORD)
    assert _digests(folder) == {k: v for k, v in _digests(good).items() if k in fp32}


def test_graph_cache__unwritable_folder_still_gives_a_graph(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    calls, load = _counting_loader()
    data = minilm_onnx.cached_graph(blocker / "models", load)  # type: ignore[arg-type]
    # Built in memory, weights included; nothing written, nothing raised.
    assert isinstance(data, bytes) and len(data) > 80_000_000


# ---------------------------------------------------------------- choosing the runtime


def _without(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make ``import module`` fail, as on a machine without it, and forget the open session."""
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(minilm_onnx, "_sessions", {})


def test_auto__falls_back_to_numpy_without_onnxruntime(
    monkeypatch: pytest.MonkeyPatch, numpy_embedder: LocalEmbedder, tmp_path: Path
) -> None:
    _without(monkeypatch, "onnxruntime")
    embedder = LocalEmbedder(runtime="auto", cache_dir=tmp_path)
    assert embedder.runtime == "numpy"
    text = "What supervision do peer workers need?"
    assert np.abs(embedder.embed_query(text) - numpy_embedder.embed_query(text)).max() < 1e-6
    with pytest.raises(ModelError, match="PEERQA_LOCAL_RUNTIME=numpy"):
        LocalEmbedder(runtime="onnx", cache_dir=tmp_path)


def test_onnx_package__needed_only_to_build_the_graph(
    monkeypatch: pytest.MonkeyPatch, graph_cache: Path, onnx_embedder: LocalEmbedder,
    tmp_path: Path,
) -> None:
    _without(monkeypatch, "onnx")
    for precision in minilm_onnx.PRECISIONS:  # both graphs are cached: onnx is not imported
        embedder = LocalEmbedder(runtime="auto", cache_dir=graph_cache, precision=precision)
        assert embedder.runtime == "onnxruntime" and embedder.precision == precision
    monkeypatch.setattr(minilm_onnx, "_sessions", {})
    assert LocalEmbedder(runtime="auto", cache_dir=tmp_path / "empty").runtime == "numpy"


def test_unknown_runtime__says_which_exist() -> None:
    with pytest.raises(Exception, match="auto, onnx, numpy"):
        LocalEmbedder(runtime="gpu")  # type: ignore[arg-type]


# ---------------------------------------------------------------- threads


def test_onnx_session__runs_on_one_thread(
    onnx_embedder: LocalEmbedder, int8_embedder: LocalEmbedder
) -> None:
    for embedder in (onnx_embedder, int8_embedder):
        assert embedder._onnx is not None
        options = embedder._onnx._session.get_session_options()
        assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1


def test_blas_threads__scoped_then_restored() -> None:
    before = blas_threads_now()
    assert before, "numpy's BLAS should be visible to threadpoolctl"
    with blas_threads(1):
        assert blas_threads_now() == [1] * len(before)
        with blas_threads(2):  # nested: the lower limit already holds
            assert blas_threads_now() == [1] * len(before)
    assert blas_threads_now() == before


def test_blas_threads__overlapping_calls_restore_once_the_last_leaves() -> None:
    before = blas_threads_now()
    entered, release = threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def other() -> None:
        with blas_threads(1):
            entered.set()
            release.wait(10)
            seen.append(blas_threads_now())

    worker = threading.Thread(target=other)
    with blas_threads(1):
        worker.start()
        assert entered.wait(10)
    # This thread has left; the other is still inside and must keep its single thread.
    assert blas_threads_now() == [1] * len(before)
    release.set()
    worker.join(10)
    assert seen == [[1] * len(before)]
    assert blas_threads_now() == before


def test_blas_threads__restored_when_the_block_raises() -> None:
    before = blas_threads_now()
    with pytest.raises(RuntimeError), blas_threads(1):
        raise RuntimeError("boom")
    assert blas_threads_now() == before


def test_numpy_runtime__one_thread_for_a_question_two_for_a_build(
    monkeypatch: pytest.MonkeyPatch, numpy_embedder: LocalEmbedder
) -> None:
    seen: list[list[int]] = []
    real = minilm.encode

    def spy(model: minilm.Model, seqs: list[list[int]]) -> np.ndarray:
        seen.append(blas_threads_now())
        return real(model, seqs)

    monkeypatch.setattr(minilm, "encode", spy)
    numpy_embedder.embed_query("What training do peer workers need?")
    assert seen[-1] == [1] * len(seen[-1])
    LocalEmbedder(runtime="numpy", batch_size=2).embed_documents(["a b", "c", "d e f", "g"])
    assert all(n <= BUILD_THREADS for n in seen[-1])


def test_onnx_runtime__one_worker_for_a_question_two_for_a_build(
    monkeypatch: pytest.MonkeyPatch, onnx_embedder: LocalEmbedder, int8_embedder: LocalEmbedder
) -> None:
    seen: list[tuple[int, int]] = []
    real = minilm_onnx.OnnxEncoder.encode_batches

    def spy(self: minilm_onnx.OnnxEncoder, batches, threads, done) -> None:  # type: ignore[no-untyped-def]
        seen.append((len(batches), threads))
        real(self, batches, threads, done)

    monkeypatch.setattr(minilm_onnx.OnnxEncoder, "encode_batches", spy)
    onnx_embedder.embed_query("What training do peer workers need?")
    LocalEmbedder(runtime="onnx", batch_size=2).embed_documents(["a b", "c", "d e f", "g"])
    assert seen == [(1, 1), (2, local_module.BUILD_THREADS)]
    # int8 reads each text alone; a small call (a question's variants) still runs on one thread.
    seen.clear()
    int8_embedder.embed_documents(["What training?", "What peer workers need?", "training"])
    LocalEmbedder(runtime="onnx", batch_size=2, precision="int8").embed_documents(
        ["a b", "c", "d e f", "g"])
    assert seen == [(3, 1), (4, local_module.BUILD_THREADS)]


def test_ask_and_search__run_their_numpy_work_on_one_blas_thread(
    tiny_fake: Assistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[int]] = []
    real = Retriever.search

    def spy(self: Retriever, *args: Any, **kwargs: Any) -> Any:
        seen.append(blas_threads_now())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Retriever, "search", spy)
    before = blas_threads_now()
    tiny_fake.ask("What training do peer workers need?")
    tiny_fake.search("supervision")
    assert len(seen) == 2 and all(s == [1] * len(before) for s in seen)
    assert blas_threads_now() == before
