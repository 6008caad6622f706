"""Extractive answers on the tiny corpus with the fake embedder, and on hand-made hits."""

from __future__ import annotations

from peerqa.answer.answerability import Thresholds, unknown_names
from peerqa.answer.extractive import choose, extractive_answer
from peerqa.answer.meaning import WordMeaning
from peerqa.answer.question import QuestionTerms, holds_type, is_list_question, question_terms
from peerqa.retrieval import Hit, Vocabulary
from peerqa.text import sentence_spans, tokenize
from peerqa.types import Document, Passage

LIMITS = {"max_sentences": 4, "max_list_sentences": 6, "min_coverage": 0.15,
          "thresholds": Thresholds(), "titles": {}}


def _answer(assistant, question, history=None):
    r = assistant.retriever
    terms = question_terms(question, history, r.vocabulary)
    hits = r.search(terms.query, 6, mentioned=terms.mentioned)
    return extractive_answer(question, hits, terms, r.vocabulary, meaning=assistant.meaning,
                             phrases=assistant.phrases, **LIMITS)


def test_answer__quotes_the_sentence_that_answers_verbatim_with_its_marker(tiny_fake):
    answer = _answer(tiny_fake, "How often should supervision of peer workers happen?")
    assert not answer.abstained
    assert "Supervision should happen at least monthly and include reflective practice. [1]" \
        in answer.text
    cited = answer.citations[0]
    doc = tiny_fake.document(cited.doc_id)
    assert doc.text[cited.start : cited.end] == cited.text
    assert any(doc.text[a:b].startswith("Supervision should happen") for a, b in cited.highlights)
    assert answer.checks.markers_resolve and answer.checks.unsupported_sentences == []


def test_answer__abstains_on_a_name_the_corpus_never_uses(tiny_fake):
    answer = _answer(tiny_fake, "What does the Welsh strategy say about peer workers?")
    assert answer.abstained and answer.citations == [] and answer.passages
    assert unknown_names("What does the Welsh strategy say?", tiny_fake.retriever.vocabulary) \
        == ["Welsh"]


def test_answer__a_figure_asked_and_not_given_is_partial_and_says_what_is_missing(tiny_fake):
    answer = _answer(tiny_fake, "What is the hourly pay rate for peer workers?")
    assert answer.coverage == "partial" and not answer.abstained
    assert answer.missing == "The documents give no figure for the hourly pay rate."
    assert answer.parts[0].kind == "lead" and answer.parts[0].text == answer.missing
    # The nearest material is about pay, the thing whose figure is missing, and only that.
    quotes = [p.text for p in answer.parts if p.kind == "quote"]
    assert quotes == ["Employers should pay peer workers on the same terms as other support "
                      "staff."]
    counted = _answer(tiny_fake, "How many peer workers did the coastal pilot employ?")
    assert counted.coverage == "answered" and "six peer workers" in counted.text
    assert holds_type("count", "six peer workers") and not holds_type("count", "in 2019 they met")


def test_answer__a_figure_of_something_no_sentence_is_about_is_not_covered(tiny_fake):
    # Supervision is covered, its cost is not, and no sentence is about cost: nothing is
    # presented as the nearest material (no padding with sentences about supervision).
    answer = _answer(tiny_fake, "What is the cost of supervision?")
    assert answer.coverage == "not_covered" and answer.abstained and answer.citations == []
    assert answer.missing == "The documents give no figure for the cost."


def test_answer__either_or_question_needs_one_of_its_options(tiny_fake):
    neither = _answer(tiny_fake, "Should supervision be weekly or fortnightly?")
    assert neither.coverage != "answered"
    assert "fortnightly" in neither.missing
    assert _answer(tiny_fake, "Should supervision be weekly or monthly?").coverage == "answered"


def test_follow_up__borrows_the_previous_question(tiny_fake):
    history = [{"role": "user", "content": "What training do new peer workers complete?"},
               {"role": "assistant", "content": "A twelve-week course."}]
    terms = question_terms("And how long does it last?", history, tiny_fake.retriever.vocabulary)
    assert "What training" in terms.query and "train" in terms.weights
    assert terms.weights["train"] < terms.weights["last"] * 2  # borrowed words count half
    # Late interaction reads the follow-up's own words; a question that stands alone has none.
    assert terms.late == "And how long does it last?"
    assert question_terms("How long does training last?", history,
                          tiny_fake.retriever.vocabulary).late is None
    assert is_list_question("What are the barriers?") and not is_list_question("Who wrote it?")


# -- on hand-made hits: the selection rules alone ---------------------------------------------


TEXT = (
    "Supervision should happen monthly for every peer worker. "
    "Supervision should happen monthly for each peer worker. "
    "Peer workers value reflective supervision with a peer supervisor. "
    "The canteen opens at nine."
)
DOC = Document(doc_id="d", title="Guide", text=TEXT, path="d.txt", sha256="x")


def _hit() -> Hit:
    passage = Passage(doc_id="d", title="Guide", section="Supervision", text=TEXT, start=0,
                      end=len(TEXT), score=1.0, chunk_id="d:0")
    sentences = tuple((a, b, 0.5) for a, b in sentence_spans(TEXT))
    return Hit(passage, f"Guide — Supervision\n{TEXT}", sentences)


def test_selection__drops_near_duplicates_and_sentences_sharing_no_word():
    vocab = Vocabulary.from_tokens({"d": DOC}, [tokenize(TEXT), tokenize("other text entirely")])
    terms = question_terms("How often should peer workers get supervision?", None, vocab)
    answer = extractive_answer("How often should peer workers get supervision?", [_hit()],
                               terms, vocab, **LIMITS)
    assert answer.coverage == "answered"  # "how often", and the quote says "monthly"
    assert answer.text.count("Supervision should happen monthly") == 1  # near-duplicate dropped
    assert "canteen" not in answer.text
    assert [c.number for c in answer.citations] == [1]


