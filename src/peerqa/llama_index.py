"""peerqa inside llama-index: a retriever, a query engine, an embedding model, documents in.

    from peerqa import Assistant
    retriever = Assistant().as_retriever(k=5)        # a llama-index BaseRetriever
    engine = Assistant().as_query_engine()           # a llama-index query engine

Nodes carry the passage exactly as stored (``node.text == document.text[start:end]``), its
document offsets as ``start_char_idx`` / ``end_char_idx``, and ``doc_id``, ``title``,
``section``, ``year`` (and ``page`` for a PDF) as metadata. A node's score is the passage's
``relevance`` (0 to 1, comparable across questions) where peerqa has calibrated one; until then
it is ``fallback_relevance(score)``, a fixed monotone map of the ranking's own score, so that
llama-index's ``SimilarityPostprocessor(similarity_cutoff=...)`` can work on it.

Nothing here loads a model or reads llama-index's global ``Settings``: importing this module
and building its objects is cheap, and the first search opens the index.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.response.schema import Response
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import (
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from pydantic import PrivateAttr

from .corpus import Corpus, Skipped, _title_from_text
from .embeddings import Embedder
from .errors import CorpusError, InputError
from .types import Answer, Citation, Document, Passage

if TYPE_CHECKING:
    from .assistant import Assistant

__all__ = [
    "PeerQAEmbedding", "PeerQAQueryEngine", "PeerQARetriever", "corpus_from_documents",
    "fallback_relevance", "passage_node",
]


# --------------------------------------------------------------------------- scores and nodes


def fallback_relevance(score: float) -> float:
    """The ranking's score mapped into (0, 1) by the logistic function, 1 / (1 + e^-score).

    Used only while a passage has no calibrated ``relevance``. It keeps the order of the scores
    exactly; with the default z-score fusion a passage of average score maps to 0.5 and one two
    standard deviations above the rest to about 0.88. It is not a probability.
    """
    if score >= 0:
        return 1.0 / (1.0 + math.exp(-score))
    z = math.exp(score)  # the same value, without overflow for very negative scores
    return z / (1.0 + z)


def node_score(passage: Passage) -> float:
    """The score llama-index sees: the calibrated relevance, else the fallback map."""
    if passage.relevance is not None:
        return float(passage.relevance)
    return fallback_relevance(passage.score)


def passage_node(passage: Passage) -> NodeWithScore:
    """A passage (or citation) as a llama-index node, its text verbatim and its offsets kept."""
    metadata: dict[str, Any] = {
        "doc_id": passage.doc_id,
        "title": passage.title,
        "section": passage.section,
        "year": passage.year,
    }
    if passage.page is not None:
        metadata["page"] = passage.page
    if isinstance(passage, Citation):
        metadata["number"] = passage.number
        metadata["highlights"] = [list(h) for h in passage.highlights]
    node = TextNode(
        id_=passage.chunk_id or f"{passage.doc_id}:{passage.start}-{passage.end}",
        text=passage.text,
        start_char_idx=passage.start,
        end_char_idx=passage.end,
        metadata=metadata,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=passage.doc_id)},
    )
    return NodeWithScore(node=node, score=node_score(passage))


# --------------------------------------------------------------------------- retriever


class PeerQARetriever(BaseRetriever):
    """peerqa's hybrid search as a llama-index retriever: the ``k`` best passages as nodes."""

    def __init__(
        self,
        assistant: Assistant,
        k: int = 5,
        doc_ids: Sequence[str] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        self.assistant = assistant
        self.k = k
        self.doc_ids = list(doc_ids) if doc_ids is not None else None
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        passages = self.assistant.search(query_bundle.query_str, k=self.k, doc_ids=self.doc_ids)
        return [passage_node(p) for p in passages]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


# --------------------------------------------------------------------------- query engine


class PeerQAQueryEngine(BaseQueryEngine):
    """peerqa's cited answer as a llama-index query engine.

    ``Response.response`` is the answer text with its ``[n]`` markers; ``source_nodes`` are the
    citations, in number order (empty when the documents do not cover the question); metadata
    holds ``coverage``, ``missing``, ``abstained``, ``checks``, ``conflicts``, ``notices``,
    ``mode``, the ``closest`` passages of an abstention (nodes, never presented as sources) and
    the ``answer`` itself (for ``peerqa.render.answer_markdown``).
    """

    def __init__(
        self,
        assistant: Assistant,
        k: int | None = None,
        doc_ids: Sequence[str] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        self.assistant = assistant
        self.k = k
        self.doc_ids = list(doc_ids) if doc_ids is not None else None
        super().__init__(callback_manager=callback_manager)

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}  # peerqa's prompts are its own (answer/prompt.py), not llama-index's

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """The passages the answer would draw on, as nodes."""
        k = self.k if self.k is not None else self.assistant.settings.answer_k
        passages = self.assistant.search(query_bundle.query_str, k=k, doc_ids=self.doc_ids)
        return [passage_node(p) for p in passages]

    def _query(self, query_bundle: QueryBundle) -> Response:
        answer = self.assistant.ask(query_bundle.query_str, doc_ids=self.doc_ids, k=self.k)
        return answer_response(answer)

    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        return await asyncio.to_thread(self._query, query_bundle)


def answer_response(answer: Answer) -> Response:
    """An answer as a llama-index ``Response``: text, citations as source nodes, checks."""
    metadata: dict[str, Any] = {
        "coverage": answer.coverage,
        "missing": answer.missing,
        "abstained": answer.abstained,
        "checks": dataclasses.asdict(answer.checks),
        "conflicts": [dataclasses.asdict(c) for c in answer.conflicts],
        "notices": list(answer.notices),
        "mode": answer.mode,
        "closest": [passage_node(p) for p in answer.closest],
        "answer": answer,
    }
    return Response(
        response=answer.text,
        source_nodes=[passage_node(c) for c in answer.citations],
        metadata=metadata,
    )


# --------------------------------------------------------------------------- embeddings


class PeerQAEmbedding(BaseEmbedding):
    """A peerqa embedder (the offline MiniLM by default) as a llama-index embedding model.

    Pass it as ``embed_model=`` wherever llama-index asks for one: nothing is read from or
    written to llama-index's global ``Settings``. Query vectors are cached by text.
    """

    _embedder: Any = PrivateAttr()
    _queries: dict[str, list[float]] = PrivateAttr(default_factory=dict)

    def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(model_name=embedder.name, embed_batch_size=64, **kwargs)
        self._embedder = embedder
        self._queries = {}

    def _get_query_embedding(self, query: str) -> list[float]:
        if query not in self._queries:
            self._queries[query] = self._embedder.embed_query(query).tolist()
        return self._queries[query]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        vector: list[float] = self._embedder.embed_documents([text])[0].tolist()
        return vector

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self._embedder.embed_documents(texts).tolist()
        return vectors


# --------------------------------------------------------------------------- documents in


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")


def _source_key(doc: Any) -> str:
    """What a llama-index document came from: its file, else its own id."""
    meta = doc.metadata or {}
    return str(meta.get("file_path") or meta.get("file_name") or doc.id_)


def _year(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}", value.strip()):
        return int(value)
    return None


def corpus_from_documents(documents: Sequence[Any]) -> Corpus:
    """A peerqa corpus from llama-index ``Document``s, each text kept exactly as given.

    Documents that are pages of one file (``SimpleDirectoryReader`` gives a PDF one document per
    page, with ``page_label``) become one document whose pages are known, joined by a line break
    as peerqa's own PDF reader does. ``doc_id`` comes from ``metadata["doc_id"]``, else the file
    name, else the document's id; ``title`` from ``metadata["title"]``, else the first heading or
    line; ``year`` from ``metadata["year"]``.
    """
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise InputError("from_documents takes a list of llama-index Document objects")
    groups: dict[str, list[Any]] = {}
    for n, doc in enumerate(documents):
        if not hasattr(doc, "text") or not hasattr(doc, "metadata"):
            raise InputError(
                f"document {n} is a {type(doc).__name__}, not a llama-index Document: build "
                "them with llama_index.core.Document(text=...) or SimpleDirectoryReader"
            )
        is_page = "page_label" in (doc.metadata or {})
        key = _source_key(doc) if is_page else f"{_source_key(doc)}#{n}"
        groups.setdefault(key, []).append(doc)
    out: list[Document] = []
    skipped: list[Skipped] = []
    used: set[str] = set()
    for key, docs in groups.items():
        first = docs[0]
        meta: Mapping[str, Any] = first.metadata or {}
        pages = [str(d.text) for d in docs]
        paged = len(docs) > 1 or "page_label" in meta
        text = "\n".join(pages)
        name = str(meta.get("file_name") or "")
        label = name or key.split("#")[0]
        if not text.strip():
            skipped.append(Skipped(label, "empty document"))
            continue
        base = _slug(str(meta.get("doc_id") or "")) or _slug(Path(name).stem) or (
            "" if _UUID.match(str(first.id_)) else _slug(str(first.id_))) or "document"
        doc_id, i = base, 1
        while doc_id in used:
            i += 1
            doc_id = f"{base}-{i}"
        used.add(doc_id)
        starts, pos = [], 0
        for page in pages:
            starts.append(pos)
            pos += len(page) + 1
        title = str(meta.get("title") or "") or _title_from_text(text, Path(name or doc_id))
        out.append(Document(
            doc_id=doc_id,
            title=title,
            text=text,
            path=str(meta.get("file_path") or f"llama-index:{first.id_}"),
            sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            short_title=str(meta.get("short_title") or title),
            year=_year(meta.get("year")),
            page_starts=tuple(starts) if paged else (),
        ))
    if not out:
        raise CorpusError("none of the documents has any text: pass documents with text")
    directory = Path(str(out[0].path)).parent if not out[0].path.startswith("llama-index:") \
        else Path(".")
    return Corpus(directory=directory, documents=tuple(out), skipped=tuple(skipped))


def documents_key(corpus: Corpus) -> str:
    """A short key for a set of documents (by id), naming its default index folder."""
    ids = "\n".join(sorted(d.doc_id for d in corpus.documents))
    return hashlib.sha256(ids.encode("utf-8")).hexdigest()[:12]
