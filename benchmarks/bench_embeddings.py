"""Time the local MiniLM embedder: model load (with hash check), query latency, corpus throughput.

Run: PYTHONPATH=src python benchmarks/bench_embeddings.py [--texts 250] [--runtime onnx|numpy]

Wall times depend on what else runs: the load average and the process's CPU time are printed
too. Under contention, OpenBLAS's own threads can make wall time balloon; compare with
OPENBLAS_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from peerqa.embeddings import LocalEmbedder  # noqa: E402
from peerqa.evaluation import percentile  # noqa: E402
from peerqa.settings import load_settings  # noqa: E402

QUESTIONS = [
    "What does a peer support worker do?",
    "How should a team prepare before its first peer support worker starts?",
    "What supervision do peer workers need?",
    "Is peer support cost effective?",
    "What training do peer support workers receive?",
    "How do peer workers use lived experience?",
    "What are the risks of peer support roles?",
    "How can organisations avoid role drift?",
    "What outcomes improve with peer support?",
    "Who can become a peer support worker?",
]


def corpus_windows(n: int, words_per_text: int = 120) -> list[str]:
    """n texts of about words_per_text words, cut from the bundled corpus in sliding windows."""
    words: list[str] = []
    for path in sorted((ROOT / "corpus").iterdir()):
        if path.suffix in {".txt", ".md"}:
            words.extend(path.read_text(encoding="utf-8").split())
    texts: list[str] = []
    # The corpus has ~21k words (~180 windows); a half-window offset on a second pass fills 250.
    offset = 0
    while len(texts) < n:
        for start in range(offset, len(words) - words_per_text, words_per_text):
            texts.append(" ".join(words[start : start + words_per_text]))
            if len(texts) == n:
                break
        offset += words_per_text // 2 + 7
    return texts


def main() -> None:
    """Print load time, query p50/p95 and document throughput."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--runtime", choices=["auto", "onnx", "numpy"], default="auto")
    args = parser.parse_args()

    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"cpus {os.cpu_count()}, load average {load_avg}, OPENBLAS_NUM_THREADS={blas}")
    t0 = time.perf_counter()
    cache = load_settings().resolved_model_cache_dir
    embedder = LocalEmbedder(batch_size=args.batch_size, runtime=args.runtime, cache_dir=cache)
    load = time.perf_counter() - t0
    print(
        f"model load (sha256 check + session or weights + tokenizer): {load * 1000:.0f} ms  "
        f"[{embedder!r}]"
    )

    embedder.embed_query("warm-up")
    latencies = []
    for i in range(args.queries):
        q = QUESTIONS[i % len(QUESTIONS)]
        t = time.perf_counter()
        embedder.embed_query(q)
        latencies.append(time.perf_counter() - t)
    ms = [t * 1000 for t in latencies]
    print(
        f"query latency over {args.queries} short questions: "
        f"p50 {percentile(ms, 50):.1f} ms, p95 {percentile(ms, 95):.1f} ms"
    )

    texts = corpus_windows(args.texts)
    n_tokens = sum(len(ids) for ids in embedder.tokenize(texts))
    t, cpu = time.perf_counter(), time.process_time()
    vectors = embedder.embed_documents(texts)
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(
        f"documents: {len(texts)} texts of ~120 words ({n_tokens / len(texts):.0f} tokens avg, "
        f"batch {args.batch_size}) in {took:.2f} s = {len(texts) / took:.1f} texts/s, "
        f"{n_tokens / took:.0f} tokens/s (process CPU {cpu:.2f} s); "
        f"shape {vectors.shape} {vectors.dtype}"
    )
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
