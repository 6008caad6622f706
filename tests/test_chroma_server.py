"""The store against a real `chroma run` server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from peerqa import Assistant
from tests.helpers import (
    FakeEmbedder,
    fake_peerqa,
    free_port,
    stop,
    synthetic_corpus,
    wait_for_http,
)

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    exe = Path(sys.executable).with_name("chroma")
    chroma = str(exe) if exe.exists() else shutil.which("chroma")
    if not chroma:
        pytest.fail("the `chroma` command (from chromadb) is not installed next to Python")
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=60, proc=proc)
        yield port
    finally:
        stop(proc)


def test_chroma_server__index_search_and_ask(chroma_server, tiny_corpus, tmp_path):
    a = Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "idx",
                  chroma_host="127.0.0.1", chroma_port=chroma_server)
    info = a.index()
    assert info.built
    gen_dir = tmp_path / "idx" / "generations" / info.generation
    assert not (gen_dir / "chroma").exists(), "vectors belong on the server, not on local disk"

    import chromadb
    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server)
    names = {c.name for c in client.list_collections()}
    assert f"peerqa-{info.generation}" in names
    assert client.get_collection(f"peerqa-{info.generation}").count() == info.n_chunks

    passages = a.search("how often should supervision happen", k=2)
    assert passages[0].doc_id == "training-guide" and "monthly" in passages[0].text
    answer = a.ask("How often should peer workers get supervision?")
    assert not answer.abstained
    assert any("monthly" in c.text for c in answer.citations)

    # A second process (here: a second Assistant) reads the same generation from the server.
    other = Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "idx",
                      chroma_host="127.0.0.1", chroma_port=chroma_server)
    assert not other.index().built
    assert other.search("rural travel", k=1)[0].doc_id == "bibliography"

    rebuilt = a.index(rebuild=True)
    rebuilt_again = a.index(rebuild=True)
    names = {c.name for c in client.list_collections()}
    assert f"peerqa-{info.generation}" not in names, "generations before the previous are dropped"
    assert {f"peerqa-{rebuilt.generation}", f"peerqa-{rebuilt_again.generation}"} <= names


def test_chroma_server__unreachable_server_is_a_clear_error(tiny_corpus, tmp_path):
    from peerqa import StoreError
    a = Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "idx",
                  chroma_host="127.0.0.1", chroma_port=free_port())
    with pytest.raises(StoreError, match="chroma run"):
        a.index()


@pytest.mark.parametrize("size", [
    pytest.param((12, 90, 1000), id="1080-chunks"),
    pytest.param((40, 210, 8000), id="8400-chunks", marks=pytest.mark.slow),
])
def test_chroma_server__large_corpus_reopened_by_a_new_process(chroma_server, tmp_path, size):
    documents, paragraphs, at_least = size
    corpus = synthetic_corpus(tmp_path / "corpus", documents, paragraphs)
    location = {"chroma_host": "127.0.0.1", "chroma_port": chroma_server}
    a = Assistant(corpus_dir=corpus, index_dir=tmp_path / "idx", embedder=FakeEmbedder(),
                  **location)
    info = a.index()
    assert info.n_chunks > at_least
    queries = ("peer3 team17 care42 ward8", "staff51 trust9 group33")
    expected = {q: [p.chunk_id for p in a.search(q, k=5)] for q in queries}
    r = fake_peerqa("search", str(corpus), str(tmp_path / "idx"), "5", *queries, timeout=600,
                    PEERQA_CHROMA_HOST="127.0.0.1", PEERQA_CHROMA_PORT=str(chroma_server))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == expected
    assert a.store.damage() is None  # the probe query ran against the server
