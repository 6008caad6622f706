"""Section-aware chunks with exact character offsets: pure functions of a document's text.

A document is read as paragraphs (runs of non-blank lines). Heading paragraphs set the
section path: Markdown ``#`` headings, or, in a document without them, short title-like lines
standing alone. Headings repeated three or more times are page furniture (running headers),
not sections. In an annotated bibliography each ``[Title](link)`` entry starts a unit of its
own. Paragraphs of one unit are packed into chunks of about ``target_words``, never more than
``max_words``; an oversized paragraph is cut at sentence boundaries. In a paged source (PDF) a
chunk never crosses a page break, so a passage's page is exact. Every chunk satisfies
``text[start:end] == chunk.text``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .text import (
    BULLET,
    HEADING_MARK,
    STATEMENT_WORDS,
    count_tokens,
    sentence_spans,
    word_count,
    word_spans,
)
from .types import Chunk, Document

CHUNKER_VERSION = "3"

# A bibliography entry: a linked title, possibly as a heading ("### [Title](#)").
_ENTRY = re.compile(r"^(?:" + HEADING_MARK.pattern + r")?\[([^\]]{3,})\]\([^)]*\)")
_LINK_ONLY = re.compile(r"^(?:" + HEADING_MARK.pattern + r")?\[[^\]]+\]\([^)]*\)\s*$")
_SKIP_SECTIONS = {"contents", "table of contents"}
# A line of a table of contents: its title, dot leaders or a tab, a page number.
_TOC_LINE = re.compile(r"(?:\.{3,}|…)\s*\d+\s*$|\t\s*\d+\s*$")


@dataclass(frozen=True, slots=True)
class Paragraph:
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    title: str


def paragraphs(text: str) -> list[Paragraph]:
    """Runs of non-blank lines, trimmed of surrounding white space, with exact offsets."""
    out: list[Paragraph] = []
    start: int | None = None
    end = 0
    pos = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped:
            if start is None:
                start = pos + (len(line) - len(line.lstrip()))
            end = pos + len(line.rstrip())
        elif start is not None:
            out.append(Paragraph(start, end, text[start:end]))
            start = None
        pos += len(line)
    if start is not None:
        out.append(Paragraph(start, end, text[start:end]))
    return out


def on_pages(doc: Document, paras: list[Paragraph]) -> list[Paragraph]:
    """Paragraphs cut where a page of a paged source begins (unchanged for other documents)."""
    if len(doc.page_starts) < 2:
        return paras
    out: list[Paragraph] = []
    for par in paras:
        cuts = [s for s in doc.page_starts if par.start < s < par.end]
        for a, b in zip([par.start, *cuts], [*cuts, par.end], strict=True):
            seg = doc.text[a:b]
            a, b = a + len(seg) - len(seg.lstrip()), b - (len(seg) - len(seg.rstrip()))
            if b > a:
                out.append(Paragraph(a, b, doc.text[a:b]))
    return out


def clean_heading(raw: str) -> str:
    """A heading's words without Markdown marks: '### **[Title](#)**' -> 'Title'."""
    title = re.sub("^" + HEADING_MARK.pattern, "", raw.strip())
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)
    title = re.sub(r"[*_`]+", "", title)
    return re.sub(r"\s+", " ", title).strip(" #")


def _plain_heading(par: Paragraph) -> Heading | None:
    line = par.text
    if "\n" in line or len(line) > 90 or BULLET.match(line):
        return None
    words = line.split()
    if not words or len(words) > 12 or line[-1] in ".,;:…" or not line[0].isupper():
        return None
    if re.search(r"\[[^\]]*\]\(", line):
        return None
    letters = [c for c in line if c.isalpha()]
    level = 1 if letters and all(c.isupper() for c in letters) and len(letters) > 3 else 2
    return Heading(level, clean_heading(line))


def _headings(paras: list[Paragraph]) -> dict[int, Heading | None]:
    """Which paragraphs are headings (None marks page furniture: neither heading nor content)."""
    markdown = any(HEADING_MARK.match(p.text) for p in paras)
    found: dict[int, Heading | None] = {}
    for i, p in enumerate(paras):
        if markdown:
            if HEADING_MARK.match(p.text) and "\n" not in p.text and not _ENTRY.match(p.text):
                level = len(p.text) - len(p.text.lstrip("#"))
                found[i] = Heading(level, clean_heading(p.text))
        else:
            heading = _plain_heading(p)
            if heading:
                found[i] = heading
    repeats = Counter(p.text for p in paras)
    for i, p in enumerate(paras):
        if repeats[p.text] >= 3 and len(p.text) < 100:
            found[i] = None
    return found


def _is_statement(heading: Heading) -> bool:
    return heading.title.endswith(".") and len(heading.title.split()) >= STATEMENT_WORDS


def _is_contents(par: Paragraph) -> bool:
    """A paragraph of a table of contents: every line ends in a page number."""
    lines = [line for line in par.text.splitlines() if line.strip()]
    return bool(lines) and all(_TOC_LINE.search(line) for line in lines)


def _is_entry(par: Paragraph) -> str | None:
    match = _ENTRY.match(par.text)
    return clean_heading(match.group(1)) if match else None


