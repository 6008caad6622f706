"""Which sentences may be quoted, and what comes with them: pure functions on small texts."""

from __future__ import annotations

from peerqa.answer.sentences import (
    ASKS_ABOUT_SOURCE,
    aims_allowed,
    credits_allowed,
    flaws,
    methods_allowed,
)
from peerqa.answer.units import list_items, quotable, quote_problems
from peerqa.text import sentence_spans


def _units(text: str, allow_aims: bool = False) -> list[str | None]:
    """What each sentence of ``text`` (one passage at offset 0) would be quoted as."""
    spans = sentence_spans(text)
    out = []
    for i in range(len(spans)):
        unit = quotable(text, 0, spans, i, allow_aims=allow_aims)
        out.append(None if unit is None else text[unit.start : unit.last])
    return out


def _hard(sentence: str, **kw) -> frozenset[str]:
    return flaws(sentence, 0, len(sentence), **kw).hard


def test_flaws__headings_contents_boilerplate_references_and_questions_are_never_quoted():
    assert "heading" in _hard("Impact on service users")
    assert "heading" in _hard("## Training and support for new staff")
    assert "contents" in _hard("The findings were organised into a number of sections.")
    assert "contents" in _hard("Key publications – the big picture ..... 3")
    assert "boilerplate" in _hard("Copyright 2023 The Authors and the publishers of this work.")
    assert "boilerplate" in _hard("[Peer support roles in mental health](#) May 2016, Iriss")
    assert "boilerplate" in _hard("Practical implications: Managers may find this useful.")
    assert "boilerplate" in _hard("More information about Peer Support Workers is also "
                                  "available on the [HEE website](#).")
    assert "reference" in _hard("Pitt, V., Lowe, D. (2013). Consumer-providers of care. Cochrane"
                                " Database of Systematic Reviews, 3(2), 1-20.")
    assert "question" in _hard("What do we know about peer workers in community teams?")
    assert not _hard("Peer support workers were welcomed by most service users in the pilot.")


def test_flaws__an_article_aim_is_quoted_only_when_the_question_asks_about_the_research():
    aim = "The purpose of this paper is to explore patients' experiences on the ward."
    assert "aim" in _hard(aim)
    assert _units(aim) == [None]
    assert _units(aim, allow_aims=True) == [aim]
    assert aims_allowed("Has anyone studied peer workers on wards?")
    assert aims_allowed("What was the review set up to find out?")
    assert not aims_allowed("What do inpatients think of having a peer worker on the ward?")


def test_flaws__a_study_s_method_is_quoted_only_when_the_question_asks_how_it_was_done():
    method = "DESIGN Data were gathered through a cross-sectional survey distributed online."
    assert "method" in _hard(method)
    spans = sentence_spans(method)
    assert quotable(method, 0, spans, 0) is None
    assert quotable(method, 0, spans, 0, allow_methods=True) is not None
    assert methods_allowed("How did they gather their data?")
    assert methods_allowed("How big was the survey?")
    assert not methods_allowed("What do peer workers find hardest in the job?")
    assert "aim" in _hard("This paper addresses a lack of research on risk in the peer role.")


def test_quotable__a_sentence_pointing_at_what_follows_brings_it_or_is_not_quoted():
    text = ("The following definitions capture the essence of peer support in services.\n\n"
            "‘Peer support is mutual help between people with similar experiences’ (Gartner, "
            "1982).\n\n‘… a system of giving and receiving help founded on respect’ (Mead, "
            "2001).")
    spans = sentence_spans(text)
    unit = quotable(text, 0, spans, 0)
    assert unit is not None and len(unit.items) == 2
    assert text[unit.items[0][0] : unit.items[0][1]].startswith("‘Peer support is mutual")
    alone = "The following definitions capture the essence of peer support in services."
    assert _units(alone) == [None]
    found = dict(quote_problems(text, [spans[0]]))
    assert found[spans[0]] == frozenset({"list_without_items"})
    assert quote_problems(text, list(unit.spans)) == []


def test_quotable__a_sentence_announcing_how_many_things_brings_the_one_that_names_them():
    text = ("Peer support workers require supervision and support in two main areas. They need "
            "support to maintain their wellness during employment as well as support from within "
            "their team to develop their role.")
    spans = sentence_spans(text)
    unit = quotable(text, 0, spans, 0)
    assert unit is not None and len(unit.items) == 1  # "They need ...": its referent comes first
    assert text[unit.items[0][0] : unit.items[0][1]].startswith("They need support")
    assert _units("Peer support workers require supervision and support in two main areas.") \
        == [None]
    # A count that ends a sentence without announcing anything is quoted alone.
    for plain in ("The pilot ran in five Health Board areas.",
                  "The pilot was evaluated over two years."):
        assert not flaws(plain, 0, len(plain)).forward
        assert _units(plain) == [plain]


