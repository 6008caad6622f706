"""How an answer's evidence looks in the chat: the coverage banner, the conflicts box, and each
source as a card.

A card's header is a heading (the short title and year, and how strongly the source bears on the
question); opening it shows the full title, the passage inside its surrounding text with the
quoted sentences marked, and where it is (section, page where known, character offsets). The
sources are an ordered list under a heading, so a screen reader can move by heading and by
list item. Every document string is escaped through ``markup``; a Markdown document is shown as
clean text by hiding its syntax, never by changing what is cited.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .markup import (
    Span,
    hidden_spans,
    highlight_runs,
    html_text,
    merged_highlights,
    section_label,
    shown_hidden,
    soft_breaks,
    view_html,
    visible,
)
from .text import year_label
from .types import Answer, Citation, Conflict, Document, Passage

CONTEXT_CHARS = 280
"""Characters of document text shown before and after a quoted passage."""
PREVIEW_CHARS = 180
STRONG, SUPPORTING = 0.6, 0.3
"""Relevance (0..1, comparable across questions) from which a source reads as strong evidence,
and from which it reads as supporting; below that it is a weak match."""
COVERAGE = {
    "answered": ("Answered from the documents",
                 "Every quote below is the documents' own words, with its source."),
    "partial": ("Partly answered", "The documents answer only part of this question."),
    "not_covered": ("Not covered by the documents", "Nothing is made up to fill the gap."),
}


def _sr(text: str) -> str:
    """Words for screen readers only (visually hidden, still read)."""
    return f'<span class="pq-sr">{html_text(text)}</span>'


# -- where a passage is -------------------------------------------------------------------------


def source_name(item: Passage, document: Document | None) -> str:
    """A source as a reader names it: the short title and year, 'HEE evidence brief (2021)'."""
    name = document.short_title if document is not None and document.short_title else item.title
    return f"{name} ({year_label(item.year)})"


def location(item: Passage) -> str:
    """Where a passage is, in a reader's words: its section, and its page where known."""
    where = section_label(item.section)
    return where + (f" · page {item.page}" if item.page is not None else "")


def relevance(item: Passage, rank: int, total: int) -> tuple[str, int, str]:
    """(label, level 1..3, explanation) of how strongly a source bears on the question.

    From the calibrated ``relevance`` where there is one; otherwise only the order is known, so
    the best-ranked source is the best match and the others support it.
    """
    if item.relevance is not None:
        r = item.relevance
        label, level = ("Strong", 3) if r >= STRONG else \
            ("Supporting", 2) if r >= SUPPORTING else ("Weak", 1)
        return label, level, f"Relevance {r:.2f} of 1: {label.lower()} evidence for this question"
    if rank == 1:
        return "Best match", 3, f"Ranked 1 of {total} sources by match to your question"
    return "Supporting", 2, f"Ranked {rank} of {total} sources by match to your question"


def _ranks(items: Sequence[Passage]) -> dict[int, int]:
    """Each item's rank (1 = best) by relevance where known, else by the search's own score."""
    def key(i: int) -> tuple[float, float, int]:
        r = items[i].relevance
        return (-(r if r is not None else -1.0), -items[i].score, i)

    order = sorted(range(len(items)), key=key)
    return {i: r for r, i in enumerate(order, 1)}


# -- a passage in its context ---------------------------------------------------------------------


def _context(doc_text: str, start: int, end: int, chars: int) -> tuple[int, int]:
    """Offsets [lo, hi) of about ``chars`` characters either side of [start, end), cut at word
    boundaries (lo == 0 / hi == len when the document's edge is reached)."""
    lo = max(0, start - chars)
    if lo > 0:
        cut = re.search(r"\s", doc_text[lo:start])
        lo = lo + cut.end() if cut else lo
    hi = min(len(doc_text), end + chars)
    if hi < len(doc_text):
        cut = re.search(r"\s\S*$", doc_text[end:hi])
        hi = end + cut.start() if cut else hi
    return lo, hi


