from __future__ import annotations

import re

import pytest

from peerqa import Assistant, ConfigurationError, InputError
from peerqa.text import MARKER, markers, normalise


def _check_answer_invariants(assistant: Assistant, answer) -> None:
    """Every [n] resolves, every citation is used, every quote is verbatim document text."""
    numbers = set(markers(answer.text))
    assert numbers == {c.number for c in answer.citations}
    assert [c.number for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    for c in answer.citations:
        doc = assistant.document(c.doc_id)
        assert doc.text[c.start : c.end] == c.text
        assert c.chunk_id in {p.chunk_id for p in answer.passages}, "cites only what it retrieved"
        for a, b in c.highlights:
            assert c.start <= a < b <= c.end
            assert normalise(doc.text[a:b]) in normalise(MARKER.sub("", answer.text))


def test_ask__answers_with_resolving_verbatim_citations(assistant):
    answer = assistant.ask("How should a team prepare before its first peer support worker starts?")
    assert not answer.abstained
    assert answer.citations and re.search(r"\[\d+\]", answer.text)
    _check_answer_invariants(assistant, answer)
    assert answer.checks.markers_resolve and answer.checks.all_citations_used
    assert answer.checks.unsupported_sentences == []


def test_ask__numbers_sources_in_order_of_first_use(assistant):
    answer = assistant.ask("What training do peer workers need?")
    first_use = list(dict.fromkeys(markers(answer.text)))
    assert first_use == sorted(first_use) == list(range(1, len(first_use) + 1))


def test_ask__keeps_each_figure_with_its_source(assistant):
    answer = assistant.ask("How many paid peer support posts are there in Scotland?")
    _check_answer_invariants(assistant, answer)
    cited = {c.doc_id: c for c in answer.citations}
    assert "iriss-peer-support-roles" in cited
    assert "around 80 paid" in answer.text and cited["iriss-peer-support-roles"].year == 2016


def test_ask__abstains_when_the_documents_do_not_cover_the_question(assistant):
    answer = assistant.ask("What does the Welsh Government's strategy say about peer workers?")
    assert answer.abstained
    assert answer.citations == [] and not markers(answer.text)
    assert "do not appear to cover" in answer.text
    assert answer.closest and all(p.text for p in answer.closest)


def test_ask__follow_up_resolves_against_the_previous_question(assistant):
    first = assistant.ask("What training do peer workers need?")
    follow = assistant.ask(
        "And what about their supervision?",
        history=[{"role": "user", "content": "What training do peer workers need?"},
                 {"role": "assistant", "content": first.text}],
    )
    assert not follow.abstained
    assert "peer" in follow.retrieval_query.lower()
    assert any("supervis" in c.text.lower() for c in follow.citations)
    _check_answer_invariants(assistant, follow)


def test_search__a_follow_up_is_searched_as_ask_searches_it(assistant, monkeypatch):
    # Late interaction matches each question word in the passages; the earlier question's
    # words, joined to a follow-up for BM25 and the vectors, would be matched as if asked now.
    history = [{"role": "user", "content": "What does the Irish review say about training?"},
               {"role": "assistant", "content": "It recommends introductory courses."}]
    question = "And what about their career progression?"
    retriever = assistant.live.current()
    read = retriever.read
    seen: list[str] = []

    def spy(text: str):
        seen.append(text)
        return read(text)

    monkeypatch.setattr(retriever, "read", spy)
    answer = assistant.ask(question, history=history)
    assert question in seen and "training" in answer.retrieval_query
    passages = assistant.search(question, 5, history=history)
    assert [p.chunk_id for p in passages] == [p.chunk_id for p in answer.passages[:5]]
    combined = assistant.search(answer.retrieval_query, 5)  # the old reading of the same turn
    assert [p.score for p in combined] != [p.score for p in passages]


def test_ask__accepts_gradio_style_content_parts_in_history(assistant):
    answer = assistant.ask("And their supervision?", history=[
        {"role": "user",
         "content": [{"type": "text", "text": "What training do peer workers need?"}]},
    ])
    assert "training" in answer.retrieval_query


def test_search__returns_k_passages_with_offsets(assistant):
    passages = assistant.search("supervision of peer workers", k=5)
    assert len(passages) == 5
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)
    for p in passages:
        assert assistant.document(p.doc_id).text[p.start : p.end] == p.text
        assert len(p.text.split()) <= 150


