"""Speed and memory of peerqa on the bundled corpus. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench.py [--questions N]

Targets (issue 2): build from scratch <= 30 s; reopen < 2 s; ask p95 < 150 ms with the index
open; `peerqa ask` as a fresh process < 4 s; resident memory < 600 MB after answering.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from peerqa import Assistant
t_import = time.perf_counter() - t0
a = Assistant(index_dir=sys.argv[1])
t1 = time.perf_counter()
info = a.index()
t_open = time.perf_counter() - t1
t2 = time.perf_counter()
a.ask("How should a team prepare before its first peer support worker starts?")
t_first = time.perf_counter() - t2
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"built": info.built, "import_s": t_import, "open_s": t_open,
                  "first_ask_s": t_first, "max_rss_mb": rss_mb}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200, help="questions timed for p50/p95")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERQA_")}
    env.pop("OPENAI_API_KEY", None)
    with tempfile.TemporaryDirectory(prefix="peerqa-bench-") as tmp:
        index_dir = Path(tmp) / "index"
        from peerqa import Assistant

        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
        a = Assistant(index_dir=index_dir)
        t0 = time.perf_counter()
        info = a.index()
        build = time.perf_counter() - t0
        print(f"build from scratch:        {build:6.1f} s  ({info.n_chunks} chunks;"
              " target <= 30 s)")

        child = subprocess.run([sys.executable, "-c", CHILD, str(index_dir)], env=env,
                               capture_output=True, text=True, check=True)
        fig = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"reopen in a new process:   {fig['open_s']:6.2f} s  (import {fig['import_s']:.2f} s;"
              " target < 2 s)")
        print(f"resident memory (max RSS): {fig['max_rss_mb']:6.0f} MB after one answer "
              "(target < 600 MB)")

        from peerqa.evaluation import default_gold_path, load_gold, percentile

        items = load_gold(default_gold_path())[: args.questions]
        a.ask("warm up")
        times = []
        for item in items:
            t = time.perf_counter()
            a.ask(item.question, history=list(item.history))
            times.append((time.perf_counter() - t) * 1000)
        print(f"ask, index open:           p50 {statistics.median(times):5.1f} ms, "
              f"p95 {percentile(times, 95):5.1f} ms over {len(times)} questions "
              "(target p95 < 150 ms)")

        exe = Path(sys.executable).with_name("peerqa")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "peerqa"]
        walls = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([*cmd, "ask", "What training do peer workers need?", "--index-dir",
                            str(index_dir), "-q"], env=env, capture_output=True, check=True)
            walls.append(time.perf_counter() - t)
        print(f"`peerqa ask`, new process: {statistics.median(walls):6.2f} s median of 3 "
              "(target < 4 s)")


if __name__ == "__main__":
    main()
