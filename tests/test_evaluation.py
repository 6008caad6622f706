"""Each metric of peerqa.evaluation on tiny hand-made cases; the baselines, report and CLI."""

from __future__ import annotations

import html
import json
from dataclasses import replace
from pathlib import Path

import pytest

from peerqa.cli import main
from peerqa.evaluation import (
    BM25Baseline,
    Evidence,
    GoldItem,
    ItemResult,
    LlamaIndexBaseline,
    Span,
    aggregate,
    citation_scores,
    evaluate_answer,
    evidence_recall,
    hit_at,
    holds,
    key_fact_coverage,
    locate,
    marker_checks,
    percentile,
    reciprocal_rank,
    render,
    run_eval,
    token_f1,
    verbatim,
)
from peerqa.types import Answer, Chunk, Citation, Document, Passage

DOC_TEXT = (
    "Peer workers need supervision. Supervision should happen monthly. "
    "Training lasts twelve weeks and covers boundaries."
)
DOC = Document(doc_id="guide", title="Guide", text=DOC_TEXT, path="guide.md", sha256="0")
DOCS = {"guide": DOC}


def _span_of(text: str) -> tuple[int, int]:
    start = DOC_TEXT.index(text)
    return start, start + len(text)


def _citation(number: int, text: str, doc: Document = DOC) -> Citation:
    start = doc.text.index(text)
    return Citation(doc_id=doc.doc_id, title=doc.title, section="", text=text, start=start,
                    end=start + len(text), score=1.0, number=number)


def _passage(text: str, doc: Document = DOC) -> Passage:
    start = doc.text.index(text)
    return Passage(doc.doc_id, doc.title, "", text, start, start + len(text), 1.0,
                   chunk_id=f"{doc.doc_id}:{start}")


def _item(kind: str = "factoid", quotes: tuple[str, ...] = ("Supervision should happen monthly.",),
          key_facts: tuple[str, ...] = ("supervision monthly",)) -> GoldItem:
    answerable = kind != "unanswerable"
    return GoldItem(
        id=f"t-{kind}", question="How often is supervision?", answer="Monthly supervision.",
        key_facts=key_facts if answerable else (),
        evidence=tuple(Evidence("guide", q) for q in quotes) if answerable else (),
        type=kind, absent_terms=() if answerable else ("bonus",),
    )


# --------------------------------------------------------------------------- holds


def test_locate__finds_every_occurrence():
    assert locate("ab", "xabyab") == [(1, 3), (4, 6)]
    assert locate("zz", "xabyab") == []


def test_holds__a_quote_inside_the_passage_span_of_the_same_document():
    quote = [Span("d", 10, 20)]
    assert holds(Span("d", 5, 25), quote)
    assert holds(Span("d", 10, 20), quote)
    assert not holds(Span("other", 5, 25), quote)
    assert not holds(Span("d", 20, 40), quote)


def test_holds__a_quote_across_a_boundary_needs_half_of_it_in_the_passage():
    quote = [Span("d", 10, 20)]
    assert holds(Span("d", 0, 15), quote)  # 5 of 10 characters: half
    assert not holds(Span("d", 0, 14), quote)  # 4 of 10
    assert holds(Span("d", 14, 40), quote)  # 6 of 10


def test_holds__any_occurrence_of_a_repeated_quote_counts():
    quote = [Span("d", 0, 5), Span("d", 100, 105)]
    assert holds(Span("d", 90, 120), quote)


# --------------------------------------------------------------------------- retrieval metrics


def test_hit_at_and_reciprocal_rank__use_the_first_relevant_rank():
    relevant = [False, True, False]
    assert hit_at(relevant, 1) == 0.0
    assert hit_at(relevant, 2) == 1.0
    assert reciprocal_rank(relevant) == 0.5
    assert reciprocal_rank(relevant, depth=1) == 0.0
    assert reciprocal_rank([False, False]) == 0.0


def test_evidence_recall__is_the_share_of_quotes_held_by_some_passage():
    quotes = [[Span("d", 0, 10)], [Span("d", 50, 60)], [Span("e", 0, 10)]]
    assert evidence_recall([Span("d", 0, 20), Span("d", 40, 70)], quotes) == pytest.approx(2 / 3)
    assert evidence_recall([Span("e", 100, 200)], quotes) == 0.0


# --------------------------------------------------------------------------- citations (ALCE)


def test_citation_scores__a_quoted_sentence_with_its_source_is_supported_and_needed():
    passage = "Peer workers need supervision. Supervision should happen monthly."
    scores = citation_scores("Supervision should happen monthly. [1]", {1: passage})
    assert (scores.recall, scores.precision) == (1.0, 1.0)


