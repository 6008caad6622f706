"""The hidden set's protocol on the gold set: fit on the older items, score the practitioner ones.

A hidden set of practitioner-worded questions judges retrieval. The gold set's 112 ``prac-*``
items were written that way; the other 310 items came before them. This fits every tuning section
on the older items only (as ``peerqa tune`` would) and evaluates the ``prac-*`` items, so nothing
fitted ever saw their wording. Prints the retrieval figures and the answer figures; asserts
nothing.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/practitioner_holdout.py [--untuned]
"""

from __future__ import annotations

import argparse
import time

from peerqa import Assistant
from peerqa.evaluation import load_gold_items
from peerqa.evaluation.fitters import default_fitters
from peerqa.evaluation.fitting import fit_all
from peerqa.evaluation.runner import run_eval
from peerqa.tuning import UNTUNED

SHOWN = ("hit@1", "hit@5", "mrr@10", "evidence_recall@5", "citation_correctness",
         "key_fact_coverage", "wrongful_not_covered", "wrongful_partial")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--untuned", action="store_true", help="score with nothing fitted")
    args = parser.parse_args()
    assistant = Assistant()
    assistant.index()
    items, source = load_gold_items()
    held = [i for i in items if i.id.startswith("prac-")]
    older = [i for i in items if not i.id.startswith("prac-")]
    started = time.perf_counter()
    tuning = UNTUNED if args.untuned else fit_all(
        assistant, older, fitters=default_fitters(), fitted_on=f"{source}: {len(older)} older")
    run = run_eval(assistant.with_tuning(tuning), held, k=5)
    print(f"fitted on {len(older)} older items ({', '.join(sorted(tuning.sections)) or 'nothing'}"
          f"), scored on {len(held)} practitioner-worded items; "
          f"{time.perf_counter() - started:.0f} s")
    for name in SHOWN:
        value = run.overall.get(name)
        print(f"  {name:22s} {'-' if value is None else f'{value:.3f}'}")


if __name__ == "__main__":
    main()