def test_search__filter_restricts_to_chosen_documents(assistant):
    passages = assistant.search("training", k=5, doc_ids=["dfmh-pilot-evaluation"])
    assert {p.doc_id for p in passages} == {"dfmh-pilot-evaluation"}
    answer = assistant.ask("What training do peer workers need?",
                           doc_ids=["qub-international-scoping-review"])
    assert {c.doc_id for c in answer.citations} <= {"qub-international-scoping-review"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.ask(""), "empty"),
        (lambda a: a.ask("   \n\t "), "empty"),
        (lambda a: a.ask("why " * 400), "limit is 1000"),
        (lambda a: a.ask(None), "must be text"),
        (lambda a: a.search("training", k=0), "k must be"),
        (lambda a: a.search("training", doc_ids=["no-such-doc"]), "unknown document"),
        (lambda a: a.ask("Training?", history=[{"who": "me"}]), "role"),
        (lambda a: a.ask("Training?", history="not a list"), "history must be a list"),
    ],
)
def test_bad_input__raises_input_error_that_says_how_to_fix(assistant, call, message):
    with pytest.raises(InputError, match=message):
        call(assistant)


def test_settings__bad_combination_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="PEERQA_CHUNK_TARGET_WORDS"):
        Assistant(index_dir=tmp_path, chunk_target_words=140, chunk_max_words=100)


def test_settings__environment_is_read_and_arguments_win(monkeypatch, tmp_path):
    monkeypatch.setenv("PEERQA_TOP_K", "7")
    monkeypatch.setenv("PEERQA_INDEX_DIR", str(tmp_path / "from-env"))
    a = Assistant()
    assert a.settings.top_k == 7 and a.store.directory == tmp_path / "from-env"
    b = Assistant(index_dir=tmp_path / "explicit")
    assert b.store.directory == tmp_path / "explicit"


def test_default_index_location_is_per_corpus_under_the_cache(tiny_corpus, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    a = Assistant(corpus_dir=tiny_corpus)
    assert a.store.directory.parent == tmp_path / "cache" / "peerqa"
    assert a.store.directory.name.startswith("tiny-corpus-")


def test_tiny_corpus__end_to_end_from_an_empty_index(tiny_assistant):
    answer = tiny_assistant.ask("How often should peer workers have supervision?")
    assert not answer.abstained
    assert any("monthly" in c.text for c in answer.citations)
    _check_answer_invariants(tiny_assistant, answer)


def test_stream__pieces_join_to_the_answer_text(assistant):
    pieces = list(assistant.stream("What training do peer workers need?"))
    final = pieces[-1]
    assert "".join(pieces[:-1]) == final.text
    assert len(pieces) > 2


def test_ask__a_sources_own_reference_marks_never_become_citation_markers(tiny_corpus, tmp_path):
    (tiny_corpus / "marks.md").write_text(
        "# Marks\n\n## Stigma\n\nPeer workers reduce stigma in mental health teams [1]. "
        "Peer workers also reduce stigma among service users in community teams.\n"
    )
    a = Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "idx")
    answer = a.ask("Do peer workers reduce stigma in teams?")
    assert not answer.abstained
    _check_answer_invariants(a, answer)
    assert answer.checks.markers_resolve and "teams [1]." not in answer.text


def test_ask__figure_question_in_other_words_is_answered_not_abstained(assistant):
    answer = assistant.ask("Roughly how many peer workers are on the payroll in Scotland's "
                           "mental health sector, according to the 2016 Iriss summary?")
    assert not answer.abstained
    assert "around 80 paid" in answer.text


def test_ask__figure_question_the_documents_do_not_answer_is_declined_naming_the_figure(
    assistant,
):
    answer = assistant.ask("How many service users should a full-time peer support worker "
                           "have on their caseload?")
    assert answer.coverage != "answered"
    assert "number of service users" in answer.missing or "caseload" in answer.missing
