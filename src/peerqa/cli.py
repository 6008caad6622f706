"""The command line: peerqa index | ask | search | docs | eval."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, PeerQAError
from .render import ProgressBar, format_answer, format_passage

if TYPE_CHECKING:
    from .assistant import Assistant
    from .indexing import IndexInfo

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # as a shell reports a program ended by SIGPIPE


def _assistant(args: argparse.Namespace) -> Assistant:
    from .assistant import Assistant

    overrides: dict[str, Any] = {}
    if getattr(args, "mode", None):
        overrides["answer_mode"] = args.mode
    return Assistant(corpus_dir=args.corpus, index_dir=args.index_dir, **overrides)


def _ensure_index(
    assistant: Assistant, args: argparse.Namespace, rebuild: bool = False
) -> IndexInfo:
    bar = ProgressBar(enabled=not args.quiet)
    try:
        info = assistant.index(rebuild=rebuild, progress=bar)
    finally:
        bar.close()
    if info.repaired:
        print(f"peerqa: the index was damaged ({info.repaired}); rebuilt it", file=sys.stderr)
    if info.skipped and not args.quiet:
        for path, reason in info.skipped:
            print(f"peerqa: skipped {path}: {reason}", file=sys.stderr)
    return info


def _doc_filter(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def cmd_index(args: argparse.Namespace) -> int:
    assistant = _assistant(args)
    info = _ensure_index(assistant, args, rebuild=args.rebuild)
    if args.json:
        print(json.dumps(asdict(info), indent=2))
    else:
        verb = "Built" if info.built else "Reused"
        print(
            f"{verb} index {info.generation}: {info.n_documents} documents, {info.n_chunks} "
            f"chunks, {info.seconds:.1f} s, at {info.directory}"
        )
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    assistant = _assistant(args)
    _ensure_index(assistant, args)
    history = None
    if args.history:
        try:
            with open(args.history, encoding="utf-8") as f:
                history = json.load(f)
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read history file {args.history}: {e}") from e
    answer = assistant.ask(
        args.question, history=history, doc_ids=_doc_filter(args.docs), k=args.k
    )
    if args.json:
        print(json.dumps(asdict(answer), indent=2, ensure_ascii=False))
    else:
        print(format_answer(answer, color=sys.stdout.isatty()))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    assistant = _assistant(args)
    _ensure_index(assistant, args)
    passages = assistant.search(args.query, k=args.k, doc_ids=_doc_filter(args.docs))
    if args.json:
        print(json.dumps([asdict(p) for p in passages], indent=2, ensure_ascii=False))
        return 0
    for i, p in enumerate(passages, 1):
        print(format_passage(i, p))
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    assistant = _assistant(args)
    docs = assistant.documents
    if args.json:
        print(json.dumps([
            {k: v for k, v in asdict(d).items() if k != "text"} for d in docs
        ], indent=2, ensure_ascii=False))
        return 0
    for d in docs:
        print(f"{d.doc_id}: {d.title} ({d.year_label}; {d.kind or 'document'})")
    for s in assistant.corpus.skipped:
        print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import format_table, load_gold_items, run_eval, write_report

    assistant = _assistant(args)
    _ensure_index(assistant, args)
    items, source = load_gold_items(args.gold)
    if args.type:
        items = [i for i in items if i.type == args.type]
    if args.limit is not None:
        items = items[: max(args.limit, 0)]
    if not items:
        raise InputError(f"no gold items to evaluate in {source}: check --type and --limit")
    if args.cv is not None:
        from .evaluation.cv import cross_validate, format_cv

        cv = cross_validate(assistant, items, k=args.cv, eval_k=args.k, gold=source)
        print(format_cv(cv))
        if args.json:
            json_path = Path(args.json)
            json_path.write_text(json.dumps({
                "k": cv.k, "seed": cv.seed, "fitted": cv.fitted, "pooled": cv.pooled,
                "folds": [run.to_dict() for run in cv.runs]}, indent=2) + "\n", encoding="utf-8")
            print(f"per-fold results: {args.json}", file=sys.stderr)
        return 0
    run = run_eval(assistant, items, k=args.k, compare=args.compare, progress=not args.quiet,
                   gold=source)
    print(format_table(run))
    if args.json:
        run.write_json(args.json)
        print(f"per-item results: {args.json}", file=sys.stderr)
    if args.report:
        print(f"report: {write_report(run, args.report)}", file=sys.stderr)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .evaluation import load_gold_items
    from .evaluation.fitting import fit_all
    from .tuning import SHIPPED

    assistant = _assistant(args)
    _ensure_index(assistant, args)
    items, source = load_gold_items(args.gold)
    tuning = fit_all(assistant, items, fitted_on=f"{Path(source).name}: {len(items)} items")
    out = tuning.save(args.out or SHIPPED)
    print(f"Fitted {', '.join(sorted(tuning.sections)) or 'nothing'} on {len(items)} gold "
          f"items; wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peerqa",
        description="Answers about mental-health Peer Support Workers, from cited passages.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--corpus", metavar="DIR", help="folder of .txt/.md documents "
                        "(default: the bundled corpus; env PEERQA_CORPUS_DIR)")
    common.add_argument("--index-dir", metavar="DIR", help="where the index lives "
                        "(env PEERQA_INDEX_DIR)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", parents=[common], help="build the index (or reuse it)")
    p.add_argument("--rebuild", action="store_true", help="rebuild even if nothing changed")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("ask", parents=[common], help="answer a question with cited passages")
    p.add_argument("question")
    p.add_argument("--docs", metavar="IDS", help="comma-separated document ids to search")
    p.add_argument("-k", type=int, default=None, help="passages the answer may draw on")
    p.add_argument("--history", metavar="FILE",
                   help="JSON file of earlier turns: [{'role': 'user', 'content': ...}, ...]")
    p.add_argument("--mode", choices=["extractive", "openai"], help="answer mode")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("search", parents=[common], help="the passages most relevant to a query")
    p.add_argument("query")
    p.add_argument("--docs", metavar="IDS", help="comma-separated document ids to search")
    p.add_argument("-k", type=int, default=None,
                   help="how many passages (default PEERQA_TOP_K, 5)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("docs", parents=[common], help="list the corpus's documents")
    p.set_defaults(func=cmd_docs)

    from .evaluation.gold import TYPES

    # Not parents=[common]: here --json takes a file name (the table still goes to stdout).
    p = sub.add_parser("eval", help="score answers and retrieval on the gold set")
    p.add_argument("--corpus", metavar="DIR", help="folder of .txt/.md documents "
                   "(default: the bundled corpus; env PEERQA_CORPUS_DIR)")
    p.add_argument("--index-dir", metavar="DIR", help="where the index lives "
                   "(env PEERQA_INDEX_DIR)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--gold", metavar="FILE", help="gold JSONL file (default: evals/gold.jsonl)")
    p.add_argument("-k", "--k", type=int, default=5, help="cutoff for hit@k and recall@k")
    p.add_argument("--json", metavar="OUT", help="write the per-item results as JSON")
    p.add_argument("--report", metavar="OUT.html", help="write an HTML report")
    p.add_argument("--compare", action="store_true",
                   help="also run plain BM25 and a plain llama-index pipeline on the same items")
    p.add_argument("--type", choices=TYPES, help="only the items of this type")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N items")
    p.add_argument("--mode", choices=["extractive", "openai"], help="answer mode")
    p.add_argument("--cv", type=int, metavar="K",
                   help="cross-validate what is fitted on the gold set: fit on K-1 folds, score "
                        "the held-out fold, K times (folds by item, fixed seed)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("tune", help="fit the tunable parts on the gold set and save them")
    p.add_argument("--corpus", metavar="DIR", help="folder of documents (env PEERQA_CORPUS_DIR)")
    p.add_argument("--index-dir", metavar="DIR", help="where the index lives "
                   "(env PEERQA_INDEX_DIR)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--gold", metavar="FILE", help="gold JSONL file (default: evals/gold.jsonl)")
    p.add_argument("--out", metavar="FILE",
                   help="where to write the tuning (default: the one peerqa ships)")
    p.set_defaults(func=cmd_tune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader gone away is handled below
        return status
    except InputError as e:
        print(f"peerqa: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except PeerQAError as e:
        print(f"peerqa: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("peerqa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Whoever read the output stopped early (`peerqa ask ... | head`): end quietly. Standard
        # output is pointed at /dev/null so the interpreter's last flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