def _units(doc: Document) -> Iterator[tuple[str, list[Paragraph]]]:
    """(section path, paragraphs) for each section or bibliography entry, in document order."""
    paras = on_pages(doc, paragraphs(doc.text))
    heads = _headings(paras)
    path: list[Heading] = []
    title_skipped = False
    current: list[Paragraph] = []
    entry: str | None = None

    def section() -> str:
        names = [h.title for h in path]
        if entry:
            names.append(entry)
        # Two levels name a place precisely; deeper paths mostly repeat page-break artefacts.
        return " > ".join(names[-2:])

    for i, p in enumerate(paras):
        if i in heads:
            heading = heads[i]
            if heading is None:  # running header or footer: keep it inside the text, ignore it
                if current:
                    current.append(p)
                continue
            if current:
                yield section(), current
                current = []
            entry = None
            if not title_skipped and heading.level == 1 and not path:
                title_skipped = True  # the document's own title is not a section
                continue
            while path and path[-1].level >= heading.level:
                path.pop()
            path.append(heading)
            if _is_statement(heading):
                current.append(p)
            continue
        entry_title = _is_entry(p)
        if entry_title and entry and len(current) == 1 and _LINK_ONLY.match(current[0].text) \
                and entry.endswith(":"):
            # A title broken over two links ('The transition ...:' then 'A grounded theory ...').
            entry = f"{entry} {entry_title}"
            current.append(p)
            continue
        if entry_title:
            if current:
                yield section(), current
                current = []
            entry = entry_title
        current.append(p)
    if current:
        yield section(), current


def _split_long(doc: Document, par: Paragraph, target: int, max_words: int) -> list[Paragraph]:
    """Cut a paragraph longer than max_words into pieces at sentence (or word) boundaries."""
    pieces: list[Paragraph] = []
    sentences = sentence_spans(doc.text, par.start, par.end)
    spans: list[tuple[int, int]] = []
    for a, b in sentences:
        if word_count(doc.text[a:b]) <= max_words:
            spans.append((a, b))
            continue
        words = word_spans(doc.text, a, b)
        for k in range(0, len(words), target):
            group = words[k : k + target]
            spans.append((group[0].start(), group[-1].end()))
    cur_start: int | None = None
    cur_end = 0
    cur_words = 0
    for a, b in spans:
        n = word_count(doc.text[a:b])
        if cur_start is not None and cur_words + n > target:
            pieces.append(Paragraph(cur_start, cur_end, doc.text[cur_start:cur_end]))
            cur_start = None
        if cur_start is None:
            cur_start, cur_words = a, 0
        cur_end = b
        cur_words += n
    if cur_start is not None:
        pieces.append(Paragraph(cur_start, cur_end, doc.text[cur_start:cur_end]))
    return pieces


def chunk_document(doc: Document, *, target_words: int, max_words: int) -> list[Chunk]:
    """Cut one document into section-aware chunks of at most ``max_words`` words."""
    chunks: list[Chunk] = []
    for section, paras in _units(doc):
        if section.split(" > ")[-1].lower() in _SKIP_SECTIONS:
            # The table itself is not content; what follows it before the next heading is
            # (a brief's "Produced by ..." and "Please acknowledge ... as:" lines), and it
            # belongs to the place that holds the contents.
            paras = [p for p in paras if not _is_contents(p) and not HEADING_MARK.match(p.text)]
            section = " > ".join(section.split(" > ")[:-1])
            if not paras:
                continue
        pieces: list[Paragraph] = []
        for p in paras:
            if word_count(p.text) > max_words:
                pieces.extend(_split_long(doc, p, target_words, max_words))
            else:
                pieces.append(p)
        groups: list[list[Paragraph]] = []
        words = 0
        for p in pieces:
            n = word_count(p.text)
            fits = words + n <= target_words or (
                words < target_words // 2 and words + n <= max_words
            )
            if groups and fits and doc.page_at(p.start) == doc.page_at(groups[-1][0].start):
                groups[-1].append(p)
                words += n
            else:
                groups.append([p])
                words = n
        # A short tail joins the chunk before it when both fit.
        if len(groups) > 1:
            tail = sum(word_count(p.text) for p in groups[-1])
            prev = sum(word_count(p.text) for p in groups[-2])
            same_page = doc.page_at(groups[-1][0].start) == doc.page_at(groups[-2][0].start)
            if tail < 25 and tail + prev <= max_words and same_page:
                groups[-2].extend(groups.pop())
        for group in groups:
            start, end = group[0].start, group[-1].end
            text = doc.text[start:end]
            chunks.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}:{start}-{end}",
                    doc_id=doc.doc_id,
                    section=section,
                    start=start,
                    end=end,
                    text=text,
                    n_words=word_count(text),
                    n_tokens=count_tokens(text),
                )
            )
    return chunks


def chunk_corpus(
    documents: Sequence[Document], *, target_words: int, max_words: int
) -> list[Chunk]:
    """Chunks of every document, in corpus order."""
    return [
        c for d in documents
        for c in chunk_document(d, target_words=target_words, max_words=max_words)
    ]


def indexed_text(chunk: Chunk, title: str, keywords: Sequence[str] = ()) -> str:
    """What the retrievers see: title, the names people call the document by, and the section,
    in front of the chunk's text."""
    head = f"{title} ({', '.join(keywords)})" if keywords else title
    head = f"{head} — {chunk.section}" if chunk.section else head
    return f"{head}\n{chunk.text}"