def test_citation_scores__a_sentence_without_a_marker_is_unsupported():
    passages = {1: "Supervision should happen monthly."}
    scores = citation_scores(
        "Supervision should happen monthly. [1] Training lasts twelve weeks.", passages
    )
    assert scores.recall == 0.5
    assert scores.unsupported == ("Training lasts twelve weeks.",)
    assert scores.precision == 1.0


def test_citation_scores__an_irrelevant_extra_citation_lowers_precision():
    passages = {1: "Supervision should happen monthly.", 2: "Training covers boundaries."}
    scores = citation_scores("Supervision should happen monthly. [1][2]", passages)
    assert scores.recall == 1.0
    assert scores.precision == 0.5
    assert scores.unneeded == (("Supervision should happen monthly.", 2),)


def test_citation_scores__two_citations_that_only_support_together_are_both_needed():
    passages = {1: "Peer workers need supervision.", 2: "Training lasts twelve weeks."}
    scores = citation_scores("Peer workers need supervision and training twelve weeks. [1][2]",
                             passages)
    assert scores.recall == 1.0
    assert scores.precision == 1.0


def test_citation_scores__citations_of_an_unsupported_sentence_are_not_needed():
    passages = {1: "Training covers boundaries.", 2: "Peer workers need supervision."}
    scores = citation_scores("Employers pay a bonus of 500 pounds. [1][2]", passages)
    assert (scores.recall, scores.precision) == (0.0, 0.0)


def test_citation_scores__an_unresolved_marker_supports_nothing():
    scores = citation_scores("Supervision should happen monthly. [3]",
                             {1: "Supervision should happen monthly."})
    assert scores.recall == 0.0


def test_citation_scores__takes_another_judge():
    scores = citation_scores("Anything at all. [1]", {1: "unrelated"}, judge=lambda s, p: True)
    assert scores.recall == 1.0


def test_marker_checks__every_marker_resolves_and_every_citation_is_used():
    assert marker_checks("A. [1] B. [2]", [1, 2]) == (True, True)
    assert marker_checks("A. [1] B. [2]", [1]) == (False, True)
    assert marker_checks("A. [1]", [1, 2]) == (True, False)


def test_verbatim__a_quote_must_equal_the_document_text_at_its_span():
    good = _citation(1, "Supervision should happen monthly.")
    assert verbatim(good, DOCS)
    shifted = replace(good, start=good.start + 1, end=good.end + 1)
    assert not verbatim(shifted, DOCS)
    assert not verbatim(replace(good, doc_id="missing", title=""), DOCS)


# --------------------------------------------------------------------------- answer metrics


def test_key_fact_coverage__needs_six_tenths_of_a_facts_stemmed_words():
    answer = "New workers complete an accredited course lasting twelve weeks. [1]"
    share, missing = key_fact_coverage(answer, ["twelve-week accredited course",
                                                "supervision happens monthly"])
    assert share == 0.5
    assert missing == ["supervision happens monthly"]
    # 3 of 5 content words is exactly 0.6: covered; 2 of 5 is not.
    fact = "course twelve weeks boundaries recovery"
    assert key_fact_coverage("a course of twelve weeks", [fact])[0] == 1.0
    assert key_fact_coverage("a course of many weeks", [fact])[0] == 0.0


def test_token_f1__on_stemmed_content_tokens():
    assert token_f1("Peer workers need training.", "peer worker needs training") == 1.0
    assert token_f1("Peer workers training", "peer workers supervision") == pytest.approx(2 / 3)
    assert token_f1("bonus pounds", "monthly supervision") == 0.0
    assert token_f1("", "monthly supervision") == 0.0


def test_percentile__interpolates_between_ranks():
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    assert percentile([7], 95) == 7
    assert percentile([], 50) is None


# --------------------------------------------------------------------------- per item, aggregates


def _answer(text: str, citations: list[Citation], passages: list[Passage],
            abstained: bool = False) -> Answer:
    return Answer(question="q", text=text, citations=citations, abstained=abstained,
                  passages=passages, retrieval_query="q")


def test_evaluate_answer__a_correct_cited_answer():
    monthly = "Supervision should happen monthly."
    ranking = [_passage("Training lasts twelve weeks and covers boundaries."), _passage(monthly)]
    answer = _answer(f"{monthly} [1]", [_citation(1, monthly)], ranking)
    r = evaluate_answer(_item(), answer, ranking, DOCS, k=5)
    m = r.metrics
    assert (m["hit@1"], m["hit@5"], m["mrr@10"], m["evidence_recall@5"]) == (0.0, 1.0, 0.5, 1.0)
    assert m["citation_correctness"] == 1.0
    assert (m["citation_recall"], m["citation_precision"]) == (1.0, 1.0)
    assert m["quote_fidelity"] == 1.0
    assert m["key_fact_coverage"] == 1.0
    assert m["wrongful_abstention"] == 0.0
    assert r.expected[0]["rank"] == 2
    assert r.ranking_matches_answer
    assert not r.failed, r.failures


