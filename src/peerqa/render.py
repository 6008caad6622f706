"""How answers and sources look: HTML for the chat, Markdown for the API and downloads, plain
text for the terminal. Every string from a document passes through ``html_text`` or ``md_text``
(``markup.py``), so document text can never act as markup. The quoted sentences are marked by one
splicer, ``highlight_runs``, whatever the format. The chat's evidence (coverage banner, conflicts
box, source cards) is ``cards.py``'s.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .answer.shape import Block, blocks
from .cards import (
    COVERAGE,
    closest_html,
    conflicts_html,
    coverage_banner,
    sources_html,
    text_after_banner,
)
from .errors import BackendError, CorpusError, InputError, PeerQAError, StoreError
from .markup import highlight_runs, html_text, md_text
from .markup import section_label as _section
from .text import MARKER, year_label
from .types import Answer, AnswerPart, Citation, Document, Passage

if TYPE_CHECKING:
    from .indexing import IndexInfo

BOLD, RESET = "\033[1m", "\033[0m"
TURN_BREAK = "\n\n---\n\n"
"""Between the turns of a conversation in its Markdown export."""
BANNERS = {coverage: f"{title}." for coverage, (title, _) in COVERAGE.items()}
"""How an answer announces its coverage, in every face (the app's banner uses the same words)."""


def location(item: Passage) -> str:
    """Where a passage is: its page in a paged source (PDF), then its character offsets."""
    page = f"page {item.page}, " if item.page is not None else ""
    return f"{page}characters {item.start}–{item.end}"


# -- answers -------------------------------------------------------------------------------------


def _answer_text_html(text: str, anchors: Mapping[int, str]) -> str:
    out, pos = [], 0
    for m in MARKER.finditer(text):
        out.append(html_text(text[pos : m.start()]))
        n = int(m.group(1))
        if n in anchors:
            out.append(
                f'<a class="pq-marker" href="#{anchors[n]}" title="Show source {n}">'
                f'&#91;<span class="pq-sr">source </span>{n}&#93;</a>'
            )
        else:
            out.append(html_text(m.group(0)))
        pos = m.end()
    out.append(html_text(text[pos:]))
    return "".join(out)


def _block_html(
    b: Block, answer: Answer, documents: Mapping[str, Document], anchors: Mapping[int, str]
) -> str:
    """One block of an answer: peerqa's own line, quotes, or where the documents differ.

    peerqa's words are bold (a lead) or plain (a note); quotes are block quotes or list items.
    What is missing is in the coverage banner above, so a partial answer's banner block adds
    nothing; a not-covered answer's says so in words.
    """
    def said(part: AnswerPart) -> str:
        return _answer_text_html(part.marked, anchors)

    if b.kind == "banner":
        if answer.coverage != "not_covered":
            return ""
        return f'<p class="pq-text pq-abstain">{html_text(b.text)}</p>'
    if b.kind in ("lead", "note"):
        inner = f"<strong>{html_text(b.text)}</strong>" if b.kind == "lead" else html_text(b.text)
        return f'<p class="pq-{b.kind}">{inner}</p>'
    if b.kind == "quotes":
        return f'<blockquote class="pq-said">{" ".join(said(p) for p in b.parts)}</blockquote>'
    if b.kind == "list":
        return '<ul class="pq-said">' + "".join(f"<li>{said(p)}</li>" for p in b.parts) + "</ul>"
    # "differ": each side's figure, date, source and quote, in the box the app styles.
    return conflicts_html(answer, documents, anchors, shown="")


def answer_html(answer: Answer, documents: Mapping[str, Document], turn: str) -> str:
    """An answer for the chat: its coverage banner (what the documents do not give), peerqa's
    own lines and the quotes with clickable [n] markers, where the documents differ, then its
    sources (or the closest material) in context."""
    anchors = {c.number: f"pq-{turn}-s{c.number}" for c in answer.citations}
    parts = [f'<div class="pq-answer" id="pq-{turn}">', coverage_banner(answer)]
    if answer.parts:
        for b in blocks(answer):
            parts.append(_block_html(b, answer, documents, anchors))
    else:  # an answer made without parts: its text as it is
        text_class = "pq-text pq-abstain" if answer.abstained else "pq-text"
        parts.append(
            f'<p class="{text_class}">{_answer_text_html(text_after_banner(answer), anchors)}</p>'
        )
        parts.append(conflicts_html(answer, documents, anchors))
    for notice in answer.notices:
        parts.append(f'<p class="pq-notice">Note: {html_text(notice)}</p>')
    parts.append(sources_html(answer, documents, anchors))
    parts.append(closest_html(answer, documents, turn))
    parts.append("</div>")
    return "".join(parts)


def _quote_md(text: str, start: int, highlights: Sequence[tuple[int, int]]) -> str:
    """The passage as a Markdown block quote, the quoted sentences in bold."""
    runs = highlight_runs(start, start + len(text), highlights)
    lines, offset = [], 0
    for raw in text.splitlines(keepends=True) or [""]:
        end = offset + len(raw.rstrip("\r\n"))
        out = []
        for a, b, marked in runs:
            a, b = max(a, offset), min(b, end)
            if b <= a:
                continue
            seg = text[a:b]
            if not marked:
                out.append(md_text(seg))
                continue
            lead = seg[: len(seg) - len(seg.lstrip())]
            trail = seg[len(seg.rstrip()) :]
            core = seg.strip()
            out.append(lead + (f"**{md_text(core)}**" if core else "") + trail)
        rendered = "".join(out).rstrip()
        lines.append(f"> {rendered}" if rendered else ">")
        offset += len(raw)
    return "\n".join(lines)


def _answer_text_md(text: str, numbers: set[int]) -> str:
    out, pos = [], 0
    for m in MARKER.finditer(text):
        out.append(md_text(text[pos : m.start()]))
        following = text[m.end() : m.end() + 1]
        # A bare [n] is never a link in Markdown unless "(", "[" or ":" follows it.
        keep = int(m.group(1)) in numbers and following not in ("(", "[", ":")
        out.append(m.group(0) if keep else md_text(m.group(0)))
        pos = m.end()
    out.append(md_text(text[pos:]))
    return "".join(out)


def _source_md(
    label: str, item: Citation | Passage, highlights: Sequence[tuple[int, int]]
) -> list[str]:
    return [
        f"**{label}** {md_text(item.title)} ({year_label(item.year)}) — "
        f"{md_text(_section(item.section))}  ",
        f"{md_text(item.doc_id)}, {location(item)}",
        "",
        _quote_md(item.text, item.start, highlights),
        "",
    ]


def _block_md(b: Block, coverage: str, numbers: set[int]) -> str:
    def said(part: AnswerPart) -> str:
        return "“" + _answer_text_md(part.text, numbers) + "”" + _answer_text_md(
            "".join(f" [{n}]" for n in part.numbers), numbers)

    if b.kind == "banner":
        return f"**{BANNERS[coverage]}** {md_text(b.text)}"
    if b.kind == "lead":
        return f"**{md_text(b.text)}**"
    if b.kind == "note":
        return f"*{md_text(b.text)}*"
    if b.kind == "quotes":
        return "> " + " ".join(said(p) for p in b.parts)
    if b.kind == "list":
        return "\n".join(f"- {said(p)}" for p in b.parts)
    return f"**{md_text(b.text)}**\n\n" + "\n".join(
        f"- **{md_text(label)}**: {md_text(side.value)} — {said(part)}"
        for label, part, side in b.sides)


def answer_markdown(answer: Answer, question: str | None = None) -> str:
    """An answer as Markdown: a banner when it is partial or not covered, peerqa's lines in
    bold, the quotes with their [n] markers, then each numbered source quoted."""
    out = []
    if question:
        out += [f"**Question:** {md_text(' '.join(question.split()))}", ""]
    numbers = {c.number for c in answer.citations}
    if answer.parts:
        for b in blocks(answer):
            out += [_block_md(b, answer.coverage, numbers), ""]
    else:
        out += [_answer_text_md(answer.text, numbers), ""]
    for notice in answer.notices:
        out += [f"*Note: {md_text(notice)}*", ""]
    if answer.citations:
        out += ["**Sources**", ""]
        for c in answer.citations:
            out += _source_md(f"[{c.number}]", c, c.highlights)
    if answer.abstained and answer.passages:
        out += ["**Closest material** (not an answer)", ""]
        for i, p in enumerate(answer.passages, 1):
            out += _source_md(f"({i})", p, ())
    return "\n".join(out).rstrip() + "\n"


def about_html(documents: Sequence[Document], info: IndexInfo | None = None) -> str:
    """The "About these documents" panel: each document's metadata, escaped."""
    rows = []
    for d in documents:
        meta = [m for m in (d.organisation, d.kind) if m]
        date = d.year_label + (f" ({d.date_note})" if d.date_note else "")
        rows.append(
            '<div class="pq-doc">'
            f'<div class="pq-doc-title">{html_text(d.title)}</div>'
            f'<div class="pq-doc-meta">{html_text(" · ".join([date, *meta]))}</div>'
            + (f'<div class="pq-doc-meta">{html_text(", ".join(d.authors))}</div>' if d.authors
               else "")
            + f'<div class="pq-doc-meta">{len(d.text.split()):,} words · id {html_text(d.doc_id)}'
            "</div></div>"
        )
    size = (
        f" They are indexed as {info.n_chunks} passages." if info is not None else ""
    )
    return (
        '<div class="pq-about">'
        f"<p>Every answer is built from sentences quoted word for word from these "
        f"{len(documents)} documents, each followed by the number of its source.{size} "
        "Nothing else is searched and nothing leaves this computer.</p>"
        + "".join(rows)
        + "</div>"
    )


# -- the terminal --------------------------------------------------------------------------------


def _wrap(text: str, indent: str = "") -> str:
    return "\n".join(
        textwrap.fill(line, width=100, initial_indent=indent, subsequent_indent=indent)
        for line in text.splitlines() if line.strip()
    )


def _section_label(section: str) -> str:
    return section or "untitled section"


def _source_lines(label: str, item: Citation | Passage, quote: str) -> list[str]:
    return [
        f"  {label} {item.title} ({item.year_label}) — {_section_label(item.section)}",
        _wrap(f'"{quote}"', "      "),
        f"      [{item.doc_id}, {location(item)}]",
    ]


def _block_lines(b: Block, coverage: str, color: bool) -> list[str]:
    def said(part: AnswerPart) -> str:
        return f"“{part.text}”" + "".join(f" [{n}]" for n in part.numbers)

    def strong(text: str) -> str:
        return f"{BOLD}{text}{RESET}" if color else text

    if b.kind == "banner":
        return [strong(BANNERS[coverage]) + " " + _wrap(b.text)]
    if b.kind in ("lead", "note"):
        return [strong(b.text) if b.kind == "lead" else _wrap(b.text)]
    if b.kind == "quotes":
        return [_wrap(" ".join(said(p) for p in b.parts), "    ")]
    if b.kind == "list":
        return [_wrap(f"- {said(p)}", "    ") for p in b.parts]
    return [strong(b.text)] + [_wrap(f"- {label}: {side.value} — {said(part)}", "    ")
                               for label, part, side in b.sides]


def format_answer(answer: Answer, color: bool = False) -> str:
    """An answer for a terminal: a banner when it is partial or not covered, peerqa's lines and
    the quotes, then each numbered source with its quoted passage."""
    if answer.parts:
        out = [line for b in blocks(answer) for line in _block_lines(b, answer.coverage, color)]
        out.append("")
    else:
        out = [_wrap(answer.text), ""]
    if answer.abstained:
        if answer.passages:
            out.append("Closest material (not an answer):")
            for i, p in enumerate(answer.passages, 1):
                out += _source_lines(f"({i})", p, p.text)
        return "\n".join(out)
    out.append("Sources:")
    for c in answer.citations:
        quote = c.text
        if color and c.highlights:
            quote = "".join(
                f"{BOLD}{c.text[a:b]}{RESET}" if marked else c.text[a:b]
                for a, b, marked in highlight_runs(c.start, c.end, c.highlights)
            )
        out += _source_lines(f"[{c.number}]", c, quote)
    for notice in answer.notices:
        out.append(f"Note: {notice}")
    return "\n".join(out)


def format_passage(rank: int, p: Passage) -> str:
    """One search result for a terminal."""
    return "\n".join([
        f"{rank}. {p.title} ({p.year_label}) — {_section_label(p.section)}  [score {p.score:.4f}]",
        _wrap(p.text, "   "),
        f"   [{p.doc_id}, {location(p)}]",
        "",
    ])


class ProgressBar:
    """A tqdm bar on stderr per indexing stage; ``enabled=False`` keeps it quiet."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            self.close()  # one bar at a time: the stage before is finished
            label = {"embedding": "Embedding chunks", "sentences": "Embedding sentences",
                     "tokens": "Embedding chunk words", "words": "Embedding the vocabulary",
                     "storing": "Writing index"}.get(stage, stage)
            unit = {"sentences": "sentence", "words": "word"}.get(stage, "chunk")
            bar = self.bars[stage] = tqdm(total=total, desc=label, unit=unit, file=sys.stderr)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


# -- a conversation and its failures ------------------------------------------------------------


def conversation_markdown(export: str, answer: Answer, question: str) -> str:
    """The conversation so far as Markdown, this turn with its sources added after the others."""
    turn = answer_markdown(answer, question)
    return export.rstrip() + TURN_BREAK + turn if export.strip() else turn


def friendly_error(error: BaseException) -> str:
    """What a practitioner is told when a question cannot be answered: what went wrong in
    words, never a server path or a setting (the log keeps those)."""
    if isinstance(error, InputError):
        return f"I could not use that question: {_SERVER_PATH.sub('…', str(error))}."
    what = next((words for kind, words in _FAILURES if isinstance(error, kind)), "")
    return (
        f"Something went wrong while answering{f' ({what})' if what else ''}. Please try "
        "again; if it keeps happening, tell whoever runs this app."
    )


_SERVER_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@~+-]+){2,}[\\/]?")
_FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (BackendError, "the language model service did not answer as expected"),
    (StoreError, "the document index could not be read"),
    (CorpusError, "the documents could not be read"),
    (PeerQAError, "the app is not set up correctly"),
)