def passage_html(
    text: str,
    start: int,
    end: int,
    highlights: Sequence[Span],
    document: Document | None,
    context_chars: int = CONTEXT_CHARS,
) -> str:
    """A passage inside its surrounding document text, the quoted sentences in <mark>.

    Each span's text (``textContent``) is exactly the stored text at its offsets; a Markdown
    document's syntax is in hidden spans, so the reader sees clean text.
    """
    in_document = document is not None and document.text[start:end] == text
    lo, hi = start, end
    soft = soft_breaks(document) if in_document else ()
    if in_document:
        assert document is not None
        lo, hi = _context(document.text, start, end, context_chars)
        # White space just inside a cut context (after the leading "…") is not shown either.
        edges = [(lo, lo + len(document.text[lo:start]) - len(document.text[lo:start].lstrip())),
                 (end + len(document.text[end:hi].rstrip()), hi)]
        hidden = shown_hidden(document.text[lo:hi], lo, [*hidden_spans(document), *edges])
    else:
        hidden = shown_hidden(text, start, ())
    parts = [
        f'<mark class="pq-hl">{view_html(text[a:b], start + a, hidden, soft)}</mark>' if marked
        else view_html(text[a:b], start + a, hidden, soft)
        for a, b, marked in highlight_runs(start, end, highlights)
    ]
    before = after = ""
    if in_document:
        assert document is not None
        if lo < start:
            before = ('<span class="pq-ctx">' + ('<span class="pq-cut">…</span>' if lo else "")
                      + view_html(document.text[lo:start], lo, hidden, soft) + "</span>")
        if end < hi:
            after = ('<span class="pq-ctx">' + view_html(document.text[end:hi], end, hidden, soft)
                     + ('<span class="pq-cut">…</span>' if hi < len(document.text) else "")
                     + "</span>")
    return (f'<div class="pq-passage">{before}<span class="pq-quote">{"".join(parts)}</span>'
            f"{after}</div>")


def preview(item: Passage, highlights: Sequence[Span], document: Document | None,
            limit: int = PREVIEW_CHARS) -> str:
    """The quoted sentences of a passage (or its opening) on one line, as a reader sees them."""
    in_document = document is not None and document.text[item.start:item.end] == item.text
    hidden = hidden_spans(document) if in_document else ()
    spans = merged_highlights(highlights, item.start, item.end)
    pieces = [visible(item.text[a - item.start : b - item.start], a, hidden).strip()
              for a, b in spans]
    quoted = " … ".join(p for p in pieces if p) or visible(item.text, item.start, hidden)
    quoted = " ".join(quoted.split())
    return quoted if len(quoted) <= limit else quoted[: limit - 1].rsplit(" ", 1)[0] + " …"


# -- source cards ----------------------------------------------------------------------------------


def source_card(
    anchor: str,
    label: str,
    item: Citation | Passage,
    highlights: Sequence[Span],
    document: Document | None,
    strength: tuple[str, int, str] | None = None,
) -> str:
    """One source: a heading with its short title, year and relevance; opening it shows the
    full title, the passage in its context and its location with character offsets."""
    badge = ""
    if strength is not None:
        word, level, why = strength
        badge = (f' <span class="pq-rel pq-rel-{level}" title="{html_text(why)}">'
                 f'<span class="pq-bars"><span></span><span></span><span></span></span>'
                 f'{_sr("Relevance: ")}{html_text(word)}</span>')
    full = document.title if document is not None else item.title
    where = (f"characters {item.start:,}–{item.end:,} of {item.doc_id}")
    return (
        f'<li class="pq-src-item"><details class="pq-src" id="{anchor}">'
        f'<summary><h3 class="pq-src-head"><span class="pq-num">{label}</span> '
        f'<span class="pq-title">{html_text(source_name(item, document))}</span></h3>{badge}'
        f'<span class="pq-section">{html_text(location(item))}</span>'
        f'<span class="pq-preview">“{html_text(preview(item, highlights, document))}”</span>'
        "</summary>"
        f'<p class="pq-fulltitle">{html_text(full)} ({html_text(year_label(item.year))})</p>'
        + passage_html(item.text, item.start, item.end, highlights, document)
        + f'<p class="pq-loc">{_sr("Location: ")}{html_text(location(item))}'
        f' · <span class="pq-offsets">{html_text(where)}</span></p>'
        "</details></li>"
    )


def sources_html(
    answer: Answer, documents: Mapping[str, Document], anchors: Mapping[int, str]
) -> str:
    """The numbered sources of an answer, a heading over an ordered list of cards."""
    if not answer.citations:
        return ""
    ranks = _ranks(answer.citations)
    cards = [
        source_card(anchors[c.number], f"&#91;{c.number}&#93;", c,
                    c.highlights or ((c.start, c.end),), documents.get(c.doc_id),
                    relevance(c, ranks[i], len(answer.citations)))
        for i, c in enumerate(answer.citations)
    ]
    return ('<section class="pq-sources"><h2 class="pq-h">Sources</h2>'
            f'<ol class="pq-src-list">{"".join(cards)}</ol></section>')


