"""The values peerqa passes around: frozen, with named fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from .text import year_label


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
        return year_label(self.year)


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

    @property
    def year_label(self) -> str:
        return year_label(self.year)


@dataclass(frozen=True, slots=True, kw_only=True)
class Citation(Passage):
    """A numbered source of an answer: a retrieved passage, quoted verbatim.

    ``text`` is the passage exactly as stored (``document.text[start:end]``); ``highlights``
    are the (start, end) document offsets of the sentences the answer quotes from it.
    """

    number: int
    highlights: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(
        cls, passage: Passage, number: int, highlights: tuple[tuple[int, int], ...] = ()
    ) -> Citation:
        """Cite a retrieved passage as source ``number``, quoting its text as stored."""
        p = passage
        return cls(
            doc_id=p.doc_id, title=p.title, section=p.section, text=p.text, start=p.start,
            end=p.end, score=p.score, chunk_id=p.chunk_id, year=p.year,
            number=number, highlights=highlights,
        )


@dataclass(frozen=True, slots=True)
class AnswerChecks:
    """What was checked of an answer, and what failed.

    The first four hold for every answer shown (the judge's view of its text and citations).
    The rest describe a written (OpenAI) answer: what was sent, what the verifier removed, and
    whether the offline answer stood in for it; they are None for an extractive answer.
    """

    markers_resolve: bool = True
    unresolved_markers: list[int] = field(default_factory=list)
    all_citations_used: bool = True
    unsupported_sentences: list[str] = field(default_factory=list)
    abstained: bool = False
    # A written answer: the request.
    model: str | None = None
    passages_sent: int | None = None
    passages_cut: int | None = None
    history_cut: int | None = None
    prompt_tokens_estimate: int | None = None
    # A written answer: what the verifier found in the model's sentences.
    generated_markers_resolve: bool | None = None
    removed_markers: list[int] | None = None
    uncited_generated: int | None = None
    unsupported_generated: int | None = None
    linked_generated: int | None = None
    dropped_sentences: int | None = None
    flagged_sentences: int | None = None
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    failed: list[str] | None = None
    # When the written answer could not be used.
    fallback: str | None = None  # "backend_error" or "unverified"
    backend_error: str | None = None  # the error's class name


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
    checks: AnswerChecks = field(default_factory=AnswerChecks)
    retrieval_query: str = ""

    @property
    def closest(self) -> list[Passage]:
        """The nearest passages shown when the answer abstains (empty otherwise)."""
        return list(self.passages) if self.abstained else []
