"""The answerability check: what a question asks for, the decision, and the fitted thresholds."""

from __future__ import annotations

import pytest

from peerqa.answer.answerability import Assessment, Term, Thresholds, decide
from peerqa.answer.gaps import content_words, gap
from peerqa.answer.meaning import Deferred
from peerqa.answer.question import asked_types, counts, holds_type
from peerqa.evaluation import Evidence, GoldItem
from peerqa.evaluation.fit_answerability import AnswerabilityFitter, Point, choose_point, frontier


@pytest.mark.parametrize(("question", "kind"), [
    ("What is the hourly rate in euros for a peer support worker in Germany?", "money"),
    ("What's the annual cost of employing one peer support worker?", "money"),
    ("What was the completion rate for the PDA?", "percentage"),
    ("Which Agenda for Change band are peer support worker posts graded at?", "band"),
    ("How many NHS board areas took part in the pilot?", "count"),
    ("How often should peer workers get supervision?", "frequency"),
    ("How long is the probation period for new peer workers?", "duration"),
    ("When was the East Renfrewshire peer service decommissioned?", "date"),
])
def test_asked_types__the_answer_type_a_question_asks_for(question, kind):
    assert kind in asked_types(question)


def test_asked_types__words_that_only_sound_like_figures_ask_for_none():
    assert asked_types("What do peer supporters actually spend their time doing?") == {}
    assert asked_types("Do Iriss and HEE say the same thing about cost?") == {}
    assert asked_types("Should peer workers be on different contracts and grading?") == {}


@pytest.mark.parametrize(("question", "gap_words"), [
    ("How much does it cost to employ a peer support worker?", "give no figure for the cost"),
    ("How much is the HSE spending on peer support?", "give no figure for the HSE spending"),
    ("How much is a peer worker paid?", "give no figure for the pay"),
    ("What headcount did the stocktake find?", "give no headcount"),
    ("What is the exact starting salary?", "give no figure for the starting salary"),
])
def test_gap__says_what_is_missing_in_plain_words(question, gap_words):
    assert [gap(k, p) for k, p in asked_types(question).items()] == [gap_words]


def test_content_words__name_the_thing_whose_figure_is_asked_for():
    assert content_words("the exact starting salary") == ["starting", "salary"]
    assert content_words("How much is a peer worker paid") == ["pay"]
    assert content_words("how often") == [] and content_words("How big") == []


def test_holds_type__a_year_is_not_a_count_and_a_pay_scale_is_not_an_amount():
    assert holds_type("count", "The pilot employed six peer workers.")
    assert not holds_type("count", "The pilot began in 2008.")
    assert holds_type("money", "It secured an additional £1 billion.")
    assert not holds_type("money", "The role varied in terms of pay scale.")
    assert counts("From 2020 the Board employed 11 Peer Support Workers.", {"worker"})
    assert not counts("It covered five Health Board areas.", {"worker"})


def _assessment(**kw) -> Assessment:
    base = dict(asked={}, typed={}, terms=(), matched={}, relevance=0.5,
                passage_coverage=(0.8, 0.8))
    return Assessment(**{**base, **kw})


def test_decide__a_figure_asked_for_and_not_held_is_partial_naming_it():
    a = _assessment(asked={"money": "starting salary"}, typed={"money": 0.0})
    verdict = decide(a, Thresholds())
    assert verdict.coverage == "partial"
    assert verdict.missing == "The documents give no figure for the starting salary."
    held = _assessment(asked={"money": "starting salary"}, typed={"money": 0.6})
    assert decide(held, Thresholds()).coverage == "answered"


def test_decide__a_missing_figure_also_names_the_place_or_year_the_quotes_are_not_about():
    germany = Term("germani", "Germany", 5.0, known=True)
    year = Term("2025", "2025", 6.0, known=False)
    rota = Term("rota", "rota", 6.0, known=True)
    two = Term("two", "Two", 2.0, known=True)  # "... Two years?": an answer offered, not a name
    a = _assessment(asked={"money": "hourly rate"}, typed={"money": 0.0},
                    terms=(germany, year, rota, two),
                    matched={"germani": 0.0, "2025": 0.0, "rota": 0.2, "two": 0.0},
                    focus={"germani": 0.01, "2025": 0.01, "rota": 0.01, "two": 0.01})
    verdict = decide(a, Thresholds(focal=0.1))
    assert verdict.coverage == "partial"
    # A name or year stands, however little of the question's meaning it carries; a common
    # word that weighs little ("rota" here) is not listed.
    assert verdict.missing == ("The documents give no figure for the hourly rate and never "
                               "mention 2025. The quotes found say nothing about Germany.")
    found = _assessment(asked={"money": "hourly rate"}, typed={"money": 0.0},
                        terms=(germany,), matched={"germani": 1.0}, focus={"germani": 0.01})
    assert decide(found, Thresholds(focal=0.1)).missing == \
        "The documents give no figure for the hourly rate."