def test_evaluate_answer__citing_the_wrong_passage_fails_citation_correctness():
    other = "Training lasts twelve weeks and covers boundaries."
    ranking = [_passage(other)]
    answer = _answer(f"{other} [1]", [_citation(1, other)], ranking)
    r = evaluate_answer(_item(), answer, ranking, DOCS, k=5)
    assert r.metrics["citation_correctness"] == 0.0
    assert r.metrics["hit@5"] == 0.0
    assert any("no cited passage holds" in f for f in r.failures)


def test_evaluate_answer__abstaining_on_an_answerable_item_is_wrongful():
    ranking = [_passage("Supervision should happen monthly.")]
    answer = _answer("The documents do not cover this.", [], ranking, abstained=True)
    r = evaluate_answer(_item(), answer, ranking, DOCS, k=5)
    assert r.metrics["wrongful_abstention"] == 1.0
    assert r.metrics["citation_correctness"] == 0.0
    assert r.metrics["key_fact_coverage"] == 0.0
    assert "citation_recall" not in r.metrics
    assert r.metrics["quote_fidelity"] == 1.0  # the closest passage shown is verbatim
    assert any("abstained" in f for f in r.failures)


def test_evaluate_answer__answering_an_unanswerable_item_fails():
    text = "Training lasts twelve weeks and covers boundaries."
    ranking = [_passage(text)]
    r = evaluate_answer(_item("unanswerable"), _answer(f"{text} [1]", [_citation(1, text)],
                                                       ranking), ranking, DOCS, k=5)
    assert r.metrics["abstention_unanswerable"] == 0.0
    assert "hit@5" not in r.metrics and "wrongful_abstention" not in r.metrics
    assert r.metrics["decline_unanswerable"] == 0.0
    assert any("should decline" in f for f in r.failures)


def test_evaluate_answer__a_quote_that_is_not_the_document_text_breaks_fidelity():
    text = "Supervision should happen monthly."
    start, end = _span_of(text)
    forged = Citation(doc_id="guide", title="Guide", section="", start=start, end=end, score=1.0,
                      text="Supervision should happen weekly.", number=1)
    r = evaluate_answer(_item(), _answer(f"{text} [1]", [forged], []), [], DOCS, k=5)
    assert r.metrics["quote_fidelity"] == 0.0
    assert any("fidelity" in f for f in r.failures)


def _result(kind: str, metrics: dict, shown: int = 1, ok: int = 1, ms: float = 10.0) -> ItemResult:
    return ItemResult(id=kind, type=kind, question="", answerable=kind != "unanswerable",
                      abstained=False, latency_ms=ms, retrieval_query="", answer="",
                      metrics=metrics, quotes_shown=shown, quotes_verbatim=ok)


def test_aggregate__averages_where_a_metric_applies_and_pools_fidelity():
    results = [
        _result("factoid", {"hit@5": 1.0}, shown=3, ok=3, ms=10),
        _result("factoid", {"hit@5": 0.0}, shown=1, ok=0, ms=30),
        _result("unanswerable", {"abstention_unanswerable": 1.0}, shown=0, ok=0, ms=20),
    ]
    figures = aggregate(results, k=5)
    assert figures["hit@5"] == 0.5
    assert figures["abstention_unanswerable"] == 1.0
    assert figures["wrongful_abstention"] is None
    assert figures["quote_fidelity"] == 0.75
    assert figures["latency_p50_ms"] == 20
    assert figures["items"] == 3


# --------------------------------------------------------------------------- baselines


def _chunks(doc: Document) -> list[Chunk]:
    out, pos = [], 0
    for sentence in doc.text.split(". "):
        start = doc.text.index(sentence, pos)
        end = start + len(sentence)
        out.append(Chunk(f"{doc.doc_id}:{start}", doc.doc_id, "", start, end, sentence,
                         len(sentence.split()), 0))
        pos = end
    return out


def test_bm25_baseline__ranks_the_chunk_with_the_query_words_first():
    chunks = _chunks(DOC)
    top = BM25Baseline(chunks).retrieve("how long does training last", 2)
    assert top[0].text.startswith("Training lasts twelve weeks")
    assert DOC_TEXT[top[0].start : top[0].end] == top[0].text


