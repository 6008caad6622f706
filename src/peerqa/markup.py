"""Document text made safe and clean for display, without ever changing what is cited.

- Escaping: every string from a document passes through ``html_text`` (the chat's HTML) or
  ``md_text`` (Markdown) before it is shown, so document text can never act as markup.
- The Markdown view: a Markdown document's own syntax (heading hashes, link brackets and
  targets, emphasis marks, escaping backslashes, a few inline tags) is found as spans to *hide*.
  Nothing is removed or rewritten: the HTML keeps every stored character, the hidden ones inside
  a ``pq-mu`` span that the style does not display, so what a reader sees is a subsequence of
  the stored text and every quote keeps its exact offsets.
- ``highlight_runs``: the one splicer that cuts a passage into quoted and unquoted runs.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Sequence

from .text import HEADING
from .types import Document

Span = tuple[int, int]

# -- escaping ---------------------------------------------------------------------------------

# One pass over the text: HTML's five specials, plus every character that Markdown, GFM autolinks
# or LaTeX would act on, as numeric entities. Entities are literal text to a Markdown parser, so
# document text can never become a tag, a link or an emphasis, whatever Gradio does with it.
_HTML_TABLE = str.maketrans(
    {c: f"&#{ord(c)};" for c in "&<>\"'`*_[](){}#|~$\\!:=@^"}
)
# For passages shown with their line breaks (white-space: pre-line): a line feed as an entity
# keeps the chat's Markdown parser from ending the HTML block at a blank line, and the text node
# still holds the stored character.
_PASSAGE_TABLE = _HTML_TABLE | str.maketrans({"\n": "&#10;"})
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$&])")


def html_text(text: str) -> str:
    """Escape text for the chat's HTML: nothing in it can act as HTML or Markdown (and what
    cannot be encoded, such as a lone surrogate, shows as "?")."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_HTML_TABLE)
    return text.replace("\n", "<br>")


def md_text(text: str) -> str:
    """Escape text for Markdown: shown verbatim by any CommonMark renderer, never a link or tag."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\r\n", "\n").replace("\r", "\n"))


def section_label(section: str) -> str:
    """A section path for a reader: 'A > B' as 'A › B'."""
    return " › ".join(p.strip() for p in section.split(" > ") if p.strip()) or "untitled section"


# -- the Markdown view ------------------------------------------------------------------------

_HEADING_CLOSE = re.compile(r"[ \t]+#+[ \t]*$")
# Backslashes before ASCII punctuation (a run of them too: converted documents double-escape, as
# in "SRN\\_Values"), and a backslash that ends a line (a hard line break).
_ESCAPE = re.compile(r"\\+(?=[!-/:-@\[-`{-~])|\\$", re.M)
_LINK = re.compile(
    r"(!?\[)(?:[^\[\]\n\\]|\\.)*(\]\((?:[^()\s]|\([^()\s]*\))*(?:[ \t]+\"[^\"\n]*\")?\))"
)
_AUTOLINK = re.compile(r"(<)(?:https?|mailto|ftp):[^\s<>]*(>)", re.I)
_INLINE_TAG = re.compile(r"</?(?:a|b|i|u|em|strong|small|span|sub|sup|br)\b[^<>\n]*>", re.I)
# Emphasis: a run of one to three marks that opens before a non-space and closes, with the same
# run, after one, on the same line; underscores only outside words (snake_case stays).
_STARS = re.compile(r"(?<![*\\])(\*{1,3})(?=[^\s*])(.*?[^\s*])(\1)(?!\*)")
_UNDERSCORES = re.compile(r"(?<![\w_])(_{1,3})(?=[^\s_])(.*?[^\s_])(\1)(?![\w_])")
_NEUTRAL = "\x01"
"""Stands in the working copy for hidden syntax: neither a space nor an emphasis mark."""


def _merge(spans: Sequence[Span]) -> tuple[Span, ...]:
    out: list[Span] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


@functools.lru_cache(maxsize=32)
def markdown_hidden(text: str) -> tuple[Span, ...]:
    """The spans of ``text`` that are Markdown syntax, sorted and merged: hide them to show it
    as clean text. The text itself is never changed."""
    hidden: list[Span] = []
    work = list(text)

    def hide(a: int, b: int) -> None:
        hidden.append((a, b))
        work[a:b] = _NEUTRAL * (b - a)

    for m in _ESCAPE.finditer(text):
        hide(m.start(), m.end())
        if m.end() < len(text) and text[m.end()] != "\n":
            work[m.end()] = "x"  # the escaped character is literal: never a mark or a bracket
    for m in HEADING.finditer(text):
        if "\n" in m.group(1):
            continue
        hide(m.start(1), m.start(2))
        close = _HEADING_CLOSE.search(text, m.end(2), m.end())
        if close:
            hide(close.start(), close.end())
    for pattern in (_LINK, _AUTOLINK):
        for m in pattern.finditer("".join(work)):
            hide(m.start(1), m.end(1))
            hide(m.start(2), m.end(2))
            for i in range(m.end(1), m.start(2)):
                if work[i] in "*_" and pattern is _AUTOLINK:
                    work[i] = "x"  # an address's underscores are not emphasis
    for m in _INLINE_TAG.finditer("".join(work)):
        hide(m.start(), m.end())
    for _ in range(2):  # once for the outer emphasis, once for one nested inside it
        for pattern in (_STARS, _UNDERSCORES):
            for m in pattern.finditer("".join(work)):
                hide(m.start(1), m.end(1))
                hide(m.start(3), m.end(3))
    return _merge(hidden)


_BLOCK_START = re.compile(r"[ \t]*(?:[-*+•][ \t]|\d{1,3}[.)][ \t]|#|>|\||```|~~~|\n|$)")


@functools.lru_cache(maxsize=32)
def markdown_soft_breaks(text: str) -> tuple[int, ...]:
    """Offsets of the line breaks inside a Markdown paragraph (a wrapped line), which a reader
    sees as a space; a break before a list item, a heading or a blank line, after a heading,
    or after two spaces or a backslash (a hard break) stays a line break."""
    soft = []
    for m in re.finditer("\n", text):
        i = m.start()
        line_start = text.rfind("\n", 0, i) + 1
        line = text[line_start:i]
        if not line.strip() or HEADING.match(line) or line.endswith(("  ", "\\")) \
                or _BLOCK_START.match(text, i + 1):
            continue
        soft.append(i)
    return tuple(soft)


def is_markdown(document: Document | None) -> bool:
    """Whether a document's text is Markdown (its syntax is then hidden, never removed)."""
    return document is not None and document.path.lower().endswith((".md", ".markdown"))


