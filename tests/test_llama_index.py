"""peerqa from llama-index, driven through llama-index's own machinery, offline (no LLM)."""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Document as LlamaDocument
from llama_index.core import Settings as LlamaSettings
from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.retrievers import BaseRetriever, QueryFusionRetriever

from peerqa import Assistant, Passage
from peerqa.llama_index import (
    PeerQAEmbedding,
    PeerQAQueryEngine,
    PeerQARetriever,
    fallback_relevance,
    passage_node,
)
from peerqa.settings import _cache_root
from tests.helpers import REPO, FakeEmbedder

QUESTION = "What training do peer workers need?"
OUTSIDE = "What are the tax rules for cryptocurrency mining?"


class RefusingLLM(MockLLM):
    """An LLM that fails if anything asks it for text: proves a pipeline needs none."""

    def complete(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the LLM was called")

    async def acomplete(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the LLM was called")


@pytest.fixture(autouse=True)
def _global_settings_untouched():
    """Nothing here may set or resolve llama-index's global LLM (it would be OpenAI)."""
    before = LlamaSettings._llm
    yield
    assert LlamaSettings._llm is before is None


def test_retriever__nodes_are_verbatim_passages_with_offsets_metadata_and_0_to_1_scores(
    tiny_fake: Assistant,
):
    nodes = tiny_fake.as_retriever(k=4).retrieve(QUESTION)
    passages = tiny_fake.search(QUESTION, k=4)
    assert len(nodes) == 4
    for scored, passage in zip(nodes, passages, strict=True):
        node = scored.node
        doc = tiny_fake.document(node.metadata["doc_id"])
        assert node.text == doc.text[node.start_char_idx : node.end_char_idx]
        assert (node.start_char_idx, node.end_char_idx) == (passage.start, passage.end)
        assert node.metadata == {"doc_id": passage.doc_id, "title": passage.title,
                                 "section": passage.section, "year": passage.year}
        assert node.ref_doc_id == passage.doc_id
        assert passage.relevance is not None  # calibrated: the node's score is the relevance
        assert scored.score == pytest.approx(passage.relevance)
        assert 0 <= scored.score <= 1
    scores = [n.score for n in nodes]
    assert scores == sorted(scores, reverse=True)


def test_node_score__is_the_calibrated_relevance_when_there_is_one():
    passage = Passage("d", "Doc", "Intro", "Text.", 0, 5, score=3.04, relevance=0.42, page=7)
    scored = passage_node(passage)
    assert scored.score == 0.42 and scored.node.metadata["page"] == 7


def test_fallback_relevance__keeps_the_order_of_scores_within_0_and_1():
    scores = [-1000.0, -3.0, -0.34, 0.0, 0.5, 2.73, 3.04, 1000.0]
    mapped = [fallback_relevance(s) for s in scores]
    assert mapped == sorted(mapped) and len(set(mapped[1:-1])) == len(mapped) - 2
    assert all(0.0 <= m <= 1.0 for m in mapped)
    assert fallback_relevance(0.0) == 0.5
    assert fallback_relevance(2.0) == pytest.approx(1 / (1 + math.exp(-2)))


def test_retriever_query_engine__similarity_cutoff_works_on_peerqa_scores(tiny_fake: Assistant):
    retriever = tiny_fake.as_retriever(k=5)
    everything = retriever.retrieve(QUESTION)
    cutoff = (everything[1].score + everything[2].score) / 2  # between the 2nd and 3rd
    engine = RetrieverQueryEngine(
        retriever,
        response_synthesizer=NoText(llm=RefusingLLM()),
        node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=cutoff)],
    )
    response = engine.query(QUESTION)
    assert [n.node.node_id for n in response.source_nodes] == \
        [n.node.node_id for n in everything[:2]]


def test_query_fusion_retriever__combines_peerqa_with_a_vector_index_without_an_llm(
    tiny_fake: Assistant,
):
    vector_index = VectorStoreIndex.from_documents(
        [LlamaDocument(text=d.text, id_=d.doc_id) for d in tiny_fake.documents],
        embed_model=PeerQAEmbedding(tiny_fake.embedder),
    )
    fusion = QueryFusionRetriever(
        [tiny_fake.as_retriever(k=3), vector_index.as_retriever(similarity_top_k=3)],
        llm=RefusingLLM(),  # without one it resolves the global default (OpenAI) at once
        num_queries=1, mode="reciprocal_rerank", similarity_top_k=6,
    )
    nodes = fusion.retrieve(QUESTION)
    peerqa_ids = {n.node.node_id for n in tiny_fake.as_retriever(k=3).retrieve(QUESTION)}
    from_peerqa = [n for n in nodes if n.node.node_id in peerqa_ids]
    from_vectors = [n for n in nodes if n.node.node_id not in peerqa_ids]
    assert len(from_peerqa) == 3 and from_vectors
    for n in from_peerqa:
        doc = tiny_fake.document(n.node.metadata["doc_id"])
        assert doc.text[n.node.start_char_idx : n.node.end_char_idx] == n.node.text