def test_quotable__a_fragment_that_starts_mid_thought_is_not_quoted():
    assert _units("surprisingly, many of these have made their way into local guidelines.") \
        == [None]
    cut = "They met the team. Peer workers can"  # a sentence cut off at the passage's end
    assert "fragment" in flaws(cut, cut.index("Peer"), len(cut)).hard


def test_quotable__a_sentence_broken_by_a_blank_line_is_quoted_whole():
    text = "There are consistent themes in the literature. Not\n\nsurprisingly, many of these " \
           "have made their way into guidelines."
    assert _units(text)[-1] == "Not\n\nsurprisingly, many of these have made their way into " \
                               "guidelines."


def test_quotable__a_connective_brings_the_sentence_before_it_or_is_not_chosen():
    text = "Peer workers bridged the gap between staff and patients. However, it was essential " \
           "that the team was open to recovery."
    assert _units(text) == ["Peer workers bridged the gap between staff and patients.",
                            text]
    alone = "However, it was essential that the team was open to recovery."
    assert _units(alone) == [None]  # the sentence it needs is not in the passage
    # "This review" names the document; it does not point back.
    assert _units("This review was commissioned by the national working group in 2023.") \
        == ["This review was commissioned by the national working group in 2023."]
    # "In addition to X" says what it adds to.
    assert _units("In addition to the searches, interviews were held with key people.")[0]


def test_quotable__a_list_introduction_brings_its_items_and_is_dropped_without_them():
    text = ("The impact has been positive, with peer support workers able to:\n\n"
            "- Provide service users with hope of recovery.\n"
            "- Act as a conduit between service users and staff.\n\n"
            "Service users welcomed the option of working with a peer worker.")
    spans = sentence_spans(text)
    unit = quotable(text, 0, spans, 0)
    assert unit is not None and [text[a:b] for a, b in unit.items] == [
        "Provide service users with hope of recovery.",
        "Act as a conduit between service users and staff."]
    cut = "The impact has been positive, with peer support workers able to:"
    assert _units(cut) == [None]
    numbered = "The review answers three questions:\n\n1.\n\nWhat do we know?\n\n2.\n\nWhat next?"
    assert [numbered[a:b] for a, b in list_items(numbered, numbered.index(":") + 1)] == [
        "What do we know?", "What next?"]


def test_quote_problems__counts_flawed_quotes_and_accepts_a_list_with_its_items():
    text = ("Impact on service users\n\nThe workers were able to:\n\n- Offer hope.\n"
            "- Share their experience.\n\nThese helped people recover.")
    heading = (0, len("Impact on service users"))
    intro_start = text.index("The workers")
    intro = (intro_start, text.index(":") + 1)
    items = [(text.index("Offer"), text.index("hope.") + 5),
             (text.index("Share"), text.index("experience.") + 11)]
    these = (text.index("These"), len(text))
    found = dict(quote_problems(text, [heading, intro, *items, these]))
    assert set(found) == {heading, these}
    assert "heading" in found[heading] and "needs_previous" in found[these]
    assert quote_problems(text, [intro]) == [(intro, frozenset({"list_without_items"}))]


def test_quotable__an_item_of_a_list_without_full_stops_is_quoted_as_a_bullet():
    text = ("These include:\n\n"
            "\t\tWorking one-to-one with people\n\n"
            "\t\tSupporting people through transitions such as from hospital to home\n\n"
            "\t\tBeing part of social prescribing initiatives that help people\n\n"
            "Some roles combine several of these.")
    spans = sentence_spans(text)
    i = next(n for n, (a, _) in enumerate(spans) if text.startswith("Supporting", a))
    unit = quotable(text, 0, spans, i)
    assert unit is not None and unit.item
    assert text[unit.start : unit.end].startswith("Supporting people through transitions")
    assert quote_problems(text, [(unit.start, unit.end)]) == []
    # Read in a passage that starts at the item, the document shows the list around it.
    start = text.index("Supporting")
    passage = text[start : text.index("\n\n", start)]
    alone = quotable(passage, start, [(start, start + len(passage))], 0)
    assert alone is None  # without the document, a lone line without a full stop is a heading
    assert quotable(passage, start, [(start, start + len(passage))], 0, document=text)
    # A heading between paragraphs is still never quoted.
    headed = "Main findings about the pilot sites\n\nThe pilot helped many people recover."
    assert _units(headed)[0] is None
    assert quote_problems(headed, [(0, len("Main findings about the pilot sites"))])