def closest_html(answer: Answer, documents: Mapping[str, Document], turn: str) -> str:
    """The nearest passages of an answer that does not cover its question, never as sources."""
    if not (answer.abstained and answer.passages):
        return ""
    cards = [
        source_card(f"pq-{turn}-c{i}", f"&#40;{i}&#41;", p, (), documents.get(p.doc_id))
        for i, p in enumerate(answer.passages, 1)
    ]
    return ('<section class="pq-closest"><h2 class="pq-h">Closest material</h2>'
            '<p class="pq-note">The nearest passages in the documents. They do not answer the '
            "question; they show what the documents do say nearby.</p>"
            f'<ol class="pq-src-list">{"".join(cards)}</ol></section>')


# -- coverage and conflicts ------------------------------------------------------------------------


def coverage_banner(answer: Answer) -> str:
    """A banner saying whether the documents answer the question, and what they do not give."""
    title, line = COVERAGE[answer.coverage]
    missing = ""
    if answer.missing and answer.coverage != "answered":
        missing = (f'<p class="pq-missing"><strong>Not in the documents:</strong> '
                   f"{html_text(answer.missing)}</p>")
    return (f'<div class="pq-banner pq-cov-{answer.coverage.replace("_", "-")}" role="note">'
            f'<p class="pq-banner-line"><strong class="pq-banner-title">{title}.</strong> '
            f"{html_text(line)}</p>{missing}</div>")


def text_after_banner(answer: Answer) -> str:
    """The answer's text without its opening statement of what is missing, which the banner
    already shows (the stored text is unchanged)."""
    missing = answer.missing.strip()
    text = answer.text.lstrip()
    if missing and answer.coverage != "answered" and text.startswith(missing):
        rest = text[len(missing):].lstrip()
        return rest or answer.text
    return answer.text


def _side_html(conflict: Conflict, documents: Mapping[str, Document],
               citations: Mapping[int, Citation], anchors: Mapping[int, str],
               shown: str) -> list[str]:
    """Each side: its figure, the date it refers to, its source, and its quote unless the
    answer's text just above already shows that quote with the same [n]."""
    out = []
    for side in conflict.sides:
        cited = citations.get(side.number)
        document = documents.get(cited.doc_id) if cited is not None else None
        name = source_name(cited, document) if cited is not None else ""
        quote = side.quote
        if document is not None and document.text[side.start:side.end] == side.quote:
            quote = visible(side.quote, side.start, hidden_spans(document))
        marker = (f'<a class="pq-marker" href="#{anchors[side.number]}" '
                  f'title="Show source {side.number}">&#91;{_sr("source ")}{side.number}&#93;</a>'
                  if side.number in anchors else f"&#91;{side.number}&#93;")
        as_of = f' <span class="pq-asof">(as of {html_text(side.as_of)})</span>' \
            if side.as_of else ""
        quote = " ".join(quote.split())
        quoted = "" if quote in shown else \
            f'<span class="pq-side-quote">“{html_text(quote)}”</span>'
        out.append(
            f'<li><strong class="pq-value">{html_text(side.value)}</strong>{as_of} · '
            f'<span class="pq-side-src">{html_text(name)}</span> {marker}{quoted}</li>'
        )
    return out


def conflicts_html(
    answer: Answer,
    documents: Mapping[str, Document],
    anchors: Mapping[int, str],
    shown: str | None = None,
) -> str:
    """A box listing where the cited documents differ: each point, each side with its figure,
    the date it refers to, its source and its quote (left out when ``shown``, by default the
    answer's text, already holds it)."""
    if not answer.conflicts:
        return ""
    citations = {c.number: c for c in answer.citations}
    if shown is None:
        shown = " ".join(text_after_banner(answer).split())
    items = [
        f'<li><p class="pq-point">{html_text(c.point)}</p><ul class="pq-sides">'
        f'{"".join(_side_html(c, documents, citations, anchors, shown))}</ul></li>'
        for c in answer.conflicts
    ]
    return ('<section class="pq-conflicts"><h2 class="pq-h">The documents differ</h2>'
            f'<ul class="pq-conflict-list">{"".join(items)}</ul></section>')