def test_query_engine__response_is_the_cited_answer_with_its_citations_as_source_nodes(
    tiny_fake: Assistant,
):
    engine = tiny_fake.as_query_engine()
    assert isinstance(engine, PeerQAQueryEngine)
    response = engine.query(QUESTION)
    answer = tiny_fake.ask(QUESTION)
    assert response.response == answer.text and "[1]" in response.response
    assert [n.node.metadata["number"] for n in response.source_nodes] == \
        [c.number for c in answer.citations]
    for n, c in zip(response.source_nodes, answer.citations, strict=True):
        assert (n.node.text, n.node.start_char_idx, n.node.end_char_idx) == (c.text, c.start,
                                                                           c.end)
        assert n.node.metadata["highlights"] == [list(h) for h in c.highlights]
    meta = response.metadata
    assert meta["coverage"] == "answered" and meta["abstained"] is False
    assert meta["checks"]["markers_resolve"] is True and meta["closest"] == []
    assert meta["answer"] == answer


def test_query_engine__async_query_abstains_without_presenting_sources(tiny_fake: Assistant):
    response = asyncio.run(tiny_fake.as_query_engine().aquery(OUTSIDE))
    assert response.source_nodes == []
    assert response.metadata["coverage"] == "not_covered"
    assert response.metadata["closest"]  # the nearest passages, kept apart from sources


def test_shortcuts__pass_k_and_the_document_filter(tiny_fake: Assistant):
    retriever = tiny_fake.as_retriever(k=2, doc_ids=["pilot-notes"])
    assert isinstance(retriever, PeerQARetriever) and isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve(QUESTION)
    assert len(nodes) == 2 and {n.node.metadata["doc_id"] for n in nodes} == {"pilot-notes"}
    engine = tiny_fake.as_query_engine(doc_ids=["pilot-notes"])
    assert {n.node.metadata["doc_id"] for n in engine.query(QUESTION).source_nodes} <= \
        {"pilot-notes"}


def test_from_documents__simple_directory_reader_documents_are_quoted_verbatim(
    tiny_corpus: Path, tmp_path: Path
):
    raw = "# Night shifts\r\n\r\nPeer workers on night shifts get a weekly debrief.\r\n"
    (tiny_corpus / "night-shifts.md").write_bytes(raw.encode())
    docs = SimpleDirectoryReader(str(tiny_corpus)).load_data()
    assistant = Assistant.from_documents(docs, index_dir=tmp_path / "idx",
                                         embedder=FakeEmbedder())
    assert {d.doc_id for d in assistant.documents} == {
        "bibliography", "night-shifts", "pilot-notes", "training-guide"}
    night = assistant.document("night-shifts")
    assert night.text == raw and night.title == "Night shifts"
    top = assistant.search("night shifts weekly debrief", k=1)[0]
    assert top.doc_id == "night-shifts"
    assert raw[top.start : top.end] == top.text
    answer = assistant.ask("How often do night shift peer workers get a debrief?")
    assert answer.citations and answer.citations[0].text in raw


def test_from_documents__pages_of_one_file_become_one_document_with_pages(tmp_path: Path):
    pages = ["Induction covers the ward routine.", "Night shifts end with a weekly debrief."]
    docs = [LlamaDocument(text=t, metadata={"file_path": "/x/guide.pdf", "file_name": "guide.pdf",
                                            "page_label": str(i)})
            for i, t in enumerate(pages, start=1)]
    assistant = Assistant.from_documents(docs, index_dir=tmp_path / "idx",
                                         embedder=FakeEmbedder())
    (doc,) = assistant.documents
    assert doc.doc_id == "guide" and doc.text == "\n".join(pages)
    top = assistant.search("weekly debrief night shifts", k=1)[0]
    assert top.page == 2 and top.text == pages[1]


def test_from_documents__keeps_its_index_apart_from_the_bundled_corpus(tmp_path: Path):
    assistant = Assistant.from_documents([LlamaDocument(text="Peer workers need support.")],
                                         embedder=FakeEmbedder())
    default = Assistant().store.directory
    assert assistant.store.directory != default
    assert assistant.store.directory.parent == _cache_root()


def test_import__peerqa_does_not_import_llama_index_and_the_face_loads_no_model():
    code = (
        "import sys\n"
        "import peerqa\n"
        "assert 'llama_index.core' not in sys.modules, 'peerqa imported llama-index'\n"
        "import peerqa.llama_index\n"
        "a = peerqa.Assistant()\n"
        "a.as_retriever(k=3); a.as_query_engine()\n"
        "assert a.live._embedder is None and a.live._retriever is None, 'something was loaded'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_readme_section__its_examples_run_offline(
    corpus_index_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Using peerqa from llama-index"):]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)\n```", section, re.S)
    assert len(blocks) == 2
    monkeypatch.setenv("PEERQA_INDEX_DIR", str(corpus_index_dir))
    namespace: dict[str, Any] = {}
    exec(blocks[0], namespace)
    printed = capsys.readouterr().out.splitlines()
    # 5 passages, the answer (one line or more), its citation numbers, its coverage
    assert len(printed) >= 5 + 3 and printed[-2].startswith("[1")
    assert printed[-1].split()[0] in {"answered", "partial"}
    namespace["other_retriever"] = namespace["assistant"].as_retriever(
        k=3, doc_ids=["hee-evidence-brief"])
    exec(blocks[1], namespace)
    response = namespace["engine"].query("What supervision do peer workers need?")
    assert all(n.score >= 0.7 for n in response.source_nodes)
    assert namespace["fused"].retrieve("What supervision do peer workers need?")