def test_focus__encodes_only_the_question_s_variants_the_vector_it_was_searched_with_reused(
    tiny_fake,
):
    question = "How often should supervision of peer workers happen?"
    r = tiny_fake.retriever
    searched = r.read(question)[0]
    embedder = r.embedder
    before = list(embedder.calls)
    weights = tiny_fake.meaning.focus(question, ["supervision", "often"])
    assert embedder.calls[len(before):] == [2]  # the two variants, not the question again
    assert tiny_fake.meaning.question(question) is searched
    alone = WordMeaning(embedder).focus(question, ["supervision", "often"])
    assert weights == alone and weights[0] > 0



def test_candidates__a_passage_found_again_is_not_read_again(monkeypatch):
    from peerqa.answer import candidates as extractive

    extractive._units.cache_clear()
    read: list[int] = []
    original = extractive.quotable
    monkeypatch.setattr(extractive, "quotable",
                        lambda *a, **k: read.append(1) or original(*a, **k))
    vocab = Vocabulary.from_tokens({"d": DOC}, [tokenize(TEXT)])
    ask = [question_terms(q, None, vocab) for q in
           ("How often should peer workers get supervision?", "Who provides supervision?")]
    first = extractive.candidates([_hit()], ask[0], allow_aims=False)
    times = len(read)
    assert times == len(sentence_spans(TEXT))  # each sentence read once
    again = extractive.candidates([_hit()], ask[0], allow_aims=False)
    other = extractive.candidates([_hit()], ask[1], allow_aims=False)
    assert len(read) == times  # the same passage: its units come from the cache
    assert again == first  # and score as they did
    assert [c.unit for c in other] == [c.unit for c in first]
    assert [c.coverage for c in other] != [c.coverage for c in first]  # scored for the question
    extractive.candidates([_hit()], ask[0], allow_aims=True)
    assert len(read) == 2 * times  # other rules, read again


RETURN = ("Staff coming back from sick leave agree a phased plan with their manager. "
          "The plan is reviewed after four weeks.")
WARD = "Peer workers on the ward support people who return home after leave from hospital."


def _rated_hit(doc_id: str, text: str, relevance: float, sims: list[float]) -> Hit:
    passage = Passage(doc_id=doc_id, title=doc_id, section="Notes", text=text, start=0,
                      end=len(text), score=1.0, chunk_id=f"{doc_id}:0", relevance=relevance)
    spans = sentence_spans(text)
    return Hit(passage, text, tuple((a, b, s) for (a, b), s in zip(spans, sims, strict=True)))


RETURNING = "How do peer workers return after sick leave?"


def _returning_terms(doc_id: str, text: str) -> tuple[Vocabulary, QuestionTerms]:
    """The vocabulary of the return guide ("a") and one other document, and ``RETURNING``'s
    terms in it."""
    docs = {"a": Document(doc_id="a", title="Return guide", text=RETURN, path="a.txt",
                          sha256="x"),
            doc_id: Document(doc_id=doc_id, title=doc_id, text=text, path=f"{doc_id}.txt",
                             sha256="y")}
    vocab = Vocabulary.from_tokens(docs, [tokenize(RETURN), tokenize(text)])
    return vocab, question_terms(RETURNING, None, vocab)


def test_selection__a_passage_the_search_rates_far_below_the_first_is_not_quoted_over_it():
    vocab, terms = _returning_terms("b", WARD)
    question = RETURNING
    # The ward sentence shares more of the question's words; the search rates its passage at
    # 0.05 against 0.9 for the first.
    hits = [_rated_hit("a", RETURN, 0.9, [0.2, 0.1]), _rated_hit("b", WARD, 0.05, [0.5])]
    answer = extractive_answer(question, hits, terms, vocab, **LIMITS)
    assert answer.coverage == "answered"
    assert [c.doc_id for c in answer.citations] == ["a"]
    assert "phased plan with their manager. [1]" in answer.text and "ward" not in answer.text
    # The answerability check still read the ward sentence (and only it): it decides on the
    # sentences sharing the question's words, whatever the search thinks of their passage.
    chosen = choose(question, hits, terms, vocab, max_sentences=4, max_list_sentences=6)
    assert [c.doc for c in chosen.quotes] == ["b"]
    assert [c.doc for c in chosen.display or []] == ["b", "a"]


def test_selection__quotes_are_shown_in_the_order_of_their_weighed_scores():
    plan = "Peer workers who return after sick leave meet their supervisor every week."
    vocab, terms = _returning_terms("c", plan)
    question = RETURNING
    # The second passage's sentence shares more words; the search rates the first passage
    # more than twice as relevant, so weighed, the first passage's sentence leads.
    hits = [_rated_hit("a", RETURN, 0.9, [0.8, 0.1]), _rated_hit("c", plan, 0.4, [0.3])]
    chosen = choose(question, hits, terms, vocab, max_sentences=4, max_list_sentences=6)
    assert [c.doc for c in chosen.quotes] == ["c", "a"]
    assert [c.doc for c in chosen.display or []] == ["a", "c"]
    answer = extractive_answer(question, hits, terms, vocab, **LIMITS)
    assert [c.doc_id for c in answer.citations] == ["a", "c"]
    assert answer.text.index("phased plan") < answer.text.index("every week")