class _WordHashEmbedder:
    """Bag-of-words vectors: deterministic and model-free, enough to check the wiring."""

    name = "word-hash"
    dim = 64

    def _vector(self, text: str):
        import numpy as np

        v = np.zeros(self.dim, dtype=np.float32)
        for w in text.lower().split():
            v[sum(map(ord, w.strip(".,"))) % self.dim] += 1
        return v / max(float(np.linalg.norm(v)), 1e-9)

    def embed_documents(self, texts, progress=None):
        import numpy as np

        return np.stack([self._vector(t) for t in texts])

    def embed_query(self, text):
        return self._vector(text)


def test_llama_index_baseline__maps_nodes_to_document_offsets_without_global_settings():
    from llama_index.core import Settings as LlamaSettings

    second = Document(doc_id="notes", title="Notes", text="Employers pay peer workers fairly.",
                      path="notes.txt", sha256="1")
    baseline = LlamaIndexBaseline([DOC, second], _WordHashEmbedder())
    found = baseline.retrieve("employers pay peer workers", 2)
    assert found[0].doc_id == "notes"
    for p in found:
        text = {"guide": DOC_TEXT, "notes": second.text}[p.doc_id]
        assert text[p.start : p.end] == p.text
    assert LlamaSettings._embed_model is None  # never resolved, never set


# --------------------------------------------------------------------------- runner, report, CLI


def _write_gold(path: Path, docs: dict[str, str]) -> Path:
    doc_id = next(d for d in docs if "pilot" in d)
    quote = "Service users said that peer workers gave them hope."
    assert quote in docs[doc_id]
    lines = [
        {"id": "tiny-1", "question": "What did service users say peer workers gave them?",
         "answer": "Hope.", "key_facts": ["peer workers gave hope"], "type": "factoid",
         "evidence": [{"doc_id": doc_id, "quote": quote}], "history": []},
        {"id": "tiny-2", "question": "What <b>bonus</b> do astronauts on Mars receive?",
         "answer": "Not covered.", "key_facts": [], "evidence": [], "type": "unanswerable",
         "history": [], "absent_terms": ["astronaut"]},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def test_run_eval_and_report__on_the_tiny_corpus(tiny_assistant, tmp_path):
    tiny_assistant.index()
    docs = {d.doc_id: d.text for d in tiny_assistant.documents}
    from peerqa.evaluation import load_gold

    items = load_gold(_write_gold(tmp_path / "gold.jsonl", docs))
    run = run_eval(tiny_assistant, items, k=3, compare=True)
    assert [r.id for r in run.items] == ["tiny-1", "tiny-2"]
    assert run.overall["quote_fidelity"] == 1.0
    assert set(run.by_type) == {"factoid", "unanswerable"}
    assert [s.name for s in run.comparison] == ["peerqa", "bm25", "llama-index top 2",
                                                "llama-index top 3"]
    page = render(run)
    assert "<svg" in page and "<script" not in page
    # Every answer beside its gold answer, with the coverage given and the one expected.
    side = page.split("Every answer beside its gold answer")[1].split("<h2>")[0]
    for r in run.items:
        assert r.id in side and html.escape(r.answer.split("\n")[0], quote=True) in side
    assert {r.expected_coverage for r in run.items} == {"answered", "not_covered"}
    assert run.overall["flawed_quotes"] == 0.0 and "decline_unanswerable" in run.overall
    assert "<b>bonus</b>" not in page  # gold text is escaped wherever it appears
    json.dumps(run.to_dict())


def test_cli_eval__prints_the_table_and_writes_json_and_report(tiny_corpus, tmp_path, capsys):
    from peerqa import Assistant

    docs = {d.doc_id: d.text for d in Assistant(corpus_dir=tiny_corpus).documents}
    gold = _write_gold(tmp_path / "gold.jsonl", docs)
    out, page = tmp_path / "eval.json", tmp_path / "eval.html"
    code = main(["eval", "--corpus", str(tiny_corpus), "--index-dir", str(tmp_path / "idx"),
                 "--gold", str(gold), "--json", str(out), "--report", str(page), "-q",
                 "--type", "factoid"])
    assert code == 0
    table = capsys.readouterr().out
    assert "hit@5" in table and "citation recall" in table
    data = json.loads(out.read_text())
    assert [i["id"] for i in data["items"]] == ["tiny-1"]
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_cli_eval__no_items_left_is_a_usage_error(tiny_corpus, tmp_path, capsys):
    from peerqa import Assistant

    docs = {d.doc_id: d.text for d in Assistant(corpus_dir=tiny_corpus).documents}
    gold = _write_gold(tmp_path / "gold.jsonl", docs)
    code = main(["eval", "--corpus", str(tiny_corpus), "--index-dir", str(tmp_path / "idx"),
                 "--gold", str(gold), "-q", "--type", "list"])
    assert code == 2
    assert "no gold items" in capsys.readouterr().err
