"""One measurement, in a process of its own; prints one JSON line. Run by bench.py.

    python benchmarks/bench_child.py build|current|serve|add|llama SPEC_JSON

Memory is read by the process itself from /proc/self/status (VmRSS now, VmHWM its peak): the
``ru_maxrss`` of a child carries its parent's peak across fork and exec. Uses only the public
``Assistant`` API, so the same script measures an older peerqa (PYTHONPATH=<its src>).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
GOLD = HERE.parent / "evals" / "gold.jsonl"  # the repository's, whichever peerqa is measured

BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def memory_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak, in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "hwm_mb": int(fields["VmHWM"].split()[0]) / 1024}


def percentiles(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p95": p95, "n": len(ordered)}


def assistant(spec: dict[str, Any]) -> Any:
    from peerqa import Assistant

    options: dict[str, Any] = {}
    if spec.get("chroma_port"):
        options = {"chroma_host": "127.0.0.1", "chroma_port": spec["chroma_port"]}
    return Assistant(corpus_dir=spec["corpus"], index_dir=spec["index_dir"], **options)


def build(spec: dict[str, Any]) -> dict[str, Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    a = assistant(spec)
    info = a.index(rebuild=bool(spec.get("rebuild")))
    return {"build_s": time.perf_counter() - t0, "build_cpu_s": time.process_time() - c0,
            "built": info.built, "chunks": info.n_chunks, **memory_mb()}


def current(spec: dict[str, Any]) -> dict[str, Any]:
    """Whether the index was built from this corpus by this peerqa's format and settings."""
    return {"current": bool(assistant(spec).live.indexer().is_current())}


def _questions(n: int) -> list[tuple[str, list[dict[str, str]]]]:
    from peerqa.evaluation import load_gold

    items = load_gold(GOLD)
    return [(i.question, [dict(t) for t in i.history]) for i in items[:n]]


def _busy(count: int, seconds: float) -> list[subprocess.Popen[bytes]]:
    """Processes that keep ``count`` cores busy for at most ``seconds`` (they end themselves)."""
    code = BUSY.format(seconds=seconds)
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def serve(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    import peerqa  # noqa: F401  (its import is the fresh-process figure's, not the index's)

    out["import_s"] = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    a = assistant(spec)
    a.retriever  # noqa: B018  opens the current index as a serving process does (sizes checked)
    out["reopen_s"] = time.perf_counter() - t0
    out["reopen_cpu_s"] = time.process_time() - c0
    questions = _questions(spec["questions"])
    a.ask("warm up")
    a.search("warm up")
    ms = []
    for q, _ in questions:
        t = time.perf_counter()
        a.search(q)
        ms.append((time.perf_counter() - t) * 1000)
    out["search_ms"] = percentiles(ms)
    ms = []
    c0 = time.process_time()
    for q, history in questions:
        t = time.perf_counter()
        a.ask(q, history=history)
        ms.append((time.perf_counter() - t) * 1000)
    out["ask_ms"] = percentiles(ms)
    out["ask_cpu_ms"] = (time.process_time() - c0) * 1000 / len(questions)
    out.update(memory_mb())  # after answering, before the load's processes exist
    busy = _busy(2, spec["load_seconds"])
    try:
        time.sleep(0.3)  # let them take the cores
        ms = []
        deadline = time.monotonic() + spec["load_seconds"] - 1.0
        for q, history in questions:
            if time.monotonic() > deadline:
                break
            t = time.perf_counter()
            a.ask(q, history=history)
            ms.append((time.perf_counter() - t) * 1000)
        out["ask_load_ms"] = percentiles(ms)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    # Last, after memory was read: `peerqa index` with a current index checks every hash,
    # SQLite's structure and a probe query (which starts Chroma).
    t0 = time.perf_counter()
    assistant(spec).index()
    out["check_s"] = time.perf_counter() - t0
    return out


class Counting:
    """An embedder that counts the texts it is given (the index's own, wrapped)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim, self.texts = inner, inner.name, inner.dim, 0

    def embed_documents(self, texts: Sequence[str], progress: Any = None) -> np.ndarray:
        self.texts += len(texts)
        vectors: np.ndarray = self.inner.embed_documents(texts, progress)
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.inner.embed_query(text)
        return vector


def add(spec: dict[str, Any]) -> dict[str, Any]:
    """Add one new document to a copy of a built index's corpus and index it again."""
    from peerqa import Assistant
    from peerqa.chunking import indexed_text
    from peerqa.embeddings import get_embedder
    from peerqa.settings import load_settings
    from peerqa.text import sentence_spans

    sys.path.insert(0, str(HERE))
    from synthetic import add_document

    work = Path(spec["work"])
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(spec["corpus"], work / "corpus")
    shutil.copytree(spec["index_dir"], work / "index")
    doc_id = add_document(work / "corpus", spec["copy"])
    embedder = Counting(get_embedder(load_settings()))
    a = Assistant(corpus_dir=work / "corpus", index_dir=work / "index", embedder=embedder)
    a.retriever  # noqa: B018  the model and the index open, as in a running app
    t0, c0 = time.perf_counter(), time.process_time()
    info = a.index()
    out = {"add_s": time.perf_counter() - t0, "add_cpu_s": time.process_time() - c0,
           "built": info.built, "embedded": embedder.texts}
    # The new document's own distinct texts: its chunks as indexed, and its sentences.
    doc = a.document(doc_id)
    mine = [c for c in a.chunks if c.doc_id == doc_id]
    texts = {indexed_text(c, doc.title, doc.keywords) for c in mine}
    texts.update(doc.text[x:y] for c in mine for x, y in sentence_spans(doc.text, c.start, c.end))
    out["document_texts"] = len(texts)
    shutil.rmtree(work, ignore_errors=True)
    return out


def llama(spec: dict[str, Any]) -> dict[str, Any]:
    from peerqa.corpus import load_corpus
    from peerqa.embeddings import LocalEmbedder
    from peerqa.evaluation.baselines import LlamaIndexBaseline
    from peerqa.settings import load_settings

    settings = load_settings()
    embedder = LocalEmbedder(runtime=settings.local_runtime,
                             cache_dir=settings.resolved_model_cache_dir,
                             precision=settings.local_precision)
    docs = load_corpus(spec["corpus"]).documents
    t0 = time.perf_counter()
    baseline = LlamaIndexBaseline(docs, embedder)
    out: dict[str, Any] = {"build_s": time.perf_counter() - t0,
                           "chunks": len(baseline.index.docstore.docs)}
    questions = _questions(spec["questions"])
    baseline.retrieve("warm up", 2)
    ms = []
    for q, _ in questions:
        t = time.perf_counter()
        baseline.retrieve(q, 2)
        ms.append((time.perf_counter() - t) * 1000)
    out["search_ms"] = percentiles(ms)
    out.update(memory_mb())
    return out


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    task, spec = sys.argv[1], json.loads(sys.argv[2])
    tasks = {"build": build, "current": current, "serve": serve, "add": add, "llama": llama}
    result = tasks[task](spec)
    print(json.dumps(result))