def test_decide__a_word_carrying_the_question_that_the_evidence_lacks_makes_it_partial():
    caseload = Term("caseload", "caseload", 6.0, known=False)
    a = _assessment(terms=(caseload,), matched={"caseload": 0.3}, focus={"caseload": 0.2})
    verdict = decide(a, Thresholds(focal=0.1))
    assert verdict.coverage == "partial" and "caseload" in verdict.missing
    # Matched by meaning ("payroll" in evidence saying "paid employment"): answered.
    payroll = _assessment(terms=(caseload,), matched={"caseload": 0.7}, focus={"caseload": 0.2})
    assert decide(payroll, Thresholds(focal=0.1, meaning=0.6)).coverage == "answered"
    # A word that carries little of the question ("readily"): answered.
    light = _assessment(terms=(caseload,), matched={"caseload": 0.3}, focus={"caseload": 0.02})
    assert decide(light, Thresholds(focal=0.1)).coverage == "answered"


def test_decide__a_common_word_of_the_corpus_the_quotes_lack_is_weak_evidence_of_a_gap():
    staff = Term("staff", "staff", 2.5, known=True)  # the documents say it in many ways
    caseload = Term("caseload", "caseload", 2.5, known=False)
    a = _assessment(terms=(staff,), matched={"staff": 0.3}, focus={"staff": 0.2})
    assert decide(a, Thresholds(focal=0.1)).coverage == "partial"
    assert decide(a, Thresholds(focal=0.1, focal_idf=3.0)).coverage == "answered"
    rarer = _assessment(terms=(Term("staff", "staff", 4.0, known=True),), matched={"staff": 0.3},
                        focus={"staff": 0.2})
    assert decide(rarer, Thresholds(focal=0.1, focal_idf=3.0)).coverage == "partial"
    # A word the corpus never uses is a gap however common it would be.
    never = _assessment(terms=(caseload,), matched={"caseload": 0.3}, focus={"caseload": 0.2})
    assert decide(never, Thresholds(focal=0.1, focal_idf=3.0)).coverage == "partial"
    # Such a word is not even weighed: weighing costs an encoder pass.
    measured: list[list[str]] = []

    def focus(stems: list[str]) -> dict[str, float]:
        measured.append(stems)
        return {s: 0.2 for s in stems}

    both = _assessment(terms=(staff, caseload), matched={"staff": 0.3, "caseload": 0.3},
                       focus=Deferred(["staff", "caseload"], focus))
    assert decide(both, Thresholds(focal=0.1, focal_idf=3.0)).coverage == "partial"
    assert measured == [["caseload"]]


def test_decide__measures_focus_only_for_terms_the_evidence_lacks_together_and_once():
    measured: list[list[str]] = []

    def focus(stems: list[str]) -> dict[str, float]:
        measured.append(stems)
        return {s: {"caseload": 0.2, "rota": 0.05, "audit": 0.3}[s] for s in stems}

    caseload = Term("caseload", "caseload", 6.0, known=False)
    rota = Term("rota", "rota", 5.0, known=False)
    audit = Term("audit", "audit", 4.0, known=True)
    terms = (caseload, rota, audit)
    found = _assessment(terms=terms, matched={"caseload": 1.0, "rota": 1.0, "audit": 1.0},
                        focus=Deferred(["caseload", "rota", "audit"], focus))
    assert decide(found, Thresholds(focal=0.1)).coverage == "answered" and measured == []
    lacking = _assessment(terms=terms, matched={"caseload": 0.3, "rota": 0.2, "audit": 1.0},
                          focus=Deferred(["caseload", "rota", "audit"], focus))
    assert decide(lacking, Thresholds(focal=0.1)).coverage == "partial"
    assert decide(lacking, Thresholds(focal=0.5)).coverage == "answered"
    # The two terms the evidence lacks, measured in one batch, once for every threshold tried;
    # the term it holds never.
    assert measured == [["caseload", "rota"]]
    assert dict(lacking.focus) == {"caseload": 0.2, "rota": 0.05, "audit": 0.3}


