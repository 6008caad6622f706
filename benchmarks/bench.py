"""Speed and memory of peerqa: one table. Prints figures; asserts nothing.

    make bench          # the bundled corpus (1x), embedded Chroma
    make bench-scale    # also 10x and 100x synthetic corpora, a `chroma run` server beside the
                        # embedded store, and a llama-index VectorStoreIndex pipeline
    .venv/bin/python benchmarks/bench.py --baseline /path/to/older/src   # before/after, 1x
    .venv/bin/python benchmarks/bench.py --scales 1,100 --baseline SRC --baseline-scales 1,100

Every figure comes from a process of its own (benchmarks/bench_child.py), which reads its own
memory from /proc/self/status. "Under load" means two busy processes started by the benchmark
hold both cores (each ends itself after --load-seconds). Larger corpora are built once and kept
in --cache (their build time is recorded beside them); delete that folder to build them again.
Servers listen on 127.0.0.1 only and are stopped at the end.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from synthetic import make_corpus  # noqa: E402

QUESTION = "What training do peer workers need?"
# (what, corpus scale, the row's figure, the most it may be, its unit)
TARGETS: list[tuple[str, int, str, float, str]] = [
    ("build from scratch (quiet 2-core machine)", 1, "build_s", 5.0, "s"),
    ("build from scratch (quiet 2-core machine)", 100, "build_s", 480.0, "s"),
    ("ask p95, quiet", 1, "ask_p95", 15.0, "ms"),
    ("ask p95, both cores busy", 1, "ask_load_p95", 30.0, "ms"),
    ("fresh `peerqa ask`", 1, "fresh_s", 0.7, "s"),
    ("RSS after answering", 1, "rss_mb", 300.0, "MB"),
    ("RSS after answering", 100, "rss_mb", 450.0, "MB"),
    ("reopen", 100, "reopen_s", 0.5, "s"),
    ("search p95", 100, "search_p95", 12.0, "ms"),
    ("add one document (re-embeds only it)", 100, "add_s", 15.0, "s"),
]


def machine_line() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{datetime.date.today()}, {os.cpu_count()} cores ({cpu}), Python "
            f"{platform.python_version()}, load average {load}")


def child_env(src: Path | None, precision: str = "fp32") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERQA_")}
    env.pop("OPENAI_API_KEY", None)
    env["HF_HUB_OFFLINE"] = "1"
    if precision != "fp32":
        env["PEERQA_LOCAL_PRECISION"] = precision
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def run_child(task: str, spec: dict[str, Any], src: Path | None, timeout: float,
              precision: str = "fp32") -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "bench_child.py"), task, json.dumps(spec)]
    done = subprocess.run(cmd, env=child_env(src, precision), capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{task} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def fresh_asks(index_dirs: dict[str, tuple[Path, Path | None, str]], corpus: Path,
               runs: int) -> dict[str, tuple[float, float]]:
    """Median wall time of `peerqa ask` as a new process; the variants run in turn."""
    walls: dict[str, list[float]] = {name: [] for name in index_dirs}
    cpus: dict[str, list[float]] = {name: [] for name in index_dirs}
    # The package's bytecode as an install writes it (`make` does): with PYTHONDONTWRITEBYTECODE
    # set, or sources edited since, every process would compile its modules again (0.2 s).
    compileall.compile_dir(str(ROOT / "src" / "peerqa"), quiet=1)
    for _ in range(runs + 1):  # the first round warms the page cache and is not counted
        for name, (index_dir, src, precision) in index_dirs.items():
            cmd = [sys.executable, "-m", "peerqa", "ask", QUESTION, "--corpus", str(corpus),
                   "--index-dir", str(index_dir), "-q"]
            before = os.times()
            t = time.perf_counter()
            subprocess.run(cmd, env=child_env(src, precision), capture_output=True, check=True,
                           timeout=120)
            walls[name].append(time.perf_counter() - t)
            after = os.times()
            cpus[name].append(after.children_user - before.children_user
                              + after.children_system - before.children_system)
    return {name: (statistics.median(walls[name][1:]), statistics.median(cpus[name][1:]))
            for name in index_dirs}


class ChromaServer:
    """`chroma run` on 127.0.0.1 with its data in a folder; stopped on exit."""

    def __init__(self, path: Path) -> None:
        exe = Path(sys.executable).with_name("chroma")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        path.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(exe) if exe.exists() else "chroma", "run", "--path", str(path), "--host",
             "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"http://127.0.0.1:{self.port}/api/v2/heartbeat"
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("`chroma run` did not start") from None
                time.sleep(0.3)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def built_index(scale: int, store: str, corpus: Path, cache: Path, src: Path | None,
                port: int | None, timeout: float,
                precision: str = "fp32") -> tuple[Path, dict[str, Any]]:
    """The index of this corpus and store, with its build figures: built from scratch at 1x,
    reused from the cache when a larger one was completed before."""
    label = "after" if src is None else "before"
    if precision != "fp32":
        label += f"-{precision}"
    index_dir = cache / f"index-{scale}x-{store}-{label}"
    record = index_dir.with_suffix(".build.json")
    spec = {"corpus": str(corpus), "index_dir": str(index_dir), "chroma_port": port}
    if scale > 1 and record.is_file() and \
            run_child("current", spec, src, 600, precision)["current"]:
        figures: dict[str, Any] = json.loads(record.read_text())
        figures["cached"] = figures.get("date", "earlier")
        return index_dir, figures
    shutil.rmtree(index_dir, ignore_errors=True)
    record.unlink(missing_ok=True)  # none, or another format's: built from scratch
    figures = run_child("build", spec, src, timeout, precision)
    figures["date"] = datetime.datetime.now().isoformat(timespec="minutes")
    figures["load"] = os.getloadavg()[0]
    record.write_text(json.dumps(figures))
    return index_dir, figures


def fmt_pair(d: dict[str, float] | None) -> str:
    return f"{d['p50']:.1f} / {d['p95']:.1f}" if d else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1", help="comma-separated corpus sizes, e.g. 1,10,100")
    parser.add_argument("--server", type=int, default=0, metavar="MAX_SCALE",
                        help="also a `chroma run` server, up to this scale")
    parser.add_argument("--llama", type=int, default=0, metavar="MAX_SCALE",
                        help="also llama-index's VectorStoreIndex up to this scale")
    parser.add_argument("--baseline", type=Path, metavar="SRC",
                        help="an older peerqa's src/ folder: its figures too")
    parser.add_argument("--baseline-scales", default="1",
                        help="the scales the baseline is measured at (its indexes are built once "
                             "and kept in --cache like the others)")
    parser.add_argument("--int8", type=int, default=1, metavar="MAX_SCALE",
                        help="also the int8 encoder (PEERQA_LOCAL_PRECISION=int8), embedded, up "
                             "to this scale (0: not at all)")
    parser.add_argument("--no-add", action="store_true",
                        help="skip adding one document to each embedded index")
    parser.add_argument("--questions", type=int, default=100, help="questions timed per row")
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--fresh-runs", type=int, default=5)
    parser.add_argument("--build-only", action="store_true", help="build (and cache) only")
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench-cache")
    parser.add_argument("--timeout", type=float, default=3600.0, help="bound on one build")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    baseline_scales = {int(s) for s in args.baseline_scales.split(",")}
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine_line()}")
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(f"note: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} is set here (it slows "
              "the numpy encoder; users' machines do not have it)")
    rows: list[tuple[str, dict[str, Any]]] = []
    server: ChromaServer | None = None
    try:
        if args.server >= min(scales):
            server = ChromaServer(args.cache / "chroma-server")
        for scale in scales:
            corpus = ROOT / "corpus" if scale == 1 else make_corpus(
                scale, args.cache / f"corpus-{scale}x")
            variants: list[tuple[str, str, Path | None, str]] = [
                ("embedded", "after", None, "fp32")]
            if scale <= args.int8:
                variants.append(("embedded", "after", None, "int8"))
            if server is not None and scale <= args.server:
                variants.append(("server", "after", None, "fp32"))
            if args.baseline is not None and scale in baseline_scales:
                variants.append(("embedded", "before", args.baseline.resolve(), "fp32"))
            fresh_dirs: dict[str, tuple[Path, Path | None, str]] = {}
            for store, label, src, precision in variants:
                port = server.port if store == "server" and server else None
                name = f"{scale}x {store}" + (" (before)" if label == "before" else "") + (
                    "" if precision == "fp32" else f" {precision}")
                index_dir, fig = built_index(scale, store, corpus, args.cache, src, port,
                                             args.timeout, precision)
                print(f"  built {name}: {fig['build_s']:.1f} s"
                      + (f" (cached, {fig['cached']})" if "cached" in fig else ""), flush=True)
                if args.build_only:
                    continue
                spec = {"corpus": str(corpus), "index_dir": str(index_dir), "chroma_port": port,
                        "questions": args.questions, "load_seconds": args.load_seconds}
                fig.update(run_child("serve", spec, src, 600, precision))
                if store == "embedded" and not args.no_add:
                    spec = {"corpus": str(corpus), "index_dir": str(index_dir), "copy": scale,
                            "work": str(args.cache / "add-work")}
                    fig.update(run_child("add", spec, src, args.timeout, precision))
                rows.append((name, fig))
                if store == "embedded":
                    fresh_dirs[name] = (index_dir, src, precision)
            if fresh_dirs and args.fresh_runs:
                for name, (wall, cpu) in fresh_asks(fresh_dirs, corpus,
                                                    args.fresh_runs).items():
                    dict(rows)[name].update(fresh_s=wall, fresh_cpu_s=cpu)
            if args.llama >= scale and not args.build_only:
                spec = {"corpus": str(corpus), "questions": args.questions}
                rows.append((f"{scale}x llama-index *", run_child("llama", spec, None, 3600)))
    finally:
        if server is not None:
            server.stop()
    if rows:
        print_table(rows)


def print_table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    head = ("corpus, store", "chunks", "build s (CPU)", "reopen s (CPU)", "check s",
            "search ms p50/p95", "ask ms p50/p95 (CPU)", "ask ms under load", "fresh ask s (CPU)",
            "RSS MB (peak)", "add a document s (texts)")
    lines = [head]
    for name, f in rows:
        build = f"{f['build_s']:.1f} ({f['build_cpu_s']:.1f})" if "build_cpu_s" in f else (
            f"{f['build_s']:.1f}" if "build_s" in f else "-")
        lines.append((
            name, str(f.get("chunks", "-")), build,
            f"{f['reopen_s']:.2f} ({f['reopen_cpu_s']:.2f})" if "reopen_s" in f else "-",
            f"{f['check_s']:.2f}" if "check_s" in f else "-",
            fmt_pair(f.get("search_ms")),
            fmt_pair(f.get("ask_ms")) + (f" ({f['ask_cpu_ms']:.1f})" if "ask_cpu_ms" in f else ""),
            fmt_pair(f.get("ask_load_ms")),
            f"{f['fresh_s']:.2f} ({f['fresh_cpu_s']:.2f})" if "fresh_s" in f else "-",
            f"{f['rss_mb']:.0f} ({f['hwm_mb']:.0f})" if "rss_mb" in f else "-",
            f"{f['add_s']:.1f} ({f['embedded']} of {f['document_texts']})" if "add_s" in f
            else "-",
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    print()
    for i, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    imports = [f["import_s"] for _, f in rows if "import_s" in f]
    print("\nreopen: a new Assistant opening the current index as a serving process does (file "
          "sizes checked; `import peerqa` before it, median "
          f"{statistics.median(imports) if imports else float('nan'):.2f} s, is in the fresh "
          "ask); check: `peerqa index` on the current index (every hash, SQLite's check, a probe "
          "query); search and ask: the gold set's questions with the index open; 'under load': "
          "two busy processes hold both cores; (CPU): the process's CPU seconds (for ask: ms per "
          "question, mean), which a busy machine inflates less than wall time; RSS: the "
          "answering process, read by itself after answering (peak in brackets); add a "
          "document: index again after adding one new document, with the texts embedded of "
          "that document's distinct texts (the rest are reused). * llama-index: "
          "VectorStoreIndex with its default SentenceSplitter (~1,024-token nodes) and the same "
          "MiniLM: each node is cut at MiniLM's 256-token window, so most of its text is never "
          "embedded; its 'search' is a top-2 retrieval.")
    print_targets(rows)


def figure(f: dict[str, Any], key: str) -> float | None:
    """A row's figure by the name TARGETS uses."""
    if key.endswith("_p95"):
        pair = f.get(key[: -len("_p95")] + "_ms")
        return float(pair["p95"]) if pair else None
    value = f.get(key)
    return float(value) if value is not None else None


def print_targets(rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Each target beside the figure this run measured for it (embedded store, this code; the
    default float32 encoder, and the int8 one where measured)."""
    print("\ntargets (this code, embedded store; a busy machine's wall times are not a quiet "
          "machine's):")
    found = dict(rows)
    for what, scale, key, most, unit in TARGETS:
        for suffix in ("", " int8"):
            f = found.get(f"{scale}x embedded{suffix}")
            if suffix and f is None:
                continue
            value = figure(f, key) if f else None
            if value is None:
                verdict, shown = "not measured", "-"
            else:
                verdict, shown = ("met" if value <= most else "NOT met"), f"{value:.2f} {unit}"
            cached = " (build cached)" if f and key == "build_s" and "cached" in f else ""
            print(f"  {what} at {scale}x{suffix} <= {most:g} {unit}: {shown}{cached}  {verdict}")


if __name__ == "__main__":
    main()
