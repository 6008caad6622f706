"""Answers a practitioner can trust, on the bundled documents: the issue's own questions."""

from __future__ import annotations

import re
from html import unescape

import pytest

from peerqa import Assistant
from peerqa.answer.answerability import unknown_names
from peerqa.answer.judge import check_citations, judged_text
from peerqa.answer.sentences import flaws
from peerqa.answer.shape import DIFFER
from peerqa.evaluation import citation_scores
from peerqa.render import answer_html, answer_markdown, format_answer
from peerqa.types import Answer

PAID_POSTS = "How many paid peer support posts are there in Scotland?"
GERMANY = "What is the hourly rate in euros for a peer support worker in Germany?"
SALARY = "What is the exact starting salary for a peer support worker in NHS Scotland in 2025?"
PAY = "How much are peer support workers paid?"  # the documents count paid posts, give no pay
COMPARE = "Do the Fife review and the HEE evidence brief say different things about supervision?"


@pytest.fixture(scope="module")
def answers(assistant: Assistant) -> dict[str, Answer]:
    return {q: assistant.ask(q) for q in (PAID_POSTS, GERMANY, SALARY, PAY, COMPARE)}


def _visible(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


def test_paid_posts__the_documents_differ_and_each_side_says_when_its_figure_is_from(answers):
    answer = answers[PAID_POSTS]
    assert answer.coverage == "answered" and answer.conflicts
    sides = {s.value: s for c in answer.conflicts for s in c.sides}
    assert set(sides) >= {"around 37", "around 80"}
    by_number = {c.number: c for c in answer.citations}
    assert by_number[sides["around 37"].number].doc_id == "hee-evidence-brief"
    assert sides["around 37"].as_of == "2012"
    assert by_number[sides["around 80"].number].doc_id == "iriss-peer-support-roles"
    assert sides["around 80"].as_of == "2016"
    for side in sides.values():  # each side's quote is the document's text at its offsets
        doc = by_number[side.number]
        assert re.sub(r"\s+", " ", doc.text[side.start - doc.start : side.end - doc.start]) \
            == side.quote
    text = answer.text
    assert DIFFER in text
    assert text.index(DIFFER) < text.index("around 37") and text.index(DIFFER) < \
        text.index("around 80")


def test_out_of_scope_figures__declined_naming_what_is_missing(answers):
    germany, salary = answers[GERMANY], answers[SALARY]
    assert germany.coverage in ("partial", "not_covered")
    assert "hourly rate" in germany.missing
    # The quotes nearest to pay are about Scotland: the answer says they are not about Germany.
    assert germany.coverage == "not_covered" or "Germany" in germany.missing
    assert salary.coverage in ("partial", "not_covered")
    assert "salary" in salary.missing
    for answer in (germany, salary):
        assert answer.text.startswith(answer.missing) or answer.abstained
        # The quotes shown name no hourly rate or salary: nothing is presented as the figure.
        assert not re.search(r"[£€$]\s?\d", judged_text(answer))


def test_comparison__one_part_per_named_document_both_cited(answers):
    answer = answers[COMPARE]
    cited = [c.doc_id for c in answer.citations]
    assert "fife-scoping-review" in cited and "hee-evidence-brief" in cited
    leads = [p.text for p in answer.parts if p.kind == "lead"]
    fife = next(i for i, t in enumerate(leads) if t.startswith("Fife scoping review"))
    hee = next(i for i, t in enumerate(leads) if t.startswith("HEE evidence brief"))
    assert fife < hee  # in the order the question names them
    quoted = " ".join(p.text for p in answer.parts if p.kind == "quote").lower()
    assert quoted.count("supervision") >= 2


def test_partial_answer__opens_with_what_is_missing_then_the_nearest_evidence(answers):
    answer = answers[PAY]
    assert answer.coverage == "partial" and not answer.abstained
    assert answer.parts[0].kind == "lead" and answer.parts[0].text == answer.missing
    second = answer.parts[1]
    assert second.kind == "lead"
    assert second.text == "The nearest they come:" or second.text.startswith("What they say")
    assert any(p.kind == "quote" for p in answer.parts) and answer.citations


def test_partial_answer__the_nearest_material_is_about_what_is_missing(answers):
    # No figure of pay anywhere: what is quoted must be about pay (the paid posts, whose counts
    # differ), never a sentence that only shares another word ("starts with what's strong").
    for question in (PAY, SALARY):
        quotes = [p.text for p in answers[question].parts if p.kind == "quote"]
        assert all(re.search(r"\bpaid\b|\bpay\b|salar", q) for q in quotes), question
        assert not any("strengths-based" in q for q in quotes)
    assert answers[PAY].coverage == "partial" and "pay" in answers[PAY].missing
    assert answers[PAY].conflicts  # the differing paid-posts counts stay


def test_missing__names_a_document_or_a_cost_in_plain_words(assistant):
    vocabulary, phrases = assistant.retriever.vocabulary, assistant.phrases
    # A document's own short title is not a name the documents "never mention".
    assert unknown_names("Who wrote the Iriss Insight?", vocabulary, phrases) == []
    assert unknown_names("Are peer workers used in Highland's rural teams?", vocabulary,
                         phrases) == ["Highland"]
    # A word the corpus uses in another form ("disclosure"): the passages found lack it, the
    # documents do not.
    disclosing = assistant.ask("What challenges do peer workers face when disclosing their "
                               "lived experience?")
    assert "The documents say nothing about disclosing" not in disclosing.missing
    cost = assistant.ask("How much does it cost to employ a peer support worker?")
    assert cost.coverage != "answered"
    assert "give no figure for the cost" in cost.missing and "does it" not in cost.missing


@pytest.mark.parametrize("question", [
    "What is the capital of France?",  # "capital" shares a stem with "capitalize" in one entry
    "Which team won the Bundesliga last season?",
    "How do I renew my passport at the Lisbon consulate?",
])
def test_off_topic_question__resting_on_a_name_the_documents_never_use_is_not_covered(
    assistant, question
):
    answer = assistant.ask(question)
    assert answer.coverage == "not_covered" and answer.abstained
    assert "never mention" in answer.missing


def test_own_lines__are_not_quotes_and_never_count_as_unsupported(answers):
    for answer in answers.values():
        if answer.abstained:
            continue
        own = [p.text for p in answer.parts if p.own]
        assert own and not any(re.search(r"\[\d+\]", line) for line in own)
        checks = check_citations(answer.text, answer.citations, answer.parts)
        assert checks.unsupported_sentences == [] and checks.markers_resolve
        scores = citation_scores(judged_text(answer), {c.number: c.text
                                                       for c in answer.citations})
        assert scores.recall == 1.0 and scores.precision == 1.0
        assert all(line not in judged_text(answer) for line in own)


def test_every_face__shows_coverage_missing_attribution_and_conflicts(answers, assistant):
    docs = {d.doc_id: d for d in assistant.documents}
    salary, posts = answers[PAY], answers[PAID_POSTS]
    html = answer_html(salary, docs, "7")
    assert 'class="pq-banner pq-cov-partial"' in html and "Partly answered." in _visible(html)
    assert salary.missing in _visible(html)
    assert '<p class="pq-lead"><strong>' in html and "<blockquote" in html
    markdown = answer_markdown(salary)
    assert markdown.startswith(f"**Partly answered.** {salary.missing[:20]}")
    terminal = format_answer(salary)
    assert terminal.startswith("Partly answered. The documents give no figure")
    posts_html = answer_html(posts, docs, "8")
    box = re.search(r'<section class="pq-conflicts">(.*?)</section>', posts_html)
    assert box and "around 37" in _visible(box.group(1)) and "2012" in _visible(box.group(1))
    assert "**The documents differ:**" in answer_markdown(posts)
    assert "The documents differ:" in format_answer(posts)


def test_research_on_a_topic__answered_from_the_study_s_own_entry(assistant):
    # "Is there research on X?" is answered by the study about X: its statement of aim, under
    # the entry whose title names X, not a sentence elsewhere that uses the word "research".
    for question in ("Is there any research about peer workers in Japan?",
                     "What research is there on peer support workers in rural areas?"):
        answer = assistant.ask(question)
        assert answer.coverage == "answered", (question, answer.missing)
        first = answer.citations[0]
        assert first.doc_id == "hee-evidence-brief"
        assert ("Japan" in first.section) or ("rural" in first.section), first.section
        quoted = " ".join(p.text for p in answer.parts if p.kind == "quote")
        assert "secondary research" not in quoted and "social research" not in quoted


def test_questions_a_review_asked__its_own_questions_are_quoted(assistant):
    # A document's own question is never quoted as an answer, except when the question asks
    # what questions a document set out to answer: then those are the answer.
    answer = assistant.ask("What questions did the Fife review set out to answer?")
    assert answer.coverage == "answered", answer.missing
    quoted = [p.text for p in answer.parts if p.kind == "quote"]
    asked = [q for q in quoted if q.rstrip().endswith("?")]
    assert len(asked) == 3 and all(q.startswith("What do we know about") for q in asked)
    assert {c.doc_id for c in answer.citations} == {"fife-scoping-review"}
    # A linked title cut at its own "?" is part of a heading, whatever the question asks.
    title = "[Where do Peer Providers Fit into Teams?](#) July 2018, Journal\n\nThey fit well."
    cut = title.index("?") + 1
    assert "heading" in flaws(title, 0, cut).hard
    assert "question" in flaws("What do we know about pay? More text.", 0, 26).hard


def test_who_made_a_document__answered_from_its_credit_lines(assistant):
    # "Developed by ..." and a line of authors have no full stop or say nothing about peer
    # work: they are quoted only when the question asks who made the document.
    for question, doc_id, start in (
        ("Who developed the Fife scoping review, and for whom?", "fife-scoping-review",
         "Developed by Dr Simon Bradstreet on behalf of Habitus Collective UK"),
        ("Who were the authors of the 2009 Scottish pilot evaluation?",
         "dfmh-pilot-evaluation", "Joanne McLean, Hannah Biggs"),
    ):
        answer = assistant.ask(question)
        assert answer.coverage == "answered", (question, answer.missing)
        quotes = [p for p in answer.parts if p.kind == "quote"]
        assert quotes[0].text.startswith(start), (question, quotes[0].text)
        assert answer.citations[quotes[0].numbers[0] - 1].doc_id == doc_id
    # A line citing the document is who made it and when, quoted whole.
    for question in ("When was the HEE evidence brief published?",
                     "Who is the author of the HEE brief?"):
        answer = assistant.ask(question)
        assert answer.coverage == "answered", (question, answer.missing)
        quotes = [p.text for p in answer.parts if p.kind == "quote"]
        assert quotes[0].startswith("Evidence Brief: Peer support workers. Katie Nicholas. "
                                    "(January 2021)."), quotes
    answer = assistant.ask("What does the Fife review say about supporting peer workers?")
    quoted = " ".join(p.text for p in answer.parts if p.kind == "quote")
    assert "Developed by" not in quoted and "Bradstreet" not in quoted
    # Who commissioned a document is asked in the words its text answers with, right beside
    # its name: "commissioned" is the question's point, not part of the name.
    answer = assistant.ask("Who commissioned the QUB review?")
    assert answer.coverage == "answered", answer.missing
    first = next(p for p in answer.parts if p.kind == "quote")
    assert "was commissioned by the Peer Support Five Year Strategy Working Group" in first.text
    assert answer.citations[first.numbers[0] - 1].doc_id == "qub-international-scoping-review"
