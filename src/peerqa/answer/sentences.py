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

Everything here is a pure function of the passage text and offsets; ``units`` builds on it what
is quoted for a chosen sentence (the extractive answer) and counts flawed quotes in any answer
(the evaluation).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..text import ASKS_WHO_MADE, BULLET, HEADING_MARK, MARKER, TERMINAL, credit_line, trimmed

MIN_WORDS = 5
MAX_ITEMS = 12

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
LINK_TITLE = re.compile(r"^\*{0,2}\[[^\]]+\]\([^)]*\)")
BOILERPLATE = re.compile(
    r"\b(?:abstract only|full text|copyright|all rights reserved|please acknowledge|"
    r"produced by the|document version|take down policy|research portal|open access|"
    r"share your feedback|publisher'?s pdf|version of record|isbn|doi:|"
    r"help accessing articles|openathens|general rights|creative commons)\b|©|https?://|www\."
    r"|\bmore information (?:\w+ ){0,6}(?:is|can be) (?:also )?(?:available|found)\b",
    re.I,
)
_PAPER_LABEL = re.compile(
    r"^\**(?:originality/value|research limitations(?:/implications)?|practical implications|"
    r"paper type|keywords?)\**(?:\s*[:.–-]|\s+(?=[A-Z]))",
    re.I,
)
# How a study was done, under its abstract's label: "Methods: A national sample of 603
# consumers ...", "DESIGN Data were gathered through a cross-sectional survey ...". Quoted
# only when the question asks how the research was done.
_METHODS_LABEL = re.compile(
    r"^\**(?:design(?:/methodology/approach)?|methods?|methodology|setting|participants)\**"
    r"(?:\s*[:.–-]|\s+(?=[A-Z]))",
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
    r"|address(?:es|ed)?|summari[sz]es|summari[sz]ed|draws? on|brings? together"
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
# A sentence pointing at what follows it: "The following definitions capture the essence of
# peer support." It brings what follows or is not quoted.
_FORWARD = re.compile(
    r"\b(?:the following|as follows|(?:listed|set out|described|shown|summari[sz]ed|outlined|"
    r"given) below|below are)\b"
    # A sentence that ends announcing how many things it does not name: "... support in two
    # main areas." (the next sentence names them).
    r"|\b(?:two|three|four|five|six|several|a number of)\s+(?:main|key|broad|distinct|"
    r"separate|major|core|principal)\s+[a-z-]+s\W*$",
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
REFERRING = re.compile(r"^(?:this|these|they|it|their|such)\b", re.I)
REFERENCE_SECTIONS = {"references", "reference list", "bibliography"}
# A line that cites a work: a parenthesised date between full stops ("Katie Nicholas.
# (January 2021). UK: ..."). Each of its pieces is part of a reference, not a statement.
_CITATION_LINE = re.compile(r"\.\s+\((?:[A-Z][a-z]+\s+)?\d{4}[a-z]?\)\.")
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
ASKS_METHOD = re.compile(
    r"\b(?:how (?:was|were|did|do|does|is|are)\b(?:\s+\S+){0,8}?\s+(?:research\w*|stud(?:y|ied)|"
    r"done|carried out|conducted|gather\w*|collect\w*|measur\w*|evaluat\w*|assess\w*|"
    r"survey\w*|interview\w*|select\w*|recruit\w*|sampl\w*|analys\w*|look\w*|go about)|"
    r"how big|how large|what size|methods?|methodology|study design|sample size|"
    r"participants|who took part|data)\b",
    re.I,
)
"""A question about how a study was done, which its abstract's methods answer."""


ASKS_FOR_QUESTIONS = re.compile(
    r"\b(?:questions|research question|(?:trying|tried|set out|sought|seeking|meant) to answer|"
    r"left (?:open|unanswered)|unanswered)\b",
    re.I,
)
"""A question about the questions a document asks (a review's research questions, the questions
a pilot leaves open), which the document's own questions answer."""


def questions_allowed(question: str) -> bool:
    """Whether a document's own question ("What do we know about ...?") may answer the
    question: it asks what questions a study asked or left open."""
    return bool(ASKS_FOR_QUESTIONS.search(question))


def methods_allowed(question: str) -> bool:
    """Whether a study's "Methods:" sentence may answer the question: it asks how the research
    was done."""
    return bool(ASKS_METHOD.search(question))


ASKS_ABOUT_SOURCE = re.compile(
    r"\b(?:when (?:did|was|were|is|does)|what year|which year|what date|who (?:wrote|published|"
    r"produced|authored|commissioned|funded|carried out|developed|prepared|compiled|edited)|"
    r"(?:who|what) (?:is|are|was|were) (?:the |its |their )?authors?|reference|cite|published|"
    r"publication|come out|came out(?! of)|put out|written up)\b",
    re.I,
)
"""A question about a source itself (its date, its authors), which an entry's header answers."""


def credits_allowed(question: str) -> bool:
    """Whether a document's credit lines may answer the question: it asks who made it."""
    return bool(ASKS_WHO_MADE.search(question))


ASKS_FOR_STUDIES = re.compile(
    r"\b(?:has anyone|is there (?:any )?(?:research|work|study|literature|papers?)|are there "
    r"(?:any )?(?:stud(?:y|ies)|papers?|articles?)|any (?:research|stud(?:y|ies)|papers?|"
    r"articles?) (?:on|about|into|from|that)|what (?:research|studies|papers|articles)|which "
    r"(?:stud(?:y|ies)|papers?|articles?))\b",
    re.I,
)
"""A question whether there is research on something: a study's statement of its aim (under an
entry whose title names the topic) answers it, as it answers what a study set out to do."""


def split_labels(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """``text[a:b]`` cut where an abstract's next labelled part begins (a sentence span of the
    index may run "... services. **OBJECTIVES** To explore ... **DESIGN** Five ...")."""
    cuts = [m.start() for m in _INNER_LABEL.finditer(text, a, b)]
    bounds = [a, *cuts, b]
    return trimmed(text, zip(bounds, bounds[1:], strict=False))


def clean(text: str) -> str:
    """The text without surrounding space and emphasis marks."""
    return text.strip().strip("*_").strip()


def terminal(text: str) -> bool:
    """Whether the text ends as a sentence does (".", "!", "?", closing quotes allowed)."""
    return bool(TERMINAL.search(clean(text)))


def line_bounds(text: str, a: int, b: int) -> tuple[int, int]:
    """Where the lines holding ``text[a:b]`` start and end."""
    lo = text.rfind("\n", 0, a) + 1
    hi = text.find("\n", b)
    return lo, len(text) if hi < 0 else hi


def whole_line(text: str, a: int, b: int) -> bool:
    """Whether ``text[a:b]`` is all there is on its line (a bullet or heading mark aside)."""
    lo, hi = line_bounds(text, a, b)
    before = text[lo:a]
    return not before.strip(" \t*#-•–") and not text[b:hi].strip()


def _header_line(line: str) -> bool:
    """A line that heads an entry rather than says something: a linked title, or a short line
    without a full stop ("June 2013, Centre for Mental Health")."""
    line = line.strip()
    return bool(line) and (bool(LINK_TITLE.match(line))
                           or (not terminal(line) and len(line.split()) <= 12))


_CAPITALISED_END = re.compile(r"\b[A-Z][\w'’-]*\s*$")


def continues(text: str, a: int) -> bool:
    """Whether the sentence at ``a`` continues a line the text's extraction broke off: the
    line before is long, ends without punctuation on a capitalised word, and this one starts on
    one ("... a detailed profile of Peer Support" + "Workers employed within NHS ...")."""
    head = text[:a].rstrip()
    if "\n" not in text[len(head) : a] or not head:
        return False
    line = head[head.rfind("\n") + 1 :]
    return len(line.split()) >= CONTINUED_WORDS and not terminal(line) \
        and not LINK_TITLE.match(line.strip()) and not HEADING_MARK.match(line.lstrip()) \
        and bool(_CAPITALISED_END.search(line)) and text[a:a + 1].isupper()


CONTINUED_WORDS = 15
"""A line at least this long that stops without punctuation was broken mid-sentence."""


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
    """Never quoted: heading, contents, question, boilerplate, reference, fragment, marker; an
    aim or a method only when the question asks about the research; a credit line ("Developed
    by ...", a line of authors) only when it asks who made the source."""
    needs_previous: bool = False
    list_intro: bool = False
    forward: bool = False
    """It points at what follows ("The following definitions ..."), which must come with it."""

    @property
    def clean(self) -> bool:
        return not self.hard and not self.needs_previous and not self.list_intro \
            and not self.forward


@functools.lru_cache(maxsize=1 << 13)
def flaws(text: str, a: int, b: int, *, section: str = "", keep_header: bool = False) -> Flaws:
    """What is wrong with quoting ``text[a:b]`` (a sentence of a passage) on its own.

    With ``keep_header`` an entry's header lines stay part of the sentence ("[Title](#) May
    2016, Iriss" is what answers "when was it published?") and are not held against it.
    Kept (``Flaws`` is frozen): a passage's sentences are read again for every question that
    finds it.
    """
    a = content_start(text, a, b, keep_header=keep_header)
    sentence = text[a:b].strip()
    body = clean(sentence)
    hard: set[str] = set()
    if not body:
        return Flaws(frozenset({"fragment"}))
    last_section = section.split(" > ")[-1].strip().lower()
    lo, hi = line_bounds(text, a, b)
    cited = bool(_CITATION_LINE.search(text, lo, hi))
    if last_section in REFERENCE_SECTIONS or _REFERENCE.search(body) or cited:
        hard.add("reference")
        # A document's own citation line ("Please acknowledge this work as: ..."), not an entry
        # of a reference list: quoted whole, to a question about the source.
        if cited and last_section not in REFERENCE_SECTIONS and not BULLET.match(text, lo):
            hard.add("citation")
    if body.endswith("?"):
        hard.add("question")
    if (LINK_TITLE.match(sentence) and not keep_header) or BOILERPLATE.search(body) \
            or _PAPER_LABEL.match(body):
        hard.add("boilerplate")
    if body.startswith("[") and "](" not in body:
        hard.add("heading")  # a linked title cut at its own "?" or "!": part of a heading
    if _METHODS_LABEL.match(body):
        hard.add("method")
    if _CONTENTS.search(body):
        hard.add("contents")
    if MARKER.search(body):
        hard.add("marker")  # a source's own "[1]" would read as one of peerqa's markers
    list_intro = body.endswith(":")
    ends = terminal(body) or list_intro
    whole = whole_line(text, a, b)
    if keep_header and "\n" in sentence and terminal(body):
        pass  # a header and its entry's first sentence, quoted together
    elif whole and credit_line(body):
        hard.add("credit")  # it answers who made the document, and nothing else
    elif (HEADING_MARK.match(text, lo) or (whole and not ends and not BULLET.match(text, lo))
          or (last_section and body.lower() == last_section)):
        hard.add("heading")
    elif not ends or not (body[0].isupper() or body[0].isdigit() or body[0] in "[\"'‘“(") \
            or len(body.split()) < MIN_WORDS or continues(text, a):
        hard.add("fragment")
    if _AIM.match(body):
        hard.add("aim")
    return Flaws(frozenset(hard), needs_previous=bool(_CONNECTIVE.match(body)),
                 list_intro=list_intro,
                 forward=not list_intro and bool(_FORWARD.search(body)))


