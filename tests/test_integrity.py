"""The index on disk against damage: every generation file cut short, garbled or deleted; a
generation written by another chromadb; Chroma's own panic report kept off the terminal."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import chromadb
import pytest

from peerqa import Assistant, StoreError
from peerqa.errors import IndexDamagedError
from peerqa.store import IndexStore
from tests.helpers import DAMAGE_MODES, TINY, FakeEmbedder, damage

QUERY = "How often should supervision happen?"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny corpus and its index (fake embedder), built once; tests damage copies."""
    root = tmp_path_factory.mktemp("integrity")
    corpus = root / "corpus"
    shutil.copytree(TINY, corpus)
    Assistant(corpus_dir=corpus, index_dir=root / "index", embedder=FakeEmbedder()).index()
    return corpus, root / "index"


def _copy(pristine: tuple[Path, Path], target: Path) -> Path:
    shutil.copytree(pristine[1], target)
    return target


def _live(index: Path) -> Path:
    return index / "generations" / json.loads((index / "CURRENT").read_text())["generation"]


def _files(index: Path) -> list[str]:
    """Every file of the live generation (whatever a build writes), and CURRENT."""
    live = _live(index)
    found = sorted(p.relative_to(live).as_posix() for p in live.rglob("*") if p.is_file())
    return [*found, "../../CURRENT"]


def _assistant(corpus: Path, index: Path, embedder: FakeEmbedder | None = None) -> Assistant:
    return Assistant(corpus_dir=corpus, index_dir=index, embedder=embedder or FakeEmbedder())


def _resign(index: Path, **changes: object) -> None:
    """Change the live manifest and record its new hash in CURRENT, as a build would."""
    manifest_path = _live(index) / "manifest.json"
    manifest = {**json.loads(manifest_path.read_text()), **changes}
    data = json.dumps(manifest, indent=1).encode()
    manifest_path.write_bytes(data)
    pointer = json.loads((index / "CURRENT").read_text())
    pointer["manifest_sha256"] = hashlib.sha256(data).hexdigest()
    (index / "CURRENT").write_text(json.dumps(pointer))


