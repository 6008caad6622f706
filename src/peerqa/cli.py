"""The command line: peerqa index | ask | search | docs | eval."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import ConfigurationError, CorpusError, InputError, PeerQAError
from .render import ProgressBar, format_answer, format_passage

if TYPE_CHECKING:
    from .assistant import Assistant
    from .indexing import IndexInfo

EXIT_ERROR = 1
EXIT_USAGE = 2
"""Bad input: a question, an argument, a setting, a corpus folder that is missing or unusable."""
USAGE_ERRORS = (InputError, ConfigurationError, CorpusError)
HINTS: dict[type[PeerQAError], str] = {
    InputError: "check the command's arguments: peerqa COMMAND --help",
    ConfigurationError: "check the PEERQA_ settings (the README's settings table lists them)",
    CorpusError: "point --corpus at a folder of .txt, .md, .pdf or .docx files",
}


def hint(error: BaseException) -> str:
    """What to do about an error: the clause after its last ': ' (every message ends with how
    to fix it), else a general hint for its kind."""
    message = str(error)
    if ": " in message:
        return message.rsplit(": ", 1)[1]
    for kind, text in HINTS.items():
        if isinstance(error, kind):
            return text
    return "see the message"


def report_error(message: str, fix: str, as_json: bool) -> None:
    """One error on stderr: a line for people, or {"error", "hint"} with --json."""
    if as_json:
        print(json.dumps({"error": message, "hint": fix}, ensure_ascii=False), file=sys.stderr)
    else:
        print(f"peerqa: error: {message}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """argparse; in its JSONErrorsParser form, usage errors are JSON on stderr."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if not self.json_errors:
            super().error(message)
        report_error(message, f"see {self.prog} --help", as_json=True)
        raise SystemExit(EXIT_USAGE)


class JSONErrorsParser(Parser):
    """The parser when --json was given."""

    json_errors = True
EXIT_BROKEN_PIPE = 141  # as a shell reports a program ended by SIGPIPE


def _assistant(args: argparse.Namespace) -> Assistant:
    from .assistant import Assistant

    overrides: dict[str, Any] = {}
    if getattr(args, "mode", None):
        overrides["answer_mode"] = args.mode
    return Assistant(corpus_dir=args.corpus, index_dir=args.index_dir, **overrides)


def _ensure_index(
    assistant: Assistant, args: argparse.Namespace, rebuild: bool = False, probe: bool = False
) -> IndexInfo:
    # Every command checks every file's hash and SQLite's structure; `peerqa index` also asks
    # Chroma a probe query, which the others leave out (starting Chroma would double a fresh
    # `peerqa ask`).
    bar = ProgressBar(enabled=not args.quiet)
    try:
        info = assistant.index(rebuild=rebuild, progress=bar, probe=probe)
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
    info = _ensure_index(assistant, args, rebuild=args.rebuild, probe=True)
    if args.json:
        print(json.dumps(asdict(info), indent=2))
    else:
        verb = "Built" if info.built else "Reused"
        print(
            f"{verb} index {info.generation}: {info.n_documents} documents, {info.n_chunks} "
            f"chunks, {info.seconds:.1f} s, at {info.directory}"
        )
    return 0


def _check_k(k: int | None) -> None:
    """A bad -k is reported before any index work."""
    from .settings import check_k

    if k is not None:
        check_k(k)


def cmd_ask(args: argparse.Namespace) -> int:
    _check_k(args.k)
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
        print(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_answer(answer, color=sys.stdout.isatty()))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    _check_k(args.k)
    assistant = _assistant(args)
    _ensure_index(assistant, args)
    passages = assistant.search(args.query, k=args.k, doc_ids=_doc_filter(args.docs))
    if args.json:
        print(json.dumps([p.to_dict() for p in passages], indent=2, ensure_ascii=False))
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


def cmd_eval_validate(args: argparse.Namespace) -> int:
    from .evaluation.gold import check_gold_file

    assistant = _assistant(args)
    documents = {d.doc_id: d.text for d in assistant.documents}
    items, problems = check_gold_file(args.file, documents)
    where = assistant.corpus.directory
    if args.json:
        print(json.dumps({"file": args.file, "corpus": str(where), "items": len(items),
                          "valid": not problems, "problems": problems}, indent=2,
                         ensure_ascii=False))
    else:
        for problem in problems:
            print(problem)
        verdict = f"{len(problems)} problem(s)" if problems else "valid"
        print(f"{args.file}: {len(items)} items, {verdict} against the corpus at {where}",
              file=sys.stderr)
    return EXIT_USAGE if problems else 0


