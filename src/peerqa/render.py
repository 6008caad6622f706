"""How answers and sources look: HTML for the chat, Markdown for the API and downloads, plain
text for the terminal. Every string from a document passes through ``html_text`` or ``md_text``
here, so document text can never act as markup. The quoted sentences are marked by one splicer,
``highlight_runs``, whatever the format.
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .text import MARKER, year_label
from .types import Answer, Citation, Document, Passage

if TYPE_CHECKING:
    from .indexing import IndexInfo

CONTEXT_CHARS = 280
"""Characters of document text shown before and after a quoted passage."""
BOLD, RESET = "\033[1m", "\033[0m"

# -- escaping ---------------------------------------------------------------------------------

# One pass over the text: HTML's five specials, plus every character that Markdown, GFM autolinks
# or LaTeX would act on, as numeric entities. Entities are literal text to a Markdown parser, so
# document text can never become a tag, a link or an emphasis, whatever Gradio does with it.
_HTML_TABLE = str.maketrans(
    {c: f"&#{ord(c)};" for c in "&<>\"'`*_[](){}#|~$\\!:=@^"}
)
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


def _section(section: str) -> str:
    return " › ".join(p.strip() for p in section.split(" > ") if p.strip()) or "untitled section"


# -- passages in context ------------------------------------------------------------------------


def _merged(spans: Sequence[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Highlight spans clipped to [start, end], sorted and merged."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in spans if min(b, end) > max(a, start))
    out: list[tuple[int, int]] = []
    for a, b in clipped:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def highlight_runs(
    start: int, end: int, highlights: Sequence[tuple[int, int]]
) -> list[tuple[int, int, bool]]:
    """The passage document[start:end] cut into (from, to, highlighted) runs, offsets relative
    to the passage; the highlight spans (document offsets) are clipped and merged first."""
    runs: list[tuple[int, int, bool]] = []
    pos = 0
    for a, b in _merged(highlights, start, end):
        if a - start > pos:
            runs.append((pos, a - start, False))
        runs.append((a - start, b - start, True))
        pos = b - start
    if end - start > pos or not runs:
        runs.append((pos, end - start, False))
    return runs


def _context(doc_text: str, start: int, end: int, chars: int) -> tuple[str, str]:
    """About ``chars`` characters of text either side of [start, end], cut at word boundaries."""
    lo = max(0, start - chars)
    before = doc_text[lo:start]
    if lo > 0:
        cut = re.search(r"\s", before)
        before = "…" + (before[cut.end():] if cut else before)
    hi = min(len(doc_text), end + chars)
    after = doc_text[end:hi]
    if hi < len(doc_text):
        cut = re.search(r"\s\S*$", after)
        after = (after[: cut.start()] if cut else after) + "…"
    return before, after


def passage_html(
    text: str,
    start: int,
    end: int,
    highlights: Sequence[tuple[int, int]],
    document: Document | None,
    context_chars: int = CONTEXT_CHARS,
) -> str:
    """A passage inside its surrounding document text, the quoted sentences in <mark>."""
    in_document = document is not None and document.text[start:end] == text
    before = after = ""
    if in_document:
        assert document is not None
        before, after = _context(document.text, start, end, context_chars)
    parts = [
        f'<mark class="pq-hl">{html_text(text[a:b])}</mark>' if marked else html_text(text[a:b])
        for a, b, marked in highlight_runs(start, end, highlights)
    ]
    return (
        '<div class="pq-passage">'
        + (f'<span class="pq-ctx">{html_text(before)}</span>' if before else "")
        + f'<span class="pq-quote">{"".join(parts)}</span>'
        + (f'<span class="pq-ctx">{html_text(after)}</span>' if after else "")
        + "</div>"
    )


def _preview(text: str, start: int, highlights: Sequence[tuple[int, int]], limit: int = 180) -> str:
    spans = _merged(highlights, start, start + len(text))
    quoted = " … ".join(text[a - start : b - start].strip() for a, b in spans) or text
    quoted = " ".join(quoted.split())
    return quoted if len(quoted) <= limit else quoted[: limit - 1].rsplit(" ", 1)[0] + " …"


def _source_card(
    anchor: str,
    label: str,
    item: Citation | Passage,
    highlights: Sequence[tuple[int, int]],
    document: Document | None,
) -> str:
    title = html_text(item.title)
    year = html_text(year_label(item.year))
    section = html_text(_section(item.section))
    preview = html_text(_preview(item.text, item.start, highlights))
    doc_name = html_text(document.short_title if document and document.short_title else item.doc_id)
    return (
        f'<details class="pq-src" id="{anchor}">'
        f'<summary><span class="pq-num">{label}</span> '
        f'<span class="pq-title">{title}</span> <span class="pq-year">({year})</span>'
        f'<span class="pq-section">{section}</span>'
        f'<span class="pq-preview">“{preview}”</span></summary>'
        + passage_html(item.text, item.start, item.end, highlights, document)
        + f'<div class="pq-loc">{doc_name} · characters {item.start}–{item.end}</div>'
        "</details>"
    )


# -- answers -------------------------------------------------------------------------------------


def _answer_text_html(text: str, anchors: Mapping[int, str]) -> str:
    out, pos = [], 0
    for m in MARKER.finditer(text):
        out.append(html_text(text[pos : m.start()]))
        n = int(m.group(1))
        if n in anchors:
            out.append(
                f'<a class="pq-marker" href="#{anchors[n]}" title="Show source {n}">'
                f"&#91;{n}&#93;</a>"
            )
        else:
            out.append(html_text(m.group(0)))
        pos = m.end()
    out.append(html_text(text[pos:]))
    return "".join(out)


def answer_html(answer: Answer, documents: Mapping[str, Document], turn: str) -> str:
    """An answer for the chat: text with clickable [n] markers, then its sources in context."""
    anchors = {c.number: f"pq-{turn}-s{c.number}" for c in answer.citations}
    parts = [f'<div class="pq-answer" id="pq-{turn}">']
    text_class = "pq-text pq-abstain" if answer.abstained else "pq-text"
    parts.append(f'<p class="{text_class}">{_answer_text_html(answer.text, anchors)}</p>')
    for notice in answer.notices:
        parts.append(f'<p class="pq-notice">Note: {html_text(notice)}</p>')
    if answer.citations:
        parts.append('<div class="pq-sources"><h4>Sources</h4>')
        parts.extend(
            _source_card(anchors[c.number], f"&#91;{c.number}&#93;", c,
                         c.highlights or ((c.start, c.end),), documents.get(c.doc_id))
            for c in answer.citations
        )
        parts.append("</div>")
    if answer.abstained and answer.passages:
        parts.append(
            '<div class="pq-closest"><h4>Closest material</h4>'
            '<p class="pq-note">The nearest passages in the documents. They do not answer the '
            "question; they show what the documents do say nearby.</p>"
        )
        parts.extend(
            _source_card(f"pq-{turn}-c{i}", f"&#40;{i}&#41;", p, (), documents.get(p.doc_id))
            for i, p in enumerate(answer.passages, 1)
        )
        parts.append("</div>")
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
        f"{md_text(item.doc_id)}, characters {item.start}–{item.end}",
        "",
        _quote_md(item.text, item.start, highlights),
        "",
    ]


def answer_markdown(answer: Answer, question: str | None = None) -> str:
    """An answer as Markdown: the text with [n] markers, then each numbered source quoted."""
    out = []
    if question:
        out += [f"**Question:** {md_text(' '.join(question.split()))}", ""]
    out += [_answer_text_md(answer.text, {c.number for c in answer.citations}), ""]
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
        f"      [{item.doc_id}, characters {item.start}–{item.end}]",
    ]


def format_answer(answer: Answer, color: bool = False) -> str:
    """An answer for a terminal: the text, then each numbered source with its quoted passage."""
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
        f"   [{p.doc_id}, characters {p.start}–{p.end}]",
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
                     "storing": "Writing index"}.get(stage, stage)
            unit = "sentence" if stage == "sentences" else "chunk"
            bar = self.bars[stage] = tqdm(total=total, desc=label, unit=unit, file=sys.stderr)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
