"""The shape of an extractive answer: quotes grouped by source under peerqa's own lines.

An answer is a list of ``AnswerPart``s, rendered as plain text by ``plain_text`` (the answer's
``text``) and richer by the faces (``render.py``):

- a partial answer opens with what the documents do not give and "What they say about ...:";
- differing figures come first, after "The documents differ:", each with its source and date;
- then one group per source, most relevant first, each under an attribution line such as
  "Delivering for Mental Health pilot evaluation (2009) recommends:"; a comparison takes the
  named documents in the order named and says so when one has nothing on the question;
- a list question's quotes, and a list's items, are bullets.

Sources are numbered by first use, so [1] is the first source the reader meets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..text import normalise
from ..types import Answer, AnswerPart, Citation, Conflict, ConflictSide, Passage
from .conflicts import Stated, find_conflicts
from .judge import check_citations, each_marked

DIFFER = "The documents differ:"
_RECOMMENDS = re.compile(r"\b(?:should|recommend\w*|must|needs? to|it (?:is|will be) "
                         r"(?:important|essential|vital))\b", re.I)


@dataclass(frozen=True, slots=True)
class Quote:
    """A chosen unit of a retrieved passage: its sentence and any list items (document offsets)."""

    hit_rank: int
    spans: tuple[tuple[int, int], ...]
    items: int
    score: float
    item: bool = False
    """Whether the quote is itself an item of a list (a bullet)."""


def plain_text(parts: Sequence[AnswerPart]) -> str:
    """The answer as plain text: own lines and bullets on lines of their own, other quotes
    joined into paragraphs, each followed by its markers."""
    lines: list[str] = []
    paragraph: list[str] = []
    for part in parts:
        if not part.own and not part.bullet:
            paragraph.append(each_marked(part))
            continue
        if paragraph:
            lines.append(" ".join(paragraph))
            paragraph = []
        lines.append(("- " if part.bullet else "") + each_marked(part))
    if paragraph:
        lines.append(" ".join(paragraph))
    return "\n".join(lines)


def source_label(passage: Passage, titles: Mapping[str, str]) -> str:
    """How peerqa names a source: its short title and year ("Iriss Insight (2016)")."""
    title = titles.get(passage.doc_id) or passage.title
    return f"{title} ({passage.year})" if passage.year is not None else title


_ENTRY = re.compile(r"^\W{0,6}\[([^\]]{3,})\]\([^)]*\)\**\s*([^\n]*)")
_ENTRY_DATE = re.compile(r"(?:(?:January|February|March|April|May|June|July|August|September|"
                         r"October|November|December|Spring|Summer|Autumn|Winter)\s+)?"
                         r"(?:19|20)\d\d|\bn\.d\.")
ENTRY_TITLE_CHARS = 90


def entry_of(passage: Passage) -> str:
    """For a passage that is an entry of an annotated bibliography ("[Title](link) May 2016,
    Iriss ..."), how peerqa names the entry: “Title” (May 2016); else ""."""
    m = _ENTRY.match(passage.text)
    if not m:
        return ""
    title = " ".join(m.group(1).split())
    if len(title) > ENTRY_TITLE_CHARS:
        title = title[: ENTRY_TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    date = _ENTRY_DATE.search(m.group(2))
    return f"“{title}”" + (f" ({date.group(0)})" if date else "")


def _text(passage: Passage, span: tuple[int, int]) -> str:
    return normalise(passage.text[span[0] - passage.start : span[1] - passage.start])


def _conflicts(quotes: Sequence[Quote], passages: Sequence[Passage]) -> list[Conflict]:
    """Differing figures among the quotes, sides numbered by hit rank for now."""
    stated = []
    for q in quotes:
        p = passages[q.hit_rank]
        a, b = q.spans[0]
        stated.append(Stated(q.hit_rank, p.doc_id, _text(p, (a, b)), a, b,
                             p.text[: a - p.start], p.year))
    return find_conflicts(stated)


def compose(
    question: str,
    quotes: Sequence[Quote],
    passages: Sequence[Passage],
    query: str,
    *,
    coverage: str,
    missing: str,
    topic: str,
    titles: Mapping[str, str],
    named: Sequence[str] = (),
    listed: bool = False,
) -> Answer:
    """The answer: its parts, its plain text, its citations numbered by first use."""
    parts: list[tuple[str, str, int | None, tuple[int, int] | None, bool]] = []
    # (kind, text, hit rank, span, bullet); numbers are given once the order is known.
    if coverage == "partial":
        parts.append(("lead", missing, None, None, False))
        parts.append(("lead", f"What they say about {topic}:" if topic
                      else "The nearest they come:", None, None, False))
    conflicts = _conflicts(quotes, passages)
    in_conflict = {(s.number, s.start) for c in conflicts for s in c.sides}
    if conflicts:
        parts.append(("lead", DIFFER, None, None, False))
        for c in conflicts:
            for s in c.sides:
                label = source_label(passages[s.number], titles)
                entry = entry_of(passages[s.number])
                label += f", in its entry {entry}" if entry else ""
                when = f", a figure as of {s.as_of}" if s.as_of else ""
                parts.append(("lead", f"{label}{when}:", None, None, False))
                parts.append(("quote", s.quote, s.number, (s.start, s.end), True))
    rest = [q for q in quotes if (q.hit_rank, q.spans[0][0]) not in in_conflict]

    def key(q: Quote) -> tuple[str, str]:
        p = passages[q.hit_rank]
        return p.doc_id, entry_of(p)

    # One group per source (per entry of a bibliography), the most relevant first; a
    # comparison's named documents first, in the order named.
    order: list[tuple[str, str]] = []
    for doc_id in named:
        own = [key(q) for q in rest if passages[q.hit_rank].doc_id == doc_id]
        order.extend(dict.fromkeys(own) or [(doc_id, "")])
    for q in rest:
        if key(q) not in order:
            order.append(key(q))
    for doc_id, entry in order:
        group = sorted((q for q in rest if key(q) == (doc_id, entry)),
                       key=lambda q: q.spans[0][0])
        if not group:
            if doc_id in named and not any(passages[s.number].doc_id == doc_id
                                           for c in conflicts for s in c.sides):
                title = titles.get(doc_id, doc_id)
                parts.append(("note", f"The {title} has nothing on this in the passages found.",
                              None, None, False))
            continue
        first = passages[group[0].hit_rank]
        texts = [_text(passages[q.hit_rank], q.spans[0]) for q in group]
        verb = "recommends" if all(_RECOMMENDS.search(t) for t in texts) else "says"
        label = source_label(first, titles) + (f", in its entry {entry}," if entry else "")
        parts.append(("lead", f"{label} {verb}:", None, None, False))
        for q, text in zip(group, texts, strict=True):
            parts.append(("quote", text, q.hit_rank, q.spans[0],
                          (listed and not q.items) or q.item))
            p = passages[q.hit_rank]
            for span in q.spans[1:]:
                parts.append(("quote", _text(p, span), q.hit_rank, span, True))
    # Number sources by first use and gather what each quotes.
    numbers: dict[int, int] = {}
    highlights: dict[int, list[tuple[int, int]]] = {}
    final: list[AnswerPart] = []
    for kind, said, rank, where, bullet in parts:
        if rank is None or where is None:
            final.append(AnswerPart(kind, said))
            continue
        n = numbers.setdefault(rank, len(numbers) + 1)
        highlights.setdefault(rank, []).append(where)
        final.append(AnswerPart(kind, said, (n,), bullet))
    citations = [
        Citation.of(passages[rank], n, tuple(sorted(set(highlights[rank]))))
        for rank, n in sorted(numbers.items(), key=lambda kv: kv[1])
    ]
    renumbered = [
        Conflict(c.point, tuple(ConflictSide(numbers[s.number], s.quote, s.start, s.end,
                                             s.value, s.as_of) for s in c.sides))
        for c in conflicts
    ]
    text = plain_text(final)
    return Answer(
        question=question,
        text=text,
        citations=citations,
        abstained=False,
        passages=list(passages),
        mode="extractive",
        checks=check_citations(text, citations, final),
        retrieval_query=query,
        coverage=coverage,
        missing=missing if coverage == "partial" else "",
        conflicts=renumbered,
        parts=final,
    )


# --------------------------------------------------------------------------- for the faces


@dataclass(frozen=True, slots=True)
class Block:
    """A run of an answer's parts as the faces lay it out: "banner" (partial or not covered,
    ``text`` saying so), "lead" or "note" (peerqa's own line), "quotes" (a paragraph of
    quotes), "list" (bulleted quotes), "differ" (``sides``: each a side's label, quote part
    and conflict side)."""

    kind: str
    text: str = ""
    parts: tuple[AnswerPart, ...] = ()
    sides: tuple[tuple[str, AnswerPart, ConflictSide], ...] = ()


def blocks(answer: Answer) -> list[Block]:
    """An answer's parts grouped for display; the same for the terminal, Markdown and HTML."""
    parts = list(answer.parts)
    out: list[Block] = []
    if answer.coverage == "partial":
        out.append(Block("banner", answer.missing))
        if parts and parts[0].own and parts[0].text == answer.missing:
            parts = parts[1:]
    elif answer.coverage == "not_covered":
        out.append(Block("banner", " ".join(p.text for p in parts) or answer.text))
        return out
    i = 0
    while i < len(parts):
        part = parts[i]
        if part.own and part.text == DIFFER and answer.conflicts:
            sides = []
            for side in (s for c in answer.conflicts for s in c.sides):
                label, quote = parts[i + 1], parts[i + 2]
                sides.append((label.text.rstrip(":"), quote, side))
                i += 2
            out.append(Block("differ", DIFFER, sides=tuple(sides)))
        elif part.own:
            out.append(Block(part.kind, part.text))
        else:
            kind = "list" if part.bullet else "quotes"
            if out and out[-1].kind == kind and out[-1].parts:
                out[-1] = Block(kind, parts=(*out[-1].parts, part))
            else:
                out.append(Block(kind, parts=(part,)))
        i += 1
    return out


def cited_conflicts(
    citations: Sequence[Citation], titles: Mapping[str, str]
) -> tuple[list[Conflict], list[AnswerPart]]:
    """Differing figures among the sentences an answer's citations highlight (a written
    answer's, whose own sentences are not quotes), and the parts that show them verbatim."""
    stated = [
        Stated(c.number, c.doc_id, normalise(c.text[a - c.start : b - c.start]), a, b,
               c.text[: a - c.start], c.year)
        for c in citations for a, b in c.highlights
    ]
    conflicts = find_conflicts(stated)
    parts: list[AnswerPart] = []
    if conflicts:
        parts.append(AnswerPart("lead", DIFFER))
        by_number = {c.number: c for c in citations}
        for conflict in conflicts:
            for side in conflict.sides:
                cited = by_number[side.number]
                entry = entry_of(cited)
                label = source_label(cited, titles) + (f", in its entry {entry}" if entry else "")
                when = f", a figure as of {side.as_of}" if side.as_of else ""
                parts.append(AnswerPart("lead", f"{label}{when}:"))
                parts.append(AnswerPart("quote", side.quote, (side.number,), bullet=True))
    return conflicts, parts
