"""Which sentences of a passage can be quoted as an answer, and what must come with them.

A sentence is never quoted when it is a heading, a contents line, a question, journal
boilerplate (copyright, "Abstract only", a methods label), a reference entry, an article's
statement of its own aim (unless the question asks about the research itself), or a fragment
(it starts mid-thought or stops mid-sentence). Two kinds come with company:

- a sentence that opens on a word needing the sentence before it ("However,", "This",
  "surprisingly") brings that sentence, when the passage holds it and it is quotable itself;
  otherwise it is not chosen;
- a sentence that introduces a list ("... able to:") brings the list's items that follow it in
  the passage; without them it is not chosen.

Everything here is a pure function of the passage text and offsets: the extractive answer uses
it to choose quotes and the evaluation to count flawed quotes in any answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..text import BULLET, HEADING_MARK, MARKER

MIN_WORDS = 5
MAX_ITEMS = 12
_BARE_NUMBER = re.compile(r"\d{1,2}[.)]|[-*•–]")

# A label that opens an abstract's paragraph: the sentence after it is the content.
_LABEL = re.compile(
    r"\**(?:Purpose|PURPOSE|Background|BACKGROUND|Objectives?|OBJECTIVES?|Findings|FINDINGS|"
    r"Results|RESULTS|Conclusions?|CONCLUSIONS?|Aims?|AIMS?|Introduction|INTRODUCTION|"
    r"What is known on the subject|What this paper adds)\**"
    r"(?:\s*[:.–-]\s*|\s+(?=[A-Z]))"
)
# Where an abstract's next labelled part starts inside one run of text: "... services.
# **OBJECTIVES** To explore ...", "... peer roles. Method: A statewide survey ...".
_INNER_LABEL = re.compile(
    r"(?<=[.!?])\s+(?=\**(?:BACKGROUND|OBJECTIVES?|AIMS?|DESIGN|METHODS?|RESULTS|FINDINGS|"
    r"CONCLUSIONS?|SETTING|PARTICIPANTS|Background|Objectives?|Aims?|Design|Methods?|Results|"
    r"Findings|Conclusions?|Setting|Participants|Purpose|PURPOSE)\b\**\s*[:A-Z*])"
)
_LINK_TITLE = re.compile(r"^\*{0,2}\[[^\]]+\]\([^)]*\)")
_TERMINAL = re.compile(r"[.!?…](?:[\"'”’)\]*_]|\s*\*+)*$")
_BOILERPLATE = re.compile(
    r"\b(?:abstract only|full text|copyright|all rights reserved|please acknowledge|"
    r"produced by the|document version|take down policy|research portal|open access|"
    r"share your feedback|publisher'?s pdf|version of record|isbn|doi:|"
    r"help accessing articles|openathens|general rights|creative commons)\b|©|https?://|www\.",
    re.I,
)
_METHODS_LABEL = re.compile(
    r"^\**(?:design(?:/methodology/approach)?|methods?|methodology|setting|participants|"
    r"originality/value|research limitations(?:/implications)?|practical implications|"
    r"paper type|keywords?)\**(?:\s*[:.–-]|\s+(?=[A-Z]))",
    re.I,
)
# An article stating its own aim: "The purpose of this paper is to ...", "This study explored".
_AIM = re.compile(
    r"^(?:(?:the\s+)?(?:main\s+|overall\s+|specific\s+)?(?:purpose|aims?|objectives?|goals?|focus)"
    r"\s+of\s+(?:this|the|our)\s+(?:\w+\s+){0,2}(?:is|was|were|are)\b"
    r"|(?:this|the present|our)\s+(?:\w+\s+){0,2}(?:paper|article|study|report|review|brief|"
    r"piece|chapter|evaluation|research|project|summary|insight|thought piece)\s+"
    r"(?:aims?|aimed|seeks?|sought|sets? out|set out|describes?|described|explores?|explored|"
    r"examines?|examined|reports?|reported|presents?|considers?|considered|outlines?|discusses?|"
    r"investigates?|investigated|looks? at|looked at|provides?|offers?|reflects?|focus(?:es|ed)?"
    r"|is\s+(?:about|to)|was\s+to)\b"
    r"|to\s+(?:understand|explore|examine|investigate|identify|describe|assess|evaluate)\b"
    r"|(?:we|the authors?)\s+(?:aimed|set out|sought|explored|examined|describe)\b"
    r"|in\s+this\s+(?:paper|article|study|report)\b)",
    re.I,
)
# The document describing its own layout: "The findings were organised into a number of
# sections", "The review is therefore structured to respond to three main questions".
_CONTENTS = re.compile(
    r"\b(?:is|are|was|were|has been|have been|will be)\s+(?:\w+\s+)?(?:structured|organi[sz]ed|"
    r"divided|arranged|grouped|set out)\s+(?:into|around|under|in|as|to|by)\b"
    r"|\b(?:the|this|following|next|later|each)\s+(?:sections?|chapters?|headings?|parts?)\s+"
    r"(?:below|that follow|of this|describes?|presents?|sets? out|looks?|considers?|summari[sz]es?)"
    r"|\bclosing on\b|\.{4,}|…{2,}",
    re.I,
)
# A reference-list entry: "Pitt, V., Lowe, D. (2013). Title. Journal, 3(2)" or "Author et al."
_REFERENCE = re.compile(
    r"^[A-Z][\w'’-]+,\s+(?:[A-Z]\.\s*)+(?:,|&|and|\(|\d)"
    r"|\(\d{4}[a-z]?\)\.\s+\S.*\b(?:journal|review|bulletin|vol\.?|pp?\.)\b"
    r"|\b\d+\s*\(\d+\)\s*[:,]\s*\d+",
    re.I,
)
# Openers that need the sentence before them.
_CONNECTIVE = re.compile(
    r"^(?:(?:however|but|yet|and|or|so|indeed|therefore|thus|hence|also|furthermore|moreover|"
    r"in addition|additionally|similarly|likewise|nevertheless|nonetheless|consequently|"
    r"as a result|in contrast|by contrast|conversely|instead|despite this|in spite of this|"
    r"otherwise|as such|for this reason|in this way|surprisingly|unsurprisingly|not surprisingly|"
    r"interestingly|again|still|that said|even so|on the other hand|in turn|accordingly)"
    r"\b(?!\s+(?:to|of|with)\b)"
    # "This"/"These" point back, unless what follows names the document itself.
    r"|(?:this|these|those|such)\b(?!\s+(?:\w+\s+){0,2}(?:review|report|paper|study|brief|"
    r"document|evaluation|insight|summary|article|guide|framework|section|chapter)s?\b)"
    r"|(?:they|them|their|he|she|his|her|both|the latter|the former|the same)\b"
    r"|it\s+(?:also|found|finds|showed|shows|concluded|concludes|suggests?|suggested|"
    r"reported|reports|describes|identified|identifies|highlights?|highlighted|recommends?|"
    r"recommended|notes?|noted|argues|says|states|explores?|explored|covers|includes)\b)",
    re.I,
)
# Openers that refer to what is named just before (a title or heading) and can stand after one.
_REFERRING = re.compile(r"^(?:this|these|they|it|their|such)\b", re.I)
_REFERENCE_SECTIONS = {"references", "reference list", "bibliography"}
ASKS_ABOUT_RESEARCH = re.compile(
    r"\b(?:has anyone|have any|is there (?:any )?(?:research|work|evidence|study|literature|"
    r"paper)|any (?:research|stud(?:y|ies)|papers?|work|articles?|evidence) (?:on|about|into|"
    r"from|that)|what (?:research|studies|papers|articles)|(?:research|stud(?:y|ies)|papers?|"
    r"articles?) (?:on|about|into|that|which)|purpose|aims?\b|set up to|objectives?|written up|"
    r"set out to|trying to find|tried to find|(?:has|have) (?:\w+ ){0,5}been (?:used|tried|"
    r"studied|tested|evaluated|looked at|explored|researched|piloted|examined))",
    re.I,
)
"""A question about the research itself, which an article's statement of its aim answers."""
ASKS_PURPOSE = re.compile(
    r"\b(?:purpose|aims?|objectives?|set up to(?: find out)?|set out to(?: find out)?|meant to|"
    r"trying to (?:find out|find|answer|do|achieve)|tried to (?:find out|find|answer)|"
    r"what (?:was|is) (?:it|the \w+) for)\b",
    re.I,
)
"""A question about what a study set out to do: its statement of aim is the answer."""