def test_manifest__records_every_file_with_size_and_hash_and_the_chromadb_version(pristine):
    _, index = pristine
    live = _live(index)
    manifest = json.loads((live / "manifest.json").read_text())
    assert manifest["chromadb"] == chromadb.__version__
    on_disk = {p.relative_to(live).as_posix() for p in live.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    assert {"chunks.jsonl", "chunk_table.npz", "vectors.npy", "sentence_chunks.npy",
            "sentence_spans.npy", "sentence_rows.npy", "sentence_vectors.npy", "keys.json",
            "vocabulary.json", "bm25/terms.json", "bm25/data.npy", "bm25/indices.npy",
            "bm25/indptr.npy", "chroma/chroma.sqlite3"} <= on_disk
    for rel, record in manifest["files"].items():
        if not rel.endswith(".sqlite3"):  # Chroma adds a lock row each time it opens it
            data = (live / rel).read_bytes()
            assert record == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    pointer = json.loads((index / "CURRENT").read_text())
    assert pointer["manifest_sha256"] == hashlib.sha256(
        (live / "manifest.json").read_bytes()).hexdigest()


def test_opening_and_searching__leave_the_recorded_files_as_they_were(pristine, tmp_path):
    corpus, _ = pristine
    index = _copy(pristine, tmp_path / "index")
    for _ in range(2):
        assert _assistant(corpus, index).search(QUERY)
    assert IndexStore(index).damage() is None  # every hash still holds after two readers


@pytest.mark.parametrize("mode", DAMAGE_MODES)
def test_damaged_generation_file__one_line_then_peerqa_index_repairs_it_reusing_sound_vectors(
    pristine, tmp_path, mode, capfd
):
    corpus, _ = pristine
    chunk_keys, sentence_keys = _assistant(corpus, pristine[1]).store.open().keys()
    n_chunks, n_sentences = len(set(chunk_keys)), len(set(sentence_keys) - set(chunk_keys))
    files = _files(pristine[1])
    assert len(files) >= 8
    for i, rel in enumerate(files):
        index = _copy(pristine, tmp_path / f"{i}")
        path = _live(index) / rel
        if mode != "delete" and path.stat().st_size < 2:
            continue  # nothing to cut or garble (Chroma's empty link list)
        damage(path, mode, seed=i)
        case = f"{mode} {rel}"

        # The next search either works (an unreadable manifest or pointer is rebuilt as a
        # missing index is) or says in one line what to run.
        embedder = FakeEmbedder()
        try:
            assert _assistant(corpus, index, embedder).search(QUERY), case
        except StoreError as e:
            message = str(e)
            assert "\n" not in message and "run `peerqa index`" in message, (case, message)
        err = capfd.readouterr().err
        assert "panicked" not in err and "Traceback" not in err, (case, err)

        # `peerqa index` repairs it by itself, embedding only what no sound file holds.
        info = _assistant(corpus, index, embedder).index()
        assert IndexStore(index).damage() is None, case
        assert _assistant(corpus, index).search(QUERY), case
        rebuilt = _live(index).name != _live(pristine[1]).name
        if not rebuilt:  # the damage touched nothing Chroma or peerqa reads
            assert rel == "chroma/chroma.sqlite3" and mode == "garble", case
            continue
        assert info.repaired or not info.built, case
        embedded = sum(embedder.built)
        if rel == "vectors.npy":
            assert embedded == n_chunks, case
        elif rel in ("sentence_vectors.npy", "sentence_rows.npy"):
            assert embedded == n_sentences, case
        elif rel == "keys.json" or (rel == "manifest.json" and mode != "garble"):
            assert embedded == n_chunks + n_sentences, case  # the text keys are gone
        elif rel != "manifest.json":
            assert embedded == 0, case  # BM25, the counts, sentence offsets: rebuilt, not embedded


def test_rebuild__recovers_a_truncated_sentence_file_reusing_the_chunk_vectors(pristine, tmp_path):
    corpus, _ = pristine
    index = _copy(pristine, tmp_path / "index")
    damage(_live(index) / "sentence_vectors.npy", "truncate")
    with pytest.raises(IndexDamagedError, match=r"sentence_vectors.npy .*run `peerqa index`"):
        _assistant(corpus, index).search(QUERY)
    embedder = FakeEmbedder()
    info = _assistant(corpus, index, embedder).index(rebuild=True)
    assert info.built
    chunk_keys, sentence_keys = _assistant(corpus, index).store.open().keys()
    assert sum(embedder.built) == len(set(sentence_keys) - set(chunk_keys))
    assert _assistant(corpus, index).search(QUERY)


def test_generation_from_another_chromadb__used_when_a_query_works(pristine, tmp_path):
    corpus, _ = pristine
    index = _copy(pristine, tmp_path / "index")
    before = _live(index).name
    _resign(index, chromadb="0.4.24")
    a = _assistant(corpus, index)
    assert a.search(QUERY)
    assert a.retriever.generation.name == before  # checked by a probe query, kept


def test_generation_from_another_chromadb__rebuilt_from_stored_vectors_when_it_fails(
    pristine, tmp_path, capfd
):
    corpus, _ = pristine
    index = _copy(pristine, tmp_path / "index")
    before = _live(index).name
    _resign(index, chromadb="0.4.24")
    # What another version wrote and this one cannot read: Chroma's own record of the collection
    # no longer matches its vectors (any query raises inside Chroma).
    with sqlite3.connect(_live(index) / "chroma" / "chroma.sqlite3") as db:
        db.execute("UPDATE collections SET dimension = dimension + 1")
    embedder = FakeEmbedder()
    a = _assistant(corpus, index, embedder)
    assert a.search(QUERY)
    assert a.retriever.generation.name != before
    assert embedder.built == []  # every vector came from the stored generation
    assert "Traceback" not in capfd.readouterr().err


def test_chroma_panic__is_kept_off_the_terminal_and_becomes_one_line(pristine, tmp_path, capfd):
    corpus, _ = pristine
    index = _copy(pristine, tmp_path / "index")
    sqlite_file = _live(index) / "chroma" / "chroma.sqlite3"
    with open(sqlite_file, "r+b") as f:  # SQLite's second page: Chroma's Rust side panics
        f.seek(4096)
        f.write(b"\xa5" * 4096)
    # A search of every chunk is an exact scan of the checked vectors.npy: Chroma stays shut.
    assert _assistant(corpus, index).search(QUERY)
    # A search Chroma answers (fewer chunks than the index holds) meets the damage.
    generation = _assistant(corpus, index).store.open()
    with pytest.raises(StoreError) as info:
        generation.query(FakeEmbedder().embed_query(QUERY), 1)
    assert "\n" not in str(info.value) and "run `peerqa index`" in str(info.value)
    err = capfd.readouterr().err
    assert "panicked" not in err and "RUST_BACKTRACE" not in err
    repaired = _assistant(corpus, index).index()
    assert repaired.built and repaired.repaired and "\n" not in repaired.repaired
    assert "panicked" not in capfd.readouterr().err
    assert _assistant(corpus, index).search(QUERY)