def hidden_spans(document: Document | None) -> tuple[Span, ...]:
    """The document's Markdown syntax as spans of its text to hide (none for plain text)."""
    return markdown_hidden(document.text) if document is not None and is_markdown(document) \
        else ()


def soft_breaks(document: Document | None) -> tuple[int, ...]:
    """The document's wrapped-line breaks, shown as spaces (none for plain text)."""
    return markdown_soft_breaks(document.text) \
        if document is not None and is_markdown(document) else ()


def clip(spans: Sequence[Span], start: int, end: int) -> list[Span]:
    """The spans that fall inside [start, end), clipped to it."""
    i = max(0, bisect.bisect_right(spans, (start, start)) - 1)
    out = []
    for a, b in spans[i:]:
        if a >= end:
            break
        if b > start:
            out.append((max(a, start), min(b, end)))
    return out


def visible(text: str, offset: int, hidden: Sequence[Span]) -> str:
    """``text`` (stored at document offset ``offset``) as a reader sees it, hidden spans out."""
    out, pos = [], offset
    for a, b in clip(hidden, offset, offset + len(text)):
        out.append(text[pos - offset : a - offset])
        pos = b
    out.append(text[pos - offset :])
    return "".join(out)


_BLANKS = re.compile(r"\n(?:[ \t\r\f\v]*\n)+")


def shown_hidden(text: str, offset: int, hidden: Sequence[Span]) -> tuple[Span, ...]:
    """The spans to hide when ``text`` (stored at ``offset``) is shown with its line breaks:
    the Markdown syntax in ``hidden``, carriage returns, and the extra line breaks of a run of
    blank lines (one blank line is shown)."""
    spans = clip(_merge(hidden), offset, offset + len(text))
    spans += [(offset + m.start(), offset + m.end()) for m in re.finditer("\r", text)]
    spans += [(offset + m.start() + 1, offset + m.end() - 1) for m in _BLANKS.finditer(text)]
    return _merge(spans)


def view_html(text: str, offset: int, hidden: Sequence[Span], soft: Sequence[int] = ()) -> str:
    """Escaped HTML of ``text`` (stored at document offset ``offset``) keeping every character:
    line breaks as line feeds (shown by ``white-space: pre-line``), the ``hidden`` spans (see
    ``shown_hidden``) inside ``<span class="pq-mu">``, which the style never displays, and the
    ``soft`` line breaks (offsets) inside ``<span class="pq-soft">``, shown as a space."""
    end = offset + len(text)
    cuts = [(a, b, "pq-mu") for a, b in clip(hidden, offset, end)]
    i = bisect.bisect_left(soft, offset)
    while i < len(soft) and soft[i] < end:
        at = soft[i]
        if not any(a <= at < b for a, b, _ in cuts):
            cuts.append((at, at + 1, "pq-soft"))
        i += 1
    out, pos = [], offset
    for a, b, cls in sorted(cuts):
        out.append(text[pos - offset : a - offset].translate(_PASSAGE_TABLE))
        out.append(f'<span class="{cls}">'
                   + text[a - offset : b - offset].translate(_PASSAGE_TABLE) + "</span>")
        pos = b
    out.append(text[pos - offset :].translate(_PASSAGE_TABLE))
    return "".join(out)


# -- highlights -------------------------------------------------------------------------------


def merged_highlights(spans: Sequence[Span], start: int, end: int) -> list[Span]:
    """Highlight spans clipped to [start, end], sorted and merged."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in spans if min(b, end) > max(a, start))
    out: list[Span] = []
    for a, b in clipped:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def highlight_runs(
    start: int, end: int, highlights: Sequence[Span]
) -> list[tuple[int, int, bool]]:
    """The passage document[start:end] cut into (from, to, highlighted) runs, offsets relative
    to the passage; the highlight spans (document offsets) are clipped and merged first."""
    runs: list[tuple[int, int, bool]] = []
    pos = 0
    for a, b in merged_highlights(highlights, start, end):
        if a - start > pos:
            runs.append((pos, a - start, False))
        runs.append((a - start, b - start, True))
        pos = b - start
    if end - start > pos or not runs:
        runs.append((pos, end - start, False))
    return runs