def aims_allowed(question: str) -> bool:
    """Whether an article's statement of its aim may answer the question: it asks about the
    research itself or what a study set out to do."""
    return bool(ASKS_ABOUT_RESEARCH.search(question) or ASKS_PURPOSE.search(question))
ASKS_ABOUT_SOURCE = re.compile(
    r"\b(?:when (?:did|was|were|is|does)|what year|which year|what date|who (?:wrote|published|"
    r"produced|authored|commissioned|funded|carried out)|reference|cite|published|publication|"
    r"come out|came out|put out|written up)\b",
    re.I,
)
"""A question about a source itself (its date, its authors), which an entry's header answers."""


def split_labels(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """``text[a:b]`` cut where an abstract's next labelled part begins (a sentence span of the
    index may run "... services. **OBJECTIVES** To explore ... **DESIGN** Five ...")."""
    cuts = [m.start() for m in _INNER_LABEL.finditer(text, a, b)]
    bounds = [a, *cuts, b]
    out = []
    for x, y in zip(bounds, bounds[1:], strict=False):
        seg = text[x:y]
        lead = len(seg) - len(seg.lstrip())
        trail = len(seg) - len(seg.rstrip())
        if y - trail > x + lead:
            out.append((x + lead, y - trail))
    return out


def _clean(text: str) -> str:
    return text.strip().strip("*_").strip()


def terminal(text: str) -> bool:
    """Whether the text ends as a sentence does (".", "!", "?", closing quotes allowed)."""
    return bool(_TERMINAL.search(_clean(text)))


def _line_bounds(text: str, a: int, b: int) -> tuple[int, int]:
    lo = text.rfind("\n", 0, a) + 1
    hi = text.find("\n", b)
    return lo, len(text) if hi < 0 else hi


def _whole_line(text: str, a: int, b: int) -> bool:
    lo, hi = _line_bounds(text, a, b)
    before = text[lo:a]
    return not before.strip(" \t*#-•–") and not text[b:hi].strip()


def _header_line(line: str) -> bool:
    """A line that heads an entry rather than says something: a linked title, or a short line
    without a full stop ("June 2013, Centre for Mental Health")."""
    line = line.strip()
    return bool(line) and (bool(_LINK_TITLE.match(line))
                           or (not terminal(line) and len(line.split()) <= 12))


def content_start(text: str, a: int, b: int, *, keep_header: bool = False) -> int:
    """Where a sentence's words start: after an entry's header lines (unless ``keep_header``),
    a bullet, a heading's hashes or an abstract label."""
    while not keep_header:
        cut = text.find("\n", a, b)
        rest = text[cut:b].strip() if cut >= 0 else ""
        # What follows a header starts a sentence; "Not" + "surprisingly, ..." is one sentence.
        if cut < 0 or not _header_line(text[a:cut]) or not rest or rest[0].islower():
            break
        a = cut + 1
        while a < b and text[a].isspace():
            a += 1
    for pattern in (BULLET, HEADING_MARK, _LABEL):
        m = pattern.match(text, a, b)
        if m:
            a = m.end()
    return a


@dataclass(frozen=True, slots=True)
class Flaws:
    """Why a sentence cannot be quoted alone (empty when it can), and what it needs."""

    hard: frozenset[str]
    """Never quoted: heading, contents, question, boilerplate, reference, fragment, aim, marker."""
    needs_previous: bool = False
    list_intro: bool = False

    @property
    def clean(self) -> bool:
        return not self.hard and not self.needs_previous and not self.list_intro


def flaws(text: str, a: int, b: int, *, section: str = "", keep_header: bool = False) -> Flaws:
    """What is wrong with quoting ``text[a:b]`` (a sentence of a passage) on its own.

    With ``keep_header`` an entry's header lines stay part of the sentence ("[Title](#) May
    2016, Iriss" is what answers "when was it published?") and are not held against it.
    """
    a = content_start(text, a, b, keep_header=keep_header)
    sentence = text[a:b].strip()
    body = _clean(sentence)
    hard: set[str] = set()
    if not body:
        return Flaws(frozenset({"fragment"}))
    last_section = section.split(" > ")[-1].strip().lower()
    if last_section in _REFERENCE_SECTIONS or _REFERENCE.search(body):
        hard.add("reference")
    if body.endswith("?"):
        hard.add("question")
    if (_LINK_TITLE.match(sentence) and not keep_header) or _BOILERPLATE.search(body) \
            or _METHODS_LABEL.match(body):
        hard.add("boilerplate")
    if _CONTENTS.search(body):
        hard.add("contents")
    if MARKER.search(body):
        hard.add("marker")  # a source's own "[1]" would read as one of peerqa's markers
    list_intro = body.endswith(":")
    ends = terminal(body) or list_intro
    whole = _whole_line(text, a, b)
    if keep_header and "\n" in sentence and terminal(body):
        pass  # a header and its entry's first sentence, quoted together
    elif HEADING_MARK.match(text, text.rfind("\n", 0, a) + 1) or (
        whole and not ends and not BULLET.match(text, text.rfind("\n", 0, a) + 1)
    ) or (last_section and body.lower() == last_section):
        hard.add("heading")
    elif not ends or not (body[0].isupper() or body[0].isdigit() or body[0] in "[\"'‘“(") \
            or len(body.split()) < MIN_WORDS:
        hard.add("fragment")
    if _AIM.match(body):
        hard.add("aim")
    return Flaws(frozenset(hard), needs_previous=bool(_CONNECTIVE.match(body)),
                 list_intro=list_intro)


# --------------------------------------------------------------------------- quotable units


@dataclass(frozen=True, slots=True)
class Quotable:
    """What is quoted for one chosen sentence: its span, perhaps widened to the sentence before
    it, and the items of the list it introduces (document offsets, in order)."""

    start: int
    end: int
    items: tuple[tuple[int, int], ...] = ()

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
        if bulleted is None:
            bulleted = bool(bullet)
        if bulleted != bool(bullet) or (not bullet and terminal(line) and len(line.split()) > 12):
            break
        lead = bullet.end() if bullet else len(line) - len(line.lstrip())
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
) -> Quotable | None:
    """The unit to quote for sentence ``i`` of a passage, or None when it cannot be quoted.

    ``text`` is the passage's text starting at document offset ``offset``; ``spans`` are its
    sentences in document offsets, in order.
    """
    a, b = spans[i][0] - offset, spans[i][1] - offset
    keep_header = keep_header and bool(_LINK_TITLE.match(text, a, b))
    found = flaws(text, a, b, section=section, keep_header=keep_header)
    hard = found.hard - ({"aim"} if allow_aims else set())
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
            and not (start > a and _REFERRING.match(text[start:b])):
        if prev is None:
            return None
        pa, pb = prev[0] - offset, prev[1] - offset
        earlier = flaws(text, pa, pb, section=section)
        before_break = "\n" in text[pb:a]
        if before_break and _REFERRING.match(text[start:b]) and (
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
    return Quotable(offset + first, offset + b)


def quote_problems(
    text: str, spans: Sequence[tuple[int, int]], *, question: str = "", section: str = ""
) -> list[tuple[tuple[int, int], frozenset[str]]]:
    """What is wrong with each quoted span of a document (``text``), as the evaluation counts
    it: the hard flaws, "needs_previous" (a connective quoted without its sentence) and
    "list_without_items". A span that is an item of a quoted list introduction is fine."""
    allow_aims = aims_allowed(question)
    keep_header = bool(ASKS_ABOUT_SOURCE.search(question))
    ordered = sorted(set(spans))
    items: set[tuple[int, int]] = set()
    for a, b in ordered:
        if _clean(text[a:b]).endswith(":"):
            items.update(list_items(text, b))
    out = []
    for a, b in ordered:
        if (a, b) in items:
            continue
        found = flaws(text, a, b, section=section,
                      keep_header=keep_header and bool(_LINK_TITLE.match(text, a, b)))
        problems = set(found.hard - ({"aim"} if allow_aims else set()))
        if found.list_intro and set(list_items(text, b)) & set(ordered):
            problems -= {"contents"}
        bullet = BULLET.match(text, text.rfind("\n", 0, a) + 1)
        if found.needs_previous and not bullet and not (
            _REFERRING.match(text[content_start(text, a, b):b])
            and _after_title(text, a)
        ):
            problems.add("needs_previous")
        if found.list_intro and not set(list_items(text, b)) & set(ordered):
            problems.add("list_without_items")
        if problems:
            out.append(((a, b), frozenset(problems)))
    return out


def _after_title(text: str, a: int) -> bool:
    """Whether the paragraph before ``a`` is a title or heading line (what "This" refers to)."""
    head = text[:a].rstrip()
    lo = head.rfind("\n") + 1
    line = head[lo:]
    return bool(_LINK_TITLE.match(line.strip()) or HEADING_MARK.match(line)
                or (line.strip() and not terminal(line)))
