"""What is quoted for a chosen sentence, and what is wrong with any quoted span.

``sentences.flaws`` says why a sentence cannot be quoted alone; this module builds the unit that
can be: the sentence, widened to the one before it when it opens on a connective; a list's
introduction with its items; an item of a list whose items end without a full stop (a bullet,
"Supporting people through transitions ..."), whole even when the text's extraction broke it
over two lines. ``quote_problems`` applies the same rules to any answer's quoted spans, as the
evaluation counts them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..text import BULLET, HEADING_MARK, sentence_spans
from .sentences import (
    ASKS_ABOUT_SOURCE,
    BOILERPLATE,
    LINK_TITLE,
    MAX_ITEMS,
    MIN_WORDS,
    REFERRING,
    aims_allowed,
    clean,
    content_start,
    continues,
    credits_allowed,
    flaws,
    line_bounds,
    methods_allowed,
    questions_allowed,
    terminal,
    whole_line,
)

_BARE_NUMBER = re.compile(r"\d{1,2}[.)]|[-*•–]")


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


_YEARISH = re.compile(r"\b(?:19|20)\d\d\b")


def _item_like(line: str) -> bool:
    """A line that could be an item of a list without full stops: words, no full stop, not a
    date line or a title in capitals or italics."""
    words = clean(line).split()
    return len(words) >= 3 and not terminal(line) and not line.rstrip().endswith(":") \
        and (words[0][:1].isupper() or words[0][:1].isdigit()) \
        and not _YEARISH.search(line) and not line.strip().startswith(("*", "_")) \
        and not clean(line).isupper()


RUN = 3
"""Equally indented lines without full stops that make a list when nothing introduces them."""


def list_item(text: str, a: int, b: int) -> bool:
    """Whether ``text[a:b]`` is a whole item of a list whose items end without a full stop: a
    bulleted line ("- Workforce indicators including sickness and vacancies"), or a line of a
    run of such lines, equally indented, that a line ending in ":" introduces ("These include:"
    then "Supporting people through transitions such as from hospital to home") or that is at
    least ``RUN`` lines long. A heading or a title stands alone or in a pair; a list runs on."""
    if not whole_line(text, a, b):
        return False
    lo, hi = line_bounds(text, a, b)
    line = text[lo:hi]
    body = clean(text[content_start(text, a, b):b])
    if len(body.split()) < MIN_WORDS or HEADING_MARK.match(line.lstrip()) \
            or body.endswith(("?", ":")):
        return False
    if BULLET.match(line):
        return body[:1].isupper() or body[:1].isdigit()
    if not _item_like(line):
        return False
    lines = text.split("\n")
    here = text.count("\n", 0, lo)
    run = [here]
    for step in (-1, 1):
        i = here + step
        while 0 <= i < len(lines):
            other = lines[i]
            if other.strip():
                if _indent(other) != _indent(line) or BULLET.match(other) \
                        or not _item_like(other):
                    break
                run.append(i)
            i += step
    above = next((lines[i] for i in range(min(run) - 1, -1, -1) if lines[i].strip()), "")
    return len(run) >= RUN or above.rstrip().endswith(":")


@dataclass(frozen=True, slots=True)
class Quotable:
    """What is quoted for one chosen sentence: its span, perhaps widened to the sentence before
    it, and the items of the list it introduces (document offsets, in order)."""

    start: int
    end: int
    items: tuple[tuple[int, int], ...] = ()
    item: bool = False
    """Whether it is itself an item of a list (shown as a bullet)."""

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        return ((self.start, self.end), *self.items)

    @property
    def last(self) -> int:
        return self.items[-1][1] if self.items else self.end


def list_items(text: str, b: int) -> list[tuple[int, int]]:
    """The items of a list that starts after ``text[:b]``: bullet lines, or short lines without
    a full stop, up to the first ordinary sentence (offsets into ``text``, bullets left out)."""
    items: list[tuple[int, int]] = []
    pos = text.find("\n", b)
    if pos < 0 or text[b:pos].strip():
        return items  # the list must start on the next line
    bulleted: bool | None = None
    numbered = False  # the last line was a bare "1." whose item is on the next line
    while pos >= 0 and len(items) < MAX_ITEMS:
        start = pos + 1
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end]
        pos = end if end < len(text) else -1
        if not line.strip():
            continue
        if _BARE_NUMBER.fullmatch(line.strip()):
            numbered = True
            continue
        bullet = BULLET.match(line) or (numbered and re.match(r"\s*", line))
        numbered = False
        if items and not bullet and line.strip()[:1].islower() \
                and not terminal(text[items[-1][0]:items[-1][1]]):
            # "... currently provides a national" + blank line + "lead for ...": one item
            # broken by the text's extraction.
            items[-1] = (items[-1][0], start + len(line.rstrip()))
            continue
        if bulleted is None:
            bulleted = bool(bullet)
        if bulleted != bool(bullet) or (not bullet and terminal(line) and len(line.split()) > 12):
            break
        lead = bullet.end() if bullet else len(line) - len(line.lstrip())
        if BOILERPLATE.search(line):
            continue  # a link or a notice among the items is not quoted with them
        items.append((start + lead, start + len(line.rstrip())))
    return items


def quotable(
    text: str,
    offset: int,
    spans: list[tuple[int, int]],
    i: int,
    *,
    section: str = "",
    allow_aims: bool = False,
    keep_header: bool = False,
    document: str | None = None,
    allow_methods: bool = False,
    allow_questions: bool = False,
    allow_credits: bool = False,
) -> Quotable | None:
    """The unit to quote for sentence ``i`` of a passage, or None when it cannot be quoted.

    ``text`` is the passage's text starting at document offset ``offset``; ``spans`` are its
    sentences in document offsets, in order. ``document`` (its whole text) shows whether a line
    without a full stop is an item of a list that runs beyond the passage.
    """
    a, b = spans[i][0] - offset, spans[i][1] - offset
    source = keep_header or allow_credits  # the question asks about a source itself
    keep_header = keep_header and bool(LINK_TITLE.match(text, a, b))
    found = flaws(text, a, b, section=section, keep_header=keep_header)
    if "citation" in found.hard:
        return _citation(text, offset, a) if source else None
    hard = found.hard - _allowed(allow_aims, allow_methods, allow_questions, allow_credits)
    if document is not None and a == 0 and continues(document, offset):
        hard |= {"fragment"}  # the passage starts mid-sentence: its document shows it
    if hard and hard <= {"heading", "fragment"}:
        whole, at = (document, offset) if document is not None else (text, 0)
        item = _broken_item(text, spans, i, offset)
        if item is not None:
            return item
        if list_item(whole, at + a, at + b):
            # An item of a list whose items end without a full stop, quoted as a bullet.
            return Quotable(offset + content_start(text, a, b), offset + b, item=True)
    if found.list_intro and list_items(text, b):
        hard -= {"contents"}  # "... structured around three questions:" with the questions
    start = content_start(text, a, b, keep_header=keep_header)
    prev = spans[i - 1] if i > 0 else None
    if hard == {"fragment"} and prev is not None and text[start:b].strip()[:1].islower():
        # "Not" + blank line + "surprisingly, ...": a sentence broken by the text's extraction.
        pa, pb = prev[0] - offset, prev[1] - offset
        before = text[content_start(text, pa, pb):pb].strip()
        if len(before.split()) <= 3 and not terminal(before) and terminal(text[start:b]):
            return Quotable(offset + content_start(text, pa, pb), offset + b)
    if hard:
        return None
    first = start
    # A list item opening on "In addition" adds to the list; it needs no sentence before it;
    # nor does a first sentence after its entry's header ("This study ...").
    if found.needs_previous and not BULLET.match(text, text.rfind("\n", 0, a) + 1) \
            and not (start > a and REFERRING.match(text[start:b])):
        if prev is None:
            return None
        pa, pb = prev[0] - offset, prev[1] - offset
        earlier = flaws(text, pa, pb, section=section)
        before_break = "\n" in text[pb:a]
        if before_break and REFERRING.match(text[start:b]) and (
            "heading" in earlier.hard or "boilerplate" in earlier.hard
        ):
            pass  # "This study ..." right after the entry's title refers to that title
        elif earlier.clean or (earlier.hard <= {"aim"} and allow_aims
                               and not earlier.needs_previous and not earlier.list_intro):
            first = content_start(text, pa, pb)
        else:
            return None
    if found.list_intro:
        items = list_items(text, b)
        if not items:
            return None
        return Quotable(offset + first, offset + b,
                        tuple((offset + x, offset + y) for x, y in items))
    if found.forward:
        # "The following definitions capture ...": what follows comes with it, or it is not
        # quoted.
        following: list[tuple[int, int]] = []
        for na, nb in spans[i + 1 : i + 1 + FOLLOWING]:
            after = flaws(text, na - offset, nb - offset, section=section)
            # The first one may refer back ("They need ..."): to the sentence it follows.
            if after.hard or (after.needs_previous and following) or after.list_intro \
                    or after.forward:
                break
            following.append((offset + content_start(text, na - offset, nb - offset), nb))
        if not following:
            return None
        return Quotable(offset + first, offset + b, tuple(following))
    return Quotable(offset + first, offset + b)


FOLLOWING = 2
"""Sentences a sentence pointing at what follows brings with it."""


def _citation(text: str, offset: int, a: int) -> Quotable | None:
    """A line citing a work ("Evidence Brief: ... Katie Nicholas. (January 2021). UK: ..."),
    quoted whole from its first piece: it tells who made the source and when."""
    lo, hi = line_bounds(text, a, a)
    if text[lo:a].strip(" \t*-"):
        return None  # a later piece: the line is quoted from its first
    return Quotable(offset + a, offset + len(text[:hi].rstrip()))


def _allowed(aims: bool, methods: bool, questions: bool = False, credits: bool = False) -> set[str]:
    return ({"aim"} if aims else set()) | ({"method"} if methods else set()) \
        | ({"question"} if questions else set()) | ({"credit"} if credits else set())


def _broken_item(
    text: str, spans: list[tuple[int, int]], i: int, offset: int
) -> Quotable | None:
    """A bulleted item broken by the text's extraction and the rest of it on the next line
    ("- A clearly identified national champion ... provides a national" + "lead for peer
    support developments within Scotland ..."), quoted whole."""
    if i + 1 >= len(spans):
        return None
    a, b = spans[i][0] - offset, spans[i][1] - offset
    na, nb = spans[i + 1][0] - offset, spans[i + 1][1] - offset
    lo = text.rfind("\n", 0, a) + 1
    rest = text[na:nb].strip()
    if BULLET.match(text, lo) and not terminal(text[a:b]) and "\n" in text[b:na] \
            and not text[b:na].strip() and rest[:1].islower() and terminal(rest) \
            and not BULLET.match(text, text.rfind("\n", 0, na) + 1):
        return Quotable(offset + content_start(text, a, b), offset + nb, item=True)
    return None


def quote_problems(
    text: str, spans: Sequence[tuple[int, int]], *, question: str = "", section: str = ""
) -> list[tuple[tuple[int, int], frozenset[str]]]:
    """What is wrong with each quoted span of a document (``text``), as the evaluation counts
    it: the hard flaws, "needs_previous" (a connective quoted without its sentence) and
    "list_without_items". A span that is an item of a quoted list introduction is fine."""
    credits = credits_allowed(question)
    allowed = _allowed(aims_allowed(question), methods_allowed(question),
                       questions_allowed(question), credits)
    keep_header = bool(ASKS_ABOUT_SOURCE.search(question))
    source = keep_header or credits  # as ``quotable`` reads it
    ordered = sorted(set(spans))
    items: set[tuple[int, int]] = set()
    for a, b in ordered:
        if clean(text[a:b]).endswith(":"):
            items.update(list_items(text, b))
    out = []
    for a, b in ordered:
        if (a, b) in items:
            continue
        found = flaws(text, a, b, section=section,
                      keep_header=keep_header and bool(LINK_TITLE.match(text, a, b)))
        problems = set(found.hard - allowed)
        if "citation" in problems and source \
                and _citation(text, 0, a) == Quotable(a, b):
            problems = set()  # a whole citation line, to a question about its source
        if problems and problems <= {"heading", "fragment"} and (
            list_item(text, a, b) or _broken_item(text, [(a, b), *_next_span(text, b)], 0, 0)
        ):
            problems = set()  # a whole item of a list, quoted as a bullet
        if found.list_intro and set(list_items(text, b)) & set(ordered):
            problems -= {"contents"}
        bullet = BULLET.match(text, text.rfind("\n", 0, a) + 1)
        if found.needs_previous and not bullet and not (
            REFERRING.match(text[content_start(text, a, b):b])
            and _after_title(text, a)
        ):
            problems.add("needs_previous")
        if found.list_intro and not set(list_items(text, b)) & set(ordered):
            problems.add("list_without_items")
        if found.forward and not any(b <= x and not text[b:x].strip(" \t\n*_‘“'\"")
                                     for x, _ in ordered):
            problems.add("list_without_items")  # "the following ..." without what follows
        if problems:
            out.append(((a, b), frozenset(problems)))
    return out


def _next_span(text: str, b: int) -> list[tuple[int, int]]:
    """The sentence after offset ``b`` (for a broken item's rest), if any."""
    spans = sentence_spans(text, b, min(len(text), b + 2000))
    return spans[:1]


def _after_title(text: str, a: int) -> bool:
    """Whether the paragraph before ``a`` is a title or heading line (what "This" refers to)."""
    head = text[:a].rstrip()
    lo = head.rfind("\n") + 1
    line = head[lo:]
    return bool(LINK_TITLE.match(line.strip()) or HEADING_MARK.match(line)
                or (line.strip() and not terminal(line)))
