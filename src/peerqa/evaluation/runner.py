"""The eval runner: ask every gold question, score answers and rankings, run the baselines."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from ..answer.judge import supports
from ..embeddings import Embedder
from ..settings import check_k
from ..types import Answer, Chunk, Document, Passage
from .baselines import BM25Baseline, LlamaIndexBaseline, SystemScores, score_rankings
from .gold import TYPES, GoldItem, default_gold_path, load_gold, validate_gold
from .metrics import MRR_DEPTH, Judge, quote_spans
from .scoring import TARGETS, ItemResult, aggregate, evaluate_answer

GOLD_NOTES = 10
"""Gold problems listed one by one in a run's notes (with --allow-mismatch); the rest counted."""


class Answerer(Protocol):
    """What the evaluation needs of the system under test (``peerqa.Assistant`` is one)."""

    @property
    def documents(self) -> list[Document]: ...

    @property
    def chunks(self) -> list[Chunk]: ...

    @property
    def embedder(self) -> Embedder: ...

    def ask(
        self, question: str, history: Sequence[Mapping[str, Any]] | None = None
    ) -> Answer: ...

    def search(
        self, query: str, k: int | None = None, *,
        history: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[Passage]: ...



@dataclass(slots=True)
class EvalRun:
    """One evaluation: per-item results, aggregates overall and per type, and the baselines."""

    k: int
    gold: str
    items: list[ItemResult]
    overall: dict[str, float | None]
    by_type: dict[str, dict[str, float | None]]
    seconds: float
    comparison: list[SystemScores] | None = None
    notes: list[str] = field(default_factory=list)
    mode: str = ""
    """How the answers were made: "extractive", "openai", or "mixed"."""
    open_seconds: float = 0.0
    """Opening the index and one warm-up question, before any item: not in any latency."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "gold": self.gold,
            "seconds": round(self.seconds, 2),
            "open_seconds": round(self.open_seconds, 2),
            "mode": self.mode,
            "overall": self.overall,
            "by_type": self.by_type,
            "targets": {n: {"op": op, "value": v} for n, (op, v) in TARGETS.items()},
            "comparison": [asdict(s) for s in self.comparison] if self.comparison else None,
            "notes": self.notes,
            "items": [asdict(r) | {"failed": r.failed} for r in self.items],
        }

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")


def load_gold_items(path: str | Path | None = None) -> tuple[list[GoldItem], str]:
    """The gold items and the file they came from: ``path``, else evals/gold.jsonl."""
    path = Path(path) if path is not None else default_gold_path()
    return load_gold(path), str(path)


def run_eval(
    assistant: Answerer,
    items: Sequence[GoldItem],
    *,
    k: int = 5,
    judge: Judge = supports,
    compare: bool = False,
    progress: bool = False,
    gold: str = "",
) -> EvalRun:
    """Ask every gold question, score the answers and rankings; with ``compare``, the baselines."""
    k = check_k(k)
    t0 = time.perf_counter()
    documents = {d.doc_id: d for d in assistant.documents}
    problems = validate_gold(list(items), {i: d.text for i, d in documents.items()})
    notes = [f"gold: {p}" for p in problems[:GOLD_NOTES]]
    if len(problems) > GOLD_NOTES:
        notes.append(f"gold: {len(problems) - GOLD_NOTES} more problem(s); "
                     "`peerqa eval validate FILE` lists them all")
    # Opening the index (and loading the model) happens here, so no item's latency holds it.
    opened = time.perf_counter()
    assistant.ask("What do peer support workers do?")
    open_seconds = time.perf_counter() - opened
    depth = max(k, MRR_DEPTH)
    modes: set[str] = set()
    results: list[ItemResult] = []
    rankings: list[list[Passage]] = []
    for item in tqdm(items, desc="Evaluating", unit="item", file=sys.stderr,
                     disable=not progress):
        started = time.perf_counter()
        answer = assistant.ask(item.question, history=list(item.history) or None)
        latency = (time.perf_counter() - started) * 1000
        modes.add(answer.mode)
        # The answer's own search, read deeper: its first passages are the answer's passages.
        ranking = assistant.search(item.question, depth, history=list(item.history) or None)
        rankings.append(ranking)
        results.append(evaluate_answer(item, answer, ranking, documents, k=k,
                                       latency_ms=latency, judge=judge))
    mismatched = [r.id for r in results if not r.ranking_matches_answer]
    if mismatched:
        notes.append("ranking re-read from the retrieval query differs from the answer's "
                     f"passages for {', '.join(mismatched)}")
    if not all(r.retrieval_query for r in results):
        notes.append("some answers carry no retrieval_query: their question was used instead")
    by_type = {t: aggregate([r for r in results if r.type == t], k)
               for t in TYPES if any(r.type == t for r in results)}
    run = EvalRun(k=k, gold=gold, items=results, overall=aggregate(results, k), by_type=by_type,
                  seconds=0.0, notes=notes, open_seconds=open_seconds,
                  mode=modes.pop() if len(modes) == 1 else ("mixed" if modes else ""))
    if compare:
        run.comparison = compare_systems(assistant, items, results, rankings, k=k,
                                         progress=progress)
    run.seconds = time.perf_counter() - t0
    return run


def compare_systems(
    assistant: Answerer,
    items: Sequence[GoldItem],
    results: Sequence[ItemResult],
    rankings: Sequence[Sequence[Passage]],
    *,
    k: int = 5,
    progress: bool = False,
) -> list[SystemScores]:
    """peerqa, plain BM25 and plain llama-index on the answerable items, with the same queries."""
    documents = {d.doc_id: d for d in assistant.documents}
    chosen = [i for i, r in enumerate(results) if r.answerable]
    queries = [results[i].retrieval_query or items[i].question for i in chosen]
    quotes = [quote_spans(items[i], documents) for i in chosen]
    systems = [score_rankings(
        "peerqa", "hybrid BM25 + MiniLM over titled chunks, rank fusion", k,
        [rankings[i] for i in chosen], quotes,
    )]
    t = time.perf_counter()
    bm25 = BM25Baseline(assistant.chunks)
    runs = [bm25.retrieve(q, k) for q in queries]
    scores = score_rankings("bm25", "bm25s over the same chunks, untitled, no fusion", k, runs,
                            quotes)
    scores.seconds = time.perf_counter() - t
    systems.append(scores)
    t = time.perf_counter()
    llama = LlamaIndexBaseline(assistant.documents, assistant.embedder)
    built = time.perf_counter() - t
    for top in (2, k):
        t = time.perf_counter()
        runs = [llama.retrieve(q, top) for q in tqdm(
            queries, desc=f"llama-index top {top}", unit="item", file=sys.stderr,
            disable=not progress)]
        scores = score_rankings(
            f"llama-index top {top}",
            "VectorStoreIndex, default SentenceSplitter, same MiniLM model", top, runs, quotes,
        )
        scores.seconds = time.perf_counter() - t + built
        systems.append(scores)
    return systems