MISMATCH_SHOWN = 3


def _check_gold(assistant: Assistant, items: Sequence[Any], source: str) -> None:
    """Refuse a gold file that does not match the corpus: its figures would mean nothing."""
    from .evaluation.gold import validate_gold

    problems = validate_gold(list(items), {d.doc_id: d.text for d in assistant.documents})
    if problems:
        shown = "; ".join(problems[:MISMATCH_SHOWN])
        more = f" and {len(problems) - MISMATCH_SHOWN} more" if len(problems) > MISMATCH_SHOWN \
            else ""
        raise InputError(
            f"the gold file {source} does not match the corpus at "
            f"{assistant.corpus.directory} ({len(problems)} problem(s): {shown}{more}): list "
            f"them with `peerqa eval validate {source}`, fix the file or choose its corpus "
            "with --corpus, or pass --allow-mismatch to evaluate anyway"
        )


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import format_table, load_gold_items, run_eval, write_report

    assistant = _assistant(args)
    items, source = load_gold_items(args.gold)
    if not args.allow_mismatch:
        _check_gold(assistant, items, source)
    _ensure_index(assistant, args)
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
                "tunings": [t.sections for t in cv.tunings],
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
    from .evaluation.fitters import default_fitters
    from .evaluation.fitting import fit_all
    from .tuning import shipped

    assistant = _assistant(args)
    _ensure_index(assistant, args)
    items, source = load_gold_items(args.gold)
    fitters = default_fitters()
    tuning = fit_all(assistant, items, fitters=fitters,
                     fitted_on=f"{Path(source).name}: {len(items)} items")
    for fitter in fitters:
        describe = getattr(fitter, "describe", None)
        if describe is not None:  # a fitter with a trade-off to show prints it
            print(describe())
    # The shipped file for the vectors fitted on (the int8 graph has its own).
    out = tuning.save(args.out or shipped(assistant.precision))
    print(f"Fitted {', '.join(sorted(tuning.sections)) or 'nothing'} on {len(items)} gold "
          f"items; wrote {out}")
    return 0


def build_parser(json_errors: bool = False) -> argparse.ArgumentParser:
    """The command line's parser; with ``json_errors``, usage errors are JSON on stderr."""
    kind = JSONErrorsParser if json_errors else Parser
    parser = kind(
        prog="peerqa",
        description="Answers about mental-health Peer Support Workers, from cited passages.",
    )
    common = Parser(add_help=False)
    common.add_argument("--corpus", metavar="DIR", help="folder of .txt/.md/.pdf/.docx files "
                        "(default: the bundled corpus; env PEERQA_CORPUS_DIR)")
    common.add_argument("--index-dir", metavar="DIR", help="where the index lives "
                        "(env PEERQA_INDEX_DIR)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=kind)

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
    p.add_argument("--corpus", metavar="DIR", help="folder of .txt/.md/.pdf/.docx files "
                   "(default: the bundled corpus; env PEERQA_CORPUS_DIR)")
    p.add_argument("--index-dir", metavar="DIR", help="where the index lives "
                   "(env PEERQA_INDEX_DIR)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--gold", metavar="FILE", help="gold JSONL file (default: evals/gold.jsonl)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="evaluate even when the gold file does not validate against the corpus")
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
    actions = p.add_subparsers(dest="eval_command", metavar="validate", parser_class=kind)
    v = actions.add_parser("validate", help="check a gold file against the corpus: fields, "
                           "types, doc_ids, quotes found verbatim (exit 2 on any problem)")
    v.add_argument("file", metavar="FILE", help="gold JSONL file (evals/README.md: the format)")
    v.add_argument("--corpus", metavar="DIR", help="folder of .txt/.md/.pdf/.docx files "
                   "(default: the bundled corpus; env PEERQA_CORPUS_DIR)")
    v.add_argument("--json", action="store_true", help="the problems as JSON")
    v.set_defaults(func=cmd_eval_validate, index_dir=None)

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
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv or any(a.startswith("--json=") for a in argv)
    args = build_parser(json_errors=as_json).parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader gone away is handled below
        return status
    except PeerQAError as e:
        report_error(str(e), hint(e), as_json)
        return EXIT_USAGE if isinstance(e, USAGE_ERRORS) else EXIT_ERROR
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
