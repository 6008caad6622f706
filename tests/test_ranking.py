"""The fitted parts of a search (query adapter, calibrated relevance) and their fitters, on the tiny
corpus with the fake embedder: no model is loaded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from peerqa.assistant import Assistant
from peerqa.evaluation import Evidence, GoldItem
from peerqa.evaluation.cv import cross_validate
from peerqa.evaluation.fit_ranking import AdapterFitter, RelevanceFitter, SectionPullFitter
from peerqa.evaluation.fitting import Fitter, examples, fit_all, out_of_fold
from peerqa.evaluation.learners import fit_adapter, fit_logistic
from peerqa.ranking import DEFAULT_CALIBRATION, Adapter, Calibration, SectionPull, section_groups
from peerqa.tuning import UNTUNED, load_tuning


def _ranking_fitters() -> list[Fitter]:
    adapter = AdapterFitter()
    return [adapter, RelevanceFitter(refit=[adapter], k=5)]


# Everyday wording on purpose: the documents say "supervision", "accredited course", "pay".
QUESTIONS = [
    ("How often should someone check in with the peer worker?", "training-guide",
     "Supervision should happen at least monthly"),
    ("What course do new starters go on?", "training-guide",
     "New peer workers complete a twelve-week accredited course"),
    ("Should peer staff earn the same as other support staff?", "pilot-notes",
     "Employers should pay peer workers on the same terms as other support staff."),
    ("What should the team sort out before hiring?", "training-guide",
     "Teams should agree the purpose of the peer role before recruitment begins."),
    ("How many peer workers did the coastal pilot take on?", "pilot-notes",
     "The coastal pilot employed six peer workers across two community teams."),
    ("How did one team get ready for its first peer worker?", "bibliography",
     "Preparation included a team workshop and a written role description."),
]


def _items(repeat: int = 2) -> list[GoldItem]:
    out = []
    for r in range(repeat):
        for n, (question, doc, quote) in enumerate(QUESTIONS):
            out.append(GoldItem(id=f"r{r}-{n}", question=question if r == 0 else
                                f"{question} Please explain.", answer=quote, key_facts=(quote,),
                                evidence=(Evidence(doc, quote),), type="factoid"))
    out.append(GoldItem(id="none", question="What is the annual budget for the canteen?",
                        answer="", key_facts=(), evidence=(), type="unanswerable"))
    return out


class RecordingFitter:
    """Fits nothing useful; remembers which items each call was shown."""

    section = "adapter"

    def __init__(self) -> None:
        self.seen: list[set[str]] = []

    def fit(self, assistant: Assistant, items: Sequence[GoldItem]) -> dict[str, Any]:
        self.seen.append({i.id for i in items})
        return {}


# -- the parts, as values ---------------------------------------------------------------------


def test_adapter__maps_to_unit_length_and_is_the_identity_with_zero_factors():
    rng = np.random.default_rng(1)
    q = rng.standard_normal(8).astype(np.float32)
    q /= np.linalg.norm(q)
    zero = Adapter(np.zeros((8, 2), np.float32), np.zeros((8, 2), np.float32))
    assert np.allclose(zero.apply(q), q)
    moved = Adapter(rng.standard_normal((8, 2)).astype(np.float32),
                    rng.standard_normal((8, 2)).astype(np.float32)).apply(q)
    assert np.linalg.norm(moved) == pytest.approx(1.0, abs=1e-5) and not np.allclose(moved, q)


def test_adapter__a_section_for_another_vector_size_or_other_documents_is_not_used():
    docs = ["pilot-notes", "training-guide"]
    section = Adapter(np.ones((8, 2), np.float32), np.ones((8, 2), np.float32)).to_section(docs)
    assert Adapter.from_section(section, 8, reversed(docs)) is not None
    assert Adapter.from_section(section, 384, docs) is None
    assert Adapter.from_section(section, 8, ["pilot-notes"]) is None
    assert Adapter.from_section(section, 8, [*docs, "my-own-report"]) is None
    assert Adapter.from_section({}, 8, docs) is None


def test_shipped_tuning__is_not_applied_to_another_corpus(tiny_fake):
    """A user's own corpus (here the tiny one) searches without the bundled corpus's adapter."""
    shipped = load_tuning()
    assert "adapter" in shipped.sections, "src/peerqa/tuning.json should ship an adapter"
    section = dict(shipped.section("adapter"), dim=tiny_fake.embedder.dim)  # same size, to be sure
    r = tiny_fake.with_tuning(shipped.with_section("adapter", section)).retriever
    assert r.adapter is None and r.calibration == DEFAULT_CALIBRATION


def test_section_pull__moves_a_section_s_passages_towards_its_best_and_no_further():
    scores = np.array([3.0, 1.0, -1.0, 2.0, 0.5])
    groups = section_groups([("a", "x"), ("a", "x"), ("a", "x"), ("b", ""), ("a", "y")])
    assert groups.tolist() == [0, 0, 0, 1, 2]
    pulled = SectionPull(0.25).apply(scores, groups)
    assert pulled.tolist() == [3.0, 1.5, 0.0, 2.0, 0.5]  # best and lone passages keep theirs
    assert SectionPull(0.0).apply(scores, groups) is scores
    assert np.array_equal(np.argsort(-pulled[:3]), np.argsort(-scores[:3]))


def test_section_pull__a_missing_or_impossible_share_means_no_pull():
    assert SectionPull.from_section({}) == SectionPull(0.0)
    assert SectionPull.from_section({"share": 1.5}) == SectionPull(0.0)
    assert SectionPull.from_section(SectionPull(0.3).to_section()) == SectionPull(0.3)


def test_section_pull__is_applied_by_the_ranking_and_named_for_the_calibration(tiny_fake):
    plain = tiny_fake.with_tuning(UNTUNED).retriever
    pulled = tiny_fake.with_tuning(
        UNTUNED.with_section("section_pull", {"share": 0.5})).retriever
    assert plain.scored_on == "fused" and pulled.scored_on == "fused+pull"
    query = "How often should supervision happen?"
    a, b = plain.rank(query), pulled.rank(query)
    before = dict(zip(a.chunks.tolist(), a.scores, strict=True))
    groups = pulled._section_of
    for i, score in zip(b.chunks.tolist(), b.scores, strict=True):
        same = [before[j] for j in before if groups[j] == groups[i]]
        assert score == pytest.approx(0.5 * before[i] + 0.5 * max(same))


def test_calibration__relevance_lies_in_0_1_and_never_rises_down_a_list():
    scores = np.array([3.0, 2.5, 2.5, 0.1, -4.0, -50.0])
    for cal in (DEFAULT_CALIBRATION, Calibration(0.5, -0.2, 1.0), Calibration(0.0, 2.0, -1.0)):
        r = cal.relevance(scores)
        assert np.all((r >= 0) & (r <= 1)) and np.all(np.diff(r) <= 0)
    assert DEFAULT_CALIBRATION.relevance(np.zeros(0)).size == 0


def test_calibration__a_section_fitted_on_other_scores_is_not_used():
    fitted = Calibration(1.0, 2.0, -3.0, "fused+adapter").to_section()
    assert Calibration.from_section(fitted, "fused+adapter") == Calibration(1.0, 2.0, -3.0,
                                                                              "fused+adapter")
    assert Calibration.from_section(fitted, "fused") == DEFAULT_CALIBRATION


# -- the learners -----------------------------------------------------------------------------


def test_fit_logistic__recovers_a_known_slope_and_intercept():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(2.0 * x - 1.0)))).astype(float)
    w = fit_logistic(np.stack([x, np.ones_like(x)], axis=1), y)
    assert w[0] == pytest.approx(2.0, abs=0.25) and w[1] == pytest.approx(-1.0, abs=0.2)


def test_fit_adapter__learns_a_hidden_map_that_holds_for_new_questions():
    """Questions are a fixed linear distortion of their passage's vector: the adapter fitted on
    some questions must rank the right passage higher for questions it never saw."""
    rng = np.random.default_rng(3)
    dim, n_chunks = 16, 40
    chunks = rng.standard_normal((n_chunks, dim)).astype(np.float32)
    chunks /= np.linalg.norm(chunks, axis=1, keepdims=True)
    distortion = np.eye(dim) + 0.9 * rng.standard_normal((dim, dim)) / np.sqrt(dim)

    def questions(n: int) -> tuple[np.ndarray, np.ndarray]:
        target = rng.integers(0, n_chunks, n)
        q = chunks[target] @ np.linalg.inv(distortion).T + 0.05 * rng.standard_normal((n, dim))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        relevant = np.zeros((n, n_chunks), bool)
        relevant[np.arange(n), target] = True
        return q.astype(np.float32), relevant

    train_q, train_rel = questions(300)
    test_q, test_rel = questions(100)
    u, v = fit_adapter(train_q, train_rel, chunks, None, None, rank=dim, l2=0.001, steps=300,
                       lr=0.01)
    adapter = Adapter(u, v)

    def top1(qs: np.ndarray) -> float:
        best = np.argmax(qs @ chunks.T, axis=1)
        return float(test_rel[np.arange(len(qs)), best].mean())

    plain = top1(test_q)
    adapted = top1(np.stack([adapter.apply(q) for q in test_q]))
    assert adapted > plain + 0.1, (plain, adapted)


def test_fit_adapter__a_residual_fit_learns_only_what_the_offsets_miss():
    """Where the offsets (BM25's share of the score) already rank each question's chunk first,
    the adapter has little to learn; where they do not, it learns as much as without them."""
    rng = np.random.default_rng(4)
    dim, n_chunks, n = 16, 30, 120
    chunks = rng.standard_normal((n_chunks, dim)).astype(np.float32)
    chunks /= np.linalg.norm(chunks, axis=1, keepdims=True)
    target = rng.integers(0, n_chunks, n)
    q = chunks[(target + 1) % n_chunks]  # every question looks like the wrong chunk
    relevant = np.zeros((n, n_chunks), bool)
    relevant[np.arange(n), target] = True
    known = np.where(relevant, 40.0, 0.0)  # offsets that already rank the evidence first

    def size(offsets: np.ndarray | None) -> float:
        u, v = fit_adapter(q, relevant, chunks, None, None, rank=8, steps=150, lr=0.01,
                           offsets=offsets)
        return float(np.linalg.norm(u @ v.T))

    learned = size(None)
    assert size(known) < 0.01 * learned
    assert size(np.zeros((n, n_chunks))) == pytest.approx(learned, rel=1e-4)


# -- search with and without fitted parts -----------------------------------------------------


def test_search__every_passage_carries_a_relevance_that_never_rises_down_the_list(tiny_fake):
    for query in ("supervision monthly", "pay peer workers", "rural areas", "canteen budget"):
        hits = tiny_fake.retriever.search(query, 10)
        rel = [h.passage.relevance for h in hits]
        assert hits and all(r is not None and 0 <= r <= 1 for r in rel)
        assert all(a >= b for a, b in zip(rel, rel[1:], strict=False))
    assert all(p.relevance is not None for p in tiny_fake.search("supervision", 3))
    answer = tiny_fake.ask("How often should supervision happen?")
    assert answer.citations and all(c.relevance is not None for c in answer.citations)


def test_untuned__searches_with_the_plain_vector_and_the_default_calibration(tiny_fake):
    untuned = tiny_fake.with_tuning(UNTUNED)
    r = untuned.retriever
    assert r.adapter is None and r.calibration == DEFAULT_CALIBRATION
    hits = r.search("supervision monthly", 3)
    expected = DEFAULT_CALIBRATION.relevance(r.rank("supervision monthly").scores)[:3]
    assert [h.passage.relevance for h in hits] == [round(float(x), 4) for x in expected]


def test_query_vector__is_embedded_once_per_text(tiny_fake, fake_embedder):
    before = len(fake_embedder.calls)
    first = tiny_fake.retriever.query_vector("a question asked twice")
    again = tiny_fake.with_tuning(UNTUNED).retriever.query_vector("a question asked twice")
    assert len(fake_embedder.calls) == before + 1 and np.array_equal(first, again)


# -- the fitters ------------------------------------------------------------------------------


def test_examples__labels_come_only_from_the_items_gold_quotes(tiny_fake):
    items = _items(1)
    found = examples(tiny_fake, items)
    chunks = tiny_fake.retriever.chunks
    for item, e in zip(items, found, strict=True):
        if item.type == "unanswerable":
            assert not e.relevant.any()
            continue
        quote = item.evidence[0].quote
        assert e.relevant.any()
        assert all(quote in chunks[i].text for i in np.flatnonzero(e.relevant))


def test_fit_all__writes_sections_the_retriever_reads_and_uses(tiny_fake):
    tuning = fit_all(tiny_fake, _items(), fitters=_ranking_fitters())
    assert set(tuning.sections) == {"adapter", "relevance"}
    assert tuning.section("adapter")["dim"] == tiny_fake.embedder.dim
    assert tuning.section("relevance")["on"] == "fused+adapter"
    tuned = tiny_fake.with_tuning(tuning).retriever
    assert tuned.adapter is not None and tuned.calibration.on == "fused+adapter"
    raw = tiny_fake.with_tuning(UNTUNED).retriever.query_vector("pay")
    assert not np.allclose(tuned.query_vector("pay"), raw)
    assert tuned.search("How often should supervision happen?", 3)


def test_adapter_fitter__ranks_the_training_evidence_higher(tiny_fake):
    items = _items()
    found = [e for e in examples(tiny_fake, items) if e.relevant.any()]
    plain = tiny_fake.with_tuning(UNTUNED).retriever
    tuned = tiny_fake.with_tuning(
        UNTUNED.with_section("adapter", AdapterFitter(steps=300).fit(tiny_fake, items))).retriever

    def mean_rank(r: Any) -> float:
        ranks = []
        for e in found:
            order = list(r.rank(e.query).chunks)
            ranks.append(min(order.index(i) for i in np.flatnonzero(e.relevant)))
        return float(np.mean(ranks))

    assert mean_rank(tuned) < mean_rank(plain)


def test_out_of_fold__scores_each_item_through_sections_fitted_without_it(tiny_fake):
    items = _items()
    recorder = RecordingFitter()
    with_adapter = tiny_fake.with_tuning(UNTUNED.with_section("adapter", {}))
    views = out_of_fold(with_adapter, items, [recorder], k=3)
    assert len(views) == 3 == len(recorder.seen)
    assert sorted(i for held, _ in views for i in held) == list(range(len(items)))
    for (held, _), seen in zip(views, recorder.seen, strict=True):
        assert not {items[i].id for i in held} & seen
        assert len(seen) + len(held) == len(items)
    # Nothing fitted before: nothing to refit, every item read through the one assistant.
    assert out_of_fold(tiny_fake.with_tuning(UNTUNED), items, [recorder])[0][0] == \
        list(range(len(items)))


def test_adapter_fitter__records_its_bm25_offset_and_fits_without_one_too(tiny_fake):
    items = _items()
    residual = AdapterFitter(steps=30).fit(tiny_fake, items)
    plain = AdapterFitter(steps=30, bm25_offset=0.0).fit(tiny_fake, items)
    assert residual["bm25_offset"] == 0.5 and plain["bm25_offset"] == 0.0
    assert not np.allclose(residual["u"], plain["u"])


def test_section_pull_fitter__chooses_among_its_shares_reading_items_through_unseen_adapters(
    tiny_fake,
):
    items = _items()
    adapter = AdapterFitter(steps=20)
    recorder = RecordingFitter()
    tuning = fit_all(tiny_fake, items, fitters=[adapter])
    shares = (0.0, 0.3, 0.6)
    section = SectionPullFitter(refit=[recorder], k=3, shares=shares).fit(
        tiny_fake.with_tuning(tuning), items)
    assert section["share"] in shares
    assert section["items"] == sum(1 for i in items if i.type != "unanswerable")
    assert len(recorder.seen) == 3  # each item ranked through a refit that never saw it


def test_fitters__carry_nothing_from_one_fit_to_the_next(tiny_fake):
    a, b = _items(1), _items(2)[len(QUESTIONS):]
    first = fit_all(tiny_fake, a, fitters=_ranking_fitters())
    fit_all(tiny_fake, b, fitters=_ranking_fitters())
    assert fit_all(tiny_fake, a, fitters=_ranking_fitters()) == first


def test_cross_validate__the_fitters_never_see_the_fold_they_are_scored_on(tiny_fake):
    items = _items()
    seen: list[set[str]] = []

    class Watching(RelevanceFitter):
        def fit(self, assistant: Assistant, items: Sequence[GoldItem]) -> dict[str, Any]:
            seen.append({i.id for i in items})
            return super().fit(assistant, items)

    adapter = AdapterFitter(steps=20)
    cv = cross_validate(tiny_fake, items, k=3, fitters=[adapter, Watching(refit=[adapter])])
    assert cv.fitted == ["adapter", "relevance"] and len(seen) == 3
    for run, shown in zip(cv.runs, seen, strict=True):
        assert not {r.id for r in run.items} & shown


def test_hits__carry_plain_sentence_similarities_when_the_query_is_adapted(tiny_fake):
    tuning = fit_all(tiny_fake, _items(), fitters=[AdapterFitter(steps=50)])
    r = tiny_fake.with_tuning(tuning).retriever
    assert r.adapter is not None
    query = "How often should supervision happen?"
    hit = r.search(query, 1)[0]
    plain = r.sentences.vectors @ r.embed(query)
    rows = {(int(a), int(b)): j for j, (a, b) in enumerate(r.sentences.spans)}
    for a, b, sim in hit.sentences:
        assert sim == pytest.approx(float(plain[rows[(a, b)]]), abs=1e-6)
