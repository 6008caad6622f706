"""The evaluation: how often peerqa finds, cites and covers the gold evidence.

Every rule the figures rest on, in one place:

- **Which query.** Retrieval is scored on ``Answer.retrieval_query``, the query the answer itself
  searched with (a follow-up's words plus its previous question). The ranking is re-read from
  ``assistant.search(retrieval_query, ...)``, which is deterministic, so its first
  passages are the answer's passages (checked for every item). The baselines of ``--compare`` get
  the very same query strings.
- **Holds.** A passage *holds* a gold quote when, in the same document, the quote's span (found in
  the document text by exact search; every occurrence counts) lies inside the passage's
  ``[start, end)`` span, or, for a quote that crosses a passage boundary, when the passage overlaps
  at least half of the quote's characters.
- **Retrieval** (answerable items): hit@1 and hit@k (a passage in the top 1 / top k holds some gold
  quote), MRR@10 (reciprocal rank of the first such passage in the top 10, else 0), evidence
  recall@k (share of the item's gold quotes held by some top-k passage).
- **Citations**, following ALCE (Gao et al., 2023), judged by ``peerqa.answer.judge.supports``, the
  same offline judge the answerer uses (pass ``judge=`` to swap in another, such as an LLM judge):
  citation recall is the share of an answer's sentences whose cited passages, together, support it
  (a sentence without a marker is unsupported); citation precision is the share of citations that
  are needed: a citation of a supported sentence is needed unless it does not support the sentence
  on its own *and* the sentence's other citations still do; citations of an unsupported sentence
  are not needed. Both are averaged over the items answered (not abstained on).
- **Citation correctness** (answerable items): the answer cites a passage that holds a gold quote;
  an abstention scores 0.
- **Quote fidelity**: every quote shown (each citation, and each closest passage listed with an
  abstention) equals ``document.text[start:end]``; pooled over all quotes. Must be 1.0.
- **Markers**: every ``[n]`` resolves to a citation, and every citation is cited by some ``[n]``.
- **Key-fact coverage** (answerable items): a key fact is covered when at least 0.6 of its distinct
  stemmed content tokens (``peerqa.text.tokenize``) occur in the answer text; the item's
  score is the share of its key facts covered. An abstention scores 0.
- **Token F1** (answerable items): SQuAD-style F1 between the multisets of stemmed content tokens
  of the answer and the gold answer; an abstention scores 0.
- **Abstention**: share of unanswerable items abstained on; wrongful abstention is the share of
  answerable items abstained on.
- **Latency**: p50 and p95 (linear interpolation) of the wall time of ``ask``, after one warm-up.

Aggregates are means over the items a metric applies to (``None`` where none do), overall and per
gold type.

Modules: ``gold`` (the gold format and its validator), ``metrics`` (one pure function per
metric), ``scoring`` (one answer against its item; aggregates), ``baselines`` (the systems of
``--compare``), ``runner`` (asking and scoring every item), ``tables`` and ``report`` (the
terminal table and the HTML page).
"""

from __future__ import annotations

from ..answer.judge import marker_checks
from .baselines import BM25Baseline, LlamaIndexBaseline, Retrieved, SystemScores, score_rankings
from .gold import TYPES, Evidence, GoldItem, default_gold_path, load_gold, validate_gold
from .metrics import (
    CitationScores,
    Judge,
    Span,
    citation_scores,
    evidence_recall,
    hit_at,
    holds,
    key_fact_coverage,
    locate,
    percentile,
    quote_spans,
    reciprocal_rank,
    token_f1,
    verbatim,
)
from .report import render, write_report
from .runner import Answerer, EvalRun, compare_systems, load_gold_items, run_eval
from .scoring import TARGETS, ItemResult, aggregate, evaluate_answer, metric_names
from .tables import format_comparison, format_table

__all__ = [
    "TARGETS", "TYPES", "Answerer", "BM25Baseline", "CitationScores", "EvalRun", "Evidence",
    "GoldItem", "ItemResult", "Judge", "LlamaIndexBaseline", "Retrieved", "Span", "SystemScores",
    "aggregate", "citation_scores", "compare_systems", "default_gold_path", "evaluate_answer",
    "evidence_recall", "format_comparison", "format_table", "hit_at", "holds",
    "key_fact_coverage", "load_gold", "load_gold_items", "locate", "marker_checks",
    "metric_names", "percentile", "quote_spans", "reciprocal_rank", "render", "run_eval",
    "score_rankings", "token_f1", "validate_gold", "verbatim", "write_report",
]