def test_decide__a_word_the_corpus_uses_but_the_quotes_lack_is_said_of_the_quotes_only():
    rota = Term("rota", "rota", 6.0, known=True)
    a = _assessment(terms=(rota,), matched={"rota": 0.2}, focus={"rota": 0.3})
    verdict = decide(a, Thresholds(focal=0.1))
    # Another sentence of a passage found may use it: only the quotes are said to lack it.
    assert verdict.coverage == "partial"
    assert verdict.missing == "The quotes found say nothing about rota."


def test_decide__a_name_the_corpus_never_uses_at_the_heart_of_the_question_is_not_covered():
    welsh = Term("welsh", "Welsh", 6.0, known=False)
    a = _assessment(terms=(welsh,), matched={"welsh": 0.0}, focus={"welsh": 0.3},
                    unknown_names=("Welsh",))
    verdict = decide(a, Thresholds(name_focus=0.2))
    assert verdict.coverage == "not_covered" and verdict.missing == \
        "The documents never mention Welsh."
    assert decide(a, Thresholds(name_focus=1.01)).coverage == "partial"
    assert decide(_assessment(relevance=0.1), Thresholds(min_relevance=0.2)).coverage == \
        "not_covered"


def test_decide__not_covered_names_the_unused_words_that_carry_the_question_not_its_frame():
    stop = Term("stop", "stop", 6.0, known=False)
    euros = Term("euro", "euros", 6.0, known=False)
    weak = dict(relevance=0.1, terms=(stop, euros), matched={"stop": 0.0, "euro": 0.0})
    a = _assessment(**weak, focus={"stop": 0.01, "euro": 0.3})
    verdict = decide(a, Thresholds(min_relevance=0.2, focal=0.08))
    assert verdict.coverage == "not_covered"
    assert verdict.missing == "The documents never mention euros."
    framing = _assessment(**weak, focus={"stop": 0.01, "euro": 0.02})
    assert decide(framing, Thresholds(min_relevance=0.2, focal=0.08)).missing == \
        "The documents hold nothing close enough to answer it."


def test_thresholds__read_from_a_section_ignoring_what_they_do_not_know():
    t = Thresholds.of({"focal": 0.1, "fitted": {"items": 3}, "min_relevance": 0.3})
    assert t.focal == 0.1 and t.min_relevance == 0.3 and t.meaning == Thresholds().meaning


def test_choose_point__most_declines_within_the_caps_and_the_frontier_is_monotone():
    t = Thresholds()
    points = [Point(t, 0.70, 0.01, 0.03, 0.8), Point(t, 0.90, 0.01, 0.12, 0.7),
              Point(t, 0.85, 0.02, 0.06, 0.8), Point(t, 0.95, 0.05, 0.05, 0.7)]
    assert choose_point(points).declines == 0.85
    curve = frontier(points)
    assert [p.wrongful for p in curve] == sorted(p.wrongful for p in curve)
    assert [p.declines for p in curve] == sorted(p.declines for p in curve)


def test_answerability_fitter__fits_on_the_items_it_is_given_and_prints_its_curve(tiny_fake):
    items = [
        GoldItem(id="a", question="How often should supervision happen?", answer="Monthly.",
                 key_facts=("at least monthly",), type="factoid",
                 evidence=(Evidence("training-guide", "Supervision should happen at least "
                                    "monthly"),)),
        GoldItem(id="u", question="What is the hourly rate for peer workers?", answer="None.",
                 key_facts=(), evidence=(), type="unanswerable", absent_terms=("hourly",)),
    ]
    fitter = AnswerabilityFitter()
    section = fitter.fit(tiny_fake, items)
    assert section["fitted"]["items"] == 2
    assert fitter.chosen is not None and fitter.chosen.declines == 1.0
    assert fitter.chosen.wrongful == 0.0
    assert "<- chosen" in fitter.describe() or "chosen (within" in fitter.describe()


def test_holds_type__a_reference_s_own_date_is_a_date_a_citation_s_year_is_not():
    question = "When was the brief published?"
    assert holds_type("date", "Evidence Brief: Peer support workers. Katie Nicholas. "
                      "(January 2021). UK: Health Education England", question)
    assert not holds_type("date", "Support matters for outcomes (Cooper et al., 2024).",
                          question)