def test_quotable__a_bulleted_item_broken_over_two_lines_is_quoted_whole():
    text = ("- A clearly identified national champion for peer support (the network provides "
            "a national\n\nlead for peer support developments and this role should be "
            "reinforced).\n- National facilitation of networks and learning sets.")
    spans = sentence_spans(text)
    unit = quotable(text, 0, spans, 0)
    assert unit is not None and unit.item
    assert text[unit.start : unit.end].endswith("should be reinforced).")
    assert _units(text)[1] is None  # the rest alone is a fragment
    assert quote_problems(text, [(unit.start, unit.end)]) == []


def test_quotable__a_sentence_the_extraction_broke_off_is_not_quoted_from_its_middle():
    text = ("The national workforce stocktake gave a detailed profile of all the staff employed "
            "as Peer Support"
            "\n\nWorkers employed within NHS mental health services and the associated delivery "
            "context, including their pay and their grades.")
    spans = sentence_spans(text)
    second = next(i for i, (a, _) in enumerate(spans) if text.startswith("Workers", a))
    assert "fragment" in flaws(text, *spans[second]).hard
    assert quotable(text, 0, spans, second) is None
    # A passage that starts there: its document shows the broken line before it.
    start = spans[second][0]
    passage = text[start:]
    inner = [(a, b) for a, b in spans if a >= start]
    assert quotable(passage, start, inner, 0) is not None
    assert quotable(passage, start, inner, 0, document=text) is None


def test_list_items__a_link_among_the_items_is_not_quoted_with_them():
    text = ("The full report can be read at:\n\n- <http://www.example.org/report>.\n\n"
            "Peer workers were welcomed by most service users.")
    assert list_items(text, text.index(":") + 1) == []
    assert _units(text)[0] is None


def test_flaws__a_citation_line_s_pieces_are_a_reference():
    line = ("Please acknowledge this work as:\n\nEvidence Brief: Peer support workers. Katie "
            "Nicholas. (January 2021). UK: Health Education England\n")
    spans = sentence_spans(line)
    pieces = [(a, b) for a, b in spans if a > line.index("\n\n")]
    assert len(pieces) >= 2
    for a, b in pieces:
        assert "reference" in flaws(line, a, b).hard, line[a:b]
    # To a question about the source, the line is quoted whole, from its first piece.
    first = pieces[0]
    whole = quotable(line, 0, spans, spans.index(first), keep_header=True)
    assert whole is not None
    assert line[whole.start : whole.last] == line.split("\n\n")[1].rstrip()
    assert quotable(line, 0, spans, spans.index(pieces[1]), keep_header=True) is None
    assert quotable(line, 0, spans, spans.index(first)) is None
    assert quote_problems(line, [(whole.start, whole.last)], question="How do I cite it?") == []
    assert quote_problems(line, [(whole.start, whole.last)], question="What is it about?")
    # Prose that cites a work in passing is not a reference.
    assert not _hard("A 2023 internal evaluation report by Rethink (Moran, 2023) echoed wider "
                     "evidence on support.")


def test_flaws__a_credit_line_answers_only_who_made_the_source():
    credit = "Developed by Dr Ann Smith on behalf of Habitus Collective UK"
    authors = "Joanne McLean, Hannah Biggs, Indiya Whitehead, Scottish Centre for Mental Health."
    for line in (credit, authors):
        text = f"Evidence scoping review\n\n{line}\n\nThe review found that support matters.\n"
        spans = sentence_spans(text)
        i = next(n for n, (a, b) in enumerate(spans) if text[a:b] == line)
        assert "credit" in flaws(text, *spans[i]).hard
        assert quotable(text, 0, spans, i) is None  # never the answer to a content question
        unit = quotable(text, 0, spans, i, allow_credits=True)
        assert unit is not None and text[unit.start : unit.last] == line
    assert credits_allowed("who wrote the Fife review?")
    assert credits_allowed("Who actually carried out the evaluation?")
    assert credits_allowed("Who are the authors of the Irish review?")
    assert not credits_allowed("What did the authors of the Fife review conclude?")
    assert not credits_allowed("What came out of the pilot?")
    assert not ASKS_ABOUT_SOURCE.search("What came out of the early intervention pilot?")
    assert ASKS_ABOUT_SOURCE.search("When did the Iriss Insight come out?")
    # A sentence that says who did something is content, not a credit line.
    assert not _hard("The pilot was commissioned by the Scottish Government in 2006 to test "
                     "the role.")
