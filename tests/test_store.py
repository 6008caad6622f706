from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from peerqa import Assistant, IndexLockedError, IndexNotFoundError, StoreError
from peerqa.store import IndexStore
from tests.helpers import FakeEmbedder


def _run(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout,
    )


def test_index__built_once_then_reused(tiny_assistant):
    first = tiny_assistant.index()
    assert first.built and first.n_documents == 3 and first.n_chunks >= 4
    again = Assistant(corpus_dir=tiny_assistant.settings.corpus_dir,
                      index_dir=tiny_assistant.settings.index_dir).index()
    assert not again.built
    assert again.generation == first.generation


def test_index__rebuilt_when_a_document_changes_reusing_unchanged_vectors(
    tiny_assistant, tiny_corpus
):
    first = tiny_assistant.index()
    (tiny_corpus / "extra.txt").write_text("Peer workers in prisons\n\nPrison teams need support.")
    fresh = Assistant(corpus_dir=tiny_corpus, index_dir=tiny_assistant.settings.index_dir)
    calls: list[tuple[str, int, int]] = []
    info = fresh.index(progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert info.built and info.generation != first.generation
    embedding = [c for c in calls if c[0] == "embedding"]
    # Every old chunk's vector is reused: embedding starts past them.
    assert embedding[0][1] == first.n_chunks and embedding[-1][1] == info.n_chunks
    assert fresh.search("prison teams", k=1)[0].doc_id == "extra"


def test_index__rebuilt_when_chunking_settings_change(tiny_assistant):
    first = tiny_assistant.index()
    other = Assistant(corpus_dir=tiny_assistant.settings.corpus_dir,
                      index_dir=tiny_assistant.settings.index_dir, chunk_target_words=30,
                      chunk_max_words=40)
    assert other.index().generation != first.generation


def test_index__keeps_the_previous_generation_and_prunes_older(tiny_assistant):
    names = [tiny_assistant.index(rebuild=True).generation for _ in range(3)]
    gens = sorted(p.name for p in (tiny_assistant.store.directory / "generations").iterdir())
    assert gens == sorted(names[-2:])


def test_open__before_any_build_says_how_to_build(tmp_path):
    with pytest.raises(IndexNotFoundError, match="peerqa index"):
        IndexStore(tmp_path / "none").open()


def test_killed_build__leaves_the_previous_index_live(tiny_assistant, tiny_corpus):
    first = tiny_assistant.index()
    (tiny_corpus / "extra.txt").write_text("Extra\n\nSomething new about peer mentoring schemes.")
    result = _run(
        """
        import os, signal, sys
        from peerqa import Assistant
        a = Assistant(corpus_dir=sys.argv[1], index_dir=sys.argv[2])
        def progress(stage, done, total):
            if stage == "storing":
                os.kill(os.getpid(), signal.SIGKILL)
        a.index(progress=progress)
        """,
        str(tiny_corpus), str(tiny_assistant.settings.index_dir),
    )
    assert result.returncode == -9, result.stderr
    store = IndexStore(tiny_assistant.settings.index_dir)
    assert store.current_name() == first.generation
    gen = store.open()
    vector = gen.vectors()[0]
    assert gen.query(vector, 1)[0][0] == gen.chunks[0].chunk_id
    leftovers = [p for p in (store.directory / "generations").iterdir()
                 if p.name != first.generation]
    assert leftovers, "the killed build should have left a partial generation"
    info = Assistant(corpus_dir=tiny_corpus, index_dir=store.directory).index()
    assert info.built
    remaining = {p.name for p in (store.directory / "generations").iterdir()}
    assert remaining == {first.generation, info.generation}


def test_second_writer__fails_at_once_with_a_clear_error(tiny_assistant):
    tiny_assistant.index()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            """
            import sys, time
            from peerqa.store import IndexStore
            with IndexStore(sys.argv[1]).write_lock():
                print("locked", flush=True)
                sys.stdin.readline()
            """), str(tiny_assistant.settings.index_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(IndexLockedError, match="another process is building"):
            tiny_assistant.index(rebuild=True)
        # Readers are not blocked by a writer.
        assert tiny_assistant.search("supervision", k=1)
    finally:
        holder.communicate("\n", timeout=30)
    assert tiny_assistant.index(rebuild=True).built


def test_manifest__records_model_chunking_and_content_hashes(tiny_assistant):
    tiny_assistant.index()
    manifest = tiny_assistant.store.current_manifest()
    assert manifest["embedder"] == tiny_assistant.embedder.name
    assert manifest["chunk_max_words"] == 150
    assert set(manifest["documents"]) == {"training-guide", "pilot-notes", "bibliography"}
    gen_dir = tiny_assistant.store.directory / "generations" / manifest["generation"]
    chunks = [json.loads(line) for line in (gen_dir / "chunks.jsonl").read_text().splitlines()]
    assert len(chunks) == manifest["n_chunks"] == len(np.load(gen_dir / "vectors.npy"))


def test_corrupt_pointer__is_rebuilt_like_a_missing_index_reusing_every_vector(
    tiny_corpus, tmp_path
):
    index = tmp_path / "idx"
    first = Assistant(corpus_dir=tiny_corpus, index_dir=index, embedder=FakeEmbedder()).index()
    (index / "CURRENT").write_text("{broken")
    with pytest.raises(StoreError, match="run `peerqa index`"):
        IndexStore(index).open()
    embedder = FakeEmbedder()
    fresh = Assistant(corpus_dir=tiny_corpus, index_dir=index, embedder=embedder)
    assert fresh.search("supervision", k=1)
    assert fresh.retriever.generation.name != first.generation
    assert embedder.built == []  # the newest generation on disk gave every vector


def test_sentence_vectors__stored_per_sentence_with_exact_offsets_and_reused(
    tiny_assistant, tiny_corpus
):
    calls: list[tuple[str, int, int]] = []
    first = tiny_assistant.index(progress=lambda *c: calls.append(c))
    gen = tiny_assistant.store.open()
    sentences = gen.sentences()
    assert sentences is not None and len(sentences.vectors) > first.n_chunks
    norms = np.linalg.norm(sentences.vectors, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-4)
    for row, (a, b) in zip(sentences.chunk, sentences.spans, strict=True):
        chunk = gen.chunks[row]
        assert chunk.start <= a < b <= chunk.end
        text = tiny_assistant.document(chunk.doc_id).text[a:b]
        assert text == text.strip() and text
    assert [c for c in calls if c[0] == "sentences"][-1][1] == len(sentences.vectors)
    # A rebuild with one new document embeds only the new document's sentences.
    (tiny_corpus / "extra.txt").write_text("Extra\n\nPrison teams need peer support. Often.")
    again: list[tuple[str, int, int]] = []
    fresh = Assistant(corpus_dir=tiny_corpus, index_dir=tiny_assistant.settings.index_dir)
    fresh.index(progress=lambda *c: again.append(c))
    stage = [c for c in again if c[0] == "sentences"]
    assert stage[0][1] == len(sentences.vectors)  # all old sentence vectors reused
    hit = fresh.retriever.search("prison teams", k=1)[0]
    assert hit.passage.doc_id == "extra" and hit.sentences and hit.sentences[0][2] > 0.3
