"""How evidence looks in the chat, without a server: the Markdown view (syntax hidden, text
never changed), source cards, relevance, the coverage banner and the conflicts box."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from peerqa import Answer, Citation, Document, Passage
from peerqa.cards import (
    conflicts_html,
    coverage_banner,
    location,
    passage_html,
    preview,
    relevance,
    source_card,
    sources_html,
    text_after_banner,
)
from peerqa.markup import markdown_hidden, markdown_soft_breaks, view_html, visible
from peerqa.types import Conflict, ConflictSide
from tests.helpers import REPO, texts_by_class, visible_text

CLEAN = [
    ("### [Does Stigma Towards Mental Illness Matter?](#) more",
     "Does Stigma Towards Mental Illness Matter? more"),
    ("*Athens log in required\\**", "Athens log in required*"),
    ("[https://x.org/SRN\\\\_Values\\\\_Framework.pdf](https://x.org/SRN_Values_Framework.pdf)",
     "https://x.org/SRN_Values_Framework.pdf"),
    ("### **Work to ensure clarity of roles**", "Work to ensure clarity of roles"),
    ("text\n\n## Heading ##\n\nmore <sup>1,2</sup> and <https://doi.org/10.1/s1_2> x",
     "text\n\nHeading\n\nmore 1,2 and https://doi.org/10.1/s1_2 x"),
    ("snake_case and _emph_ and **bold** and ***both*** and * not * and 2 * 3",
     "snake_case and emph and bold and both and * not * and 2 * 3"),
    ("*Help accessing articles .....\t24", "*Help accessing articles .....\t24"),
    ("\\(see\\) ![x](javascript:alert(3)) <a href=\"javascript:alert(2)\">guide</a> "
     "<script>alert(1)</script> [click](javascript:alert(1))",
     "(see) x guide <script>alert(1)</script> click"),
]


@pytest.mark.parametrize(("text", "shown"), CLEAN)
def test_markdown_view__hides_the_syntax_and_never_changes_the_text(text, shown):
    hidden = markdown_hidden(text)
    assert visible(text, 0, hidden) == shown
    html = view_html(text, 0, hidden)
    (kept,) = texts_by_class(f'<span class="all">{html}</span>', "all")
    assert kept == text  # every stored character is in the HTML, in order
    assert "".join(texts_by_class(f"<i>{html}</i>", "pq-mu")) == "".join(
        text[a:b] for a, b in hidden)


def test_markdown_view__offsets_inside_a_document_stay_exact():
    doc = (REPO / "corpus" / "hee-evidence-brief.md").read_text(encoding="utf-8")
    start = doc.index("### [Does Stigma Towards Mental Illness")
    end = doc.index("\n", doc.index("Athens log in required", start))
    hidden = markdown_hidden(doc)
    shown = visible(doc[start:end], start, hidden)
    assert shown.startswith("Does Stigma Towards Mental Illness Affect Initial Perceptions")
    assert "](#)" not in shown and "#" not in shown and "\\" not in shown
    assert shown.rstrip().endswith("Athens log in required*")


def _doc(text: str, path: str = "guide.md", **meta) -> Document:
    return Document(doc_id="guide", title=meta.pop("title", "The Full Guide to Peer Work"),
                    text=text, path=path, sha256="0", short_title="Guide", year=2021, **meta)


def _citation(doc: Document, phrase: str, **kw) -> Citation:
    start = max(0, doc.text.index(phrase) - 10)
    end = min(len(doc.text), doc.text.index(phrase) + len(phrase) + 10)
    a = doc.text.index(phrase)
    return Citation(number=kw.pop("number", 1), doc_id=doc.doc_id, title=doc.title,
                    section=kw.pop("section", "Support > Supervision"), text=doc.text[start:end],
                    start=start, end=end, score=kw.pop("score", 1.0), year=doc.year,
                    highlights=((a, a + len(phrase)),), **kw)


def test_passage_html__a_markdown_document_reads_clean_a_text_file_keeps_its_marks():
    text = "Intro. ## [Training matters](#) for **all** staff\\*. Later."
    for path, expect in (("guide.md", "Training matters for all staff*"),
                         ("guide.txt", "[Training matters](#) for **all** staff\\*")):
        doc = _doc("x " * 200 + text + " y" * 200, path=path)
        c = _citation(doc, "Training matters")
        html = passage_html(c.text, c.start, c.end, c.highlights, doc)
        (quote,) = texts_by_class(html, "pq-quote")
        assert quote == c.text
        shown = visible(doc.text[c.start:c.end], c.start,
                        markdown_hidden(doc.text) if path.endswith(".md") else ())
        assert expect[:20] in shown.replace("\n", " ")
        assert preview(c, c.highlights, doc) == "Training matters"


def test_source_card__short_title_and_year_full_title_inside_location_with_page_and_offsets():
    doc = _doc("Before. Supervision every fortnight helps peer workers. After.")
    c = _citation(doc, "Supervision every fortnight", page=7)
    html = source_card("pq-1-s1", "&#91;1&#93;", c, c.highlights, doc,
                       relevance(c, 1, 1))
    (head,) = texts_by_class(html, "pq-src-head")
    assert head == "[1] Guide (2021)"  # the short title, never the full one, in the header
    (summary,) = re.findall(r"<summary>(.*?)</summary>", html)
    assert "The Full Guide" not in summary
    (full,) = texts_by_class(html, "pq-fulltitle")
    assert full == "The Full Guide to Peer Work (2021)"
    (loc,) = texts_by_class(html, "pq-loc")
    assert "Support › Supervision · page 7" in loc
    assert f"characters {c.start:,}–{c.end:,} of guide" in loc
    assert location(Passage(doc_id="g", title="t", section="A > B", text="x", start=0, end=1,
                            score=0.0)) == "A › B"  # no page where none is known


def test_relevance__calibrated_bands_or_the_rank_when_there_is_none():
    p = Passage(doc_id="g", title="t", section="s", text="x", start=0, end=1, score=0.0)
    bands = [relevance(replace(p, relevance=r), 3, 3)[:2]
             for r in (0.95, 0.6, 0.59, 0.3, 0.29, 0.0)]
    assert bands == [("Strong", 3), ("Strong", 3), ("Supporting", 2), ("Supporting", 2),
                     ("Weak", 1), ("Weak", 1)]
    assert relevance(p, 1, 3)[:2] == ("Best match", 3)
    assert relevance(p, 2, 3)[:2] == ("Supporting", 2)
    assert "Ranked 2 of 3" in relevance(p, 2, 3)[2]


def test_sources_html__ranks_by_relevance_else_score_in_number_order():
    doc = _doc("Alpha sentence here. Beta sentence here. Gamma sentence here.")
    low = _citation(doc, "Alpha sentence", number=1, score=0.2)
    high = _citation(doc, "Beta sentence", number=2, score=0.9)
    answer = Answer(question="q", text="Alpha. [1] Beta. [2]", citations=[low, high],
                    abstained=False)
    html = sources_html(answer, {"guide": doc}, {1: "s1", 2: "s2"})
    labels = [t.replace("Relevance: ", "") for t in texts_by_class(html, "pq-rel")]
    assert labels == ["Supporting", "Best match"]  # listed by number, rated by score
    assert html.index('id="s1"') < html.index('id="s2"')
    assert "<h2 class=\"pq-h\">Sources</h2><ol" in html


def test_coverage_banner__names_the_outcome_and_what_is_missing_once():
    missing = "The documents give no salary band."
    partial = Answer(question="q", text=f"{missing} What they say: pay varies. [1]",
                     citations=[], abstained=False, coverage="partial", missing=missing)
    banner = visible_text(coverage_banner(partial))
    assert banner.startswith("Partly answered.") and f"Not in the documents: {missing}" in banner
    assert text_after_banner(partial) == "What they say: pay varies. [1]"
    answered = Answer(question="q", text="Yes. [1]", citations=[], abstained=False)
    assert visible_text(coverage_banner(answered)).startswith("Answered from the documents.")
    assert text_after_banner(answered) == "Yes. [1]"
    none = Answer(question="q", text="The documents do not cover this.", citations=[],
                  abstained=True)
    assert visible_text(coverage_banner(none)).startswith("Not covered by the documents.")
    assert 'role="note"' in coverage_banner(none)


def test_conflicts_html__each_side_with_value_date_source_and_quote_when_not_shown_above():
    doc = _doc("Around 37 peers were paid in 2012. Around 80 roles were paid by 2016.")
    c1 = _citation(doc, "Around 37 peers were paid in 2012.", number=1)
    c2 = _citation(doc, "Around 80 roles were paid by 2016.", number=2)
    q1, q2 = "Around 37 peers were paid in 2012.", "Around 80 roles were paid by 2016."
    a1, a2 = doc.text.index(q1), doc.text.index(q2)
    conflict = Conflict(point="Paid posts in <Scotland>", sides=(
        ConflictSide(number=1, quote=q1, start=a1, end=a1 + len(q1), value="around 37",
                     as_of="2012"),
        ConflictSide(number=2, quote=q2, start=a2, end=a2 + len(q2), value="around 80"),
    ))
    answer = Answer(question="q", text=f"The documents differ: {q1} [1]", citations=[c1, c2],
                    abstained=False, conflicts=[conflict])
    html = conflicts_html(answer, {"guide": doc}, {1: "pq-1-s1", 2: "pq-1-s2"})
    assert "<script" not in html and "&#60;Scotland&#62;" in html
    shown = visible_text(html)
    assert shown.startswith("The documents differPaid posts in <Scotland>")
    assert "around 37 (as of 2012) · Guide (2021) [source 1]" in shown
    assert "around 80 · Guide (2021) [source 2]" in shown
    assert q1 not in shown  # already in the answer's text just above, with the same [1]
    assert f"“{q2}”" in shown
    assert conflicts_html(Answer(question="q", text="t", citations=[], abstained=False), {},
                          {}) == ""


def test_hidden_markup_is_never_shown_by_the_style():
    css = (Path(REPO / "src" / "peerqa" / "static" / "app.css")).read_text(encoding="utf-8")
    assert re.search(r"\.pq-mu\s*\{\s*display:\s*none", css)
    assert re.search(r"\.pq-passage\s*\{[^}]*white-space:\s*pre-line", css)


def test_markdown_view__a_wrapped_line_reads_as_one_line_hard_breaks_and_lists_stay():
    text = "A wrapped\nline here.\n\n- item one\n- item two\n## Head\nnext line\nend  \nhard"
    assert [text[i - 1 : i + 2] for i in markdown_soft_breaks(text)] == ["d\nl", "e\ne"]
    html = view_html(text, 0, (), markdown_soft_breaks(text))
    assert html.count('<span class="pq-soft">&#10;</span>') == 2
    (kept,) = texts_by_class(f'<span class="all">{html}</span>', "all")
    assert kept == text
