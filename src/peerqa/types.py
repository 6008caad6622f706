"""The values peerqa passes around: frozen, with named fields."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Document:
    """One stored document: its verbatim text and its metadata."""

    doc_id: str
    title: str
    text: str
    path: str
    sha256: str
    short_title: str = ""
    authors: tuple[str, ...] = ()
    organisation: str = ""
    year: int | None = None
    date_note: str = ""
    kind: str = ""
    url: str | None = None
    keywords: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def year_label(self) -> str:
        """The year for a reference line: the year, or 'n.d.' for an undated document."""
        return str(self.year) if self.year is not None else "n.d."


@dataclass(frozen=True, slots=True)
class Chunk:
    """A bounded, section-aware span of one document: ``document.text[start:end] == text``."""

    chunk_id: str
    doc_id: str
    section: str
    start: int
    end: int
    text: str
    n_words: int
    n_tokens: int


@dataclass(frozen=True, slots=True)
class Passage:
    """A chunk returned by a search, with its document's title and a fused relevance score."""

    doc_id: str
    title: str
    section: str
    text: str
    start: int
    end: int
    score: float
    chunk_id: str = ""
    year: int | None = None


@dataclass(frozen=True, slots=True)
class Citation:
    """A numbered source of an answer: a retrieved passage, quoted verbatim.

    ``text`` is the passage exactly as stored (``document.text[start:end]``); ``highlights``
    are the (start, end) document offsets of the sentences the answer quotes from it.
    """

    number: int
    doc_id: str
    title: str
    section: str
    text: str
    start: int
    end: int
    score: float
    year: int | None = None
    chunk_id: str = ""
    highlights: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(
        cls, passage: Passage, number: int, highlights: tuple[tuple[int, int], ...] = ()
    ) -> Citation:
        """Cite a retrieved passage as source ``number``, quoting its text as stored."""
        p = passage
        return cls(
            number=number, doc_id=p.doc_id, title=p.title, section=p.section, text=p.text,
            start=p.start, end=p.end, score=p.score, year=p.year, chunk_id=p.chunk_id,
            highlights=highlights,
        )


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer: sentences with [n] markers, the citations they resolve to, and how it was made."""

    question: str
    text: str
    citations: list[Citation]
    abstained: bool
    passages: list[Passage] = field(default_factory=list)
    mode: str = "extractive"
    notices: list[str] = field(default_factory=list)
    checks: dict[str, object] = field(default_factory=dict)
    retrieval_query: str = ""

    @property
    def closest(self) -> list[Passage]:
        """The nearest passages shown when the answer abstains (empty otherwise)."""
        return list(self.passages) if self.abstained else []
