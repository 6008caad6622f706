"""The values peerqa passes around: frozen, with named fields."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict, dataclass, field, fields
from typing import Any

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
    page_starts: tuple[int, ...] = ()
    """For a paged source (PDF): the offset in ``text`` where each page begins, page 1 first."""

    @property
    def year_label(self) -> str:
        """The year for a reference line: the year, or 'n.d.' for an undated document."""
        return year_label(self.year)

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding character ``offset`` of a paged source; None if unpaged."""
        if not self.page_starts:
            return None
        return max(1, bisect_right(self.page_starts, offset))


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
    """A chunk returned by a search, with its document's title and how relevant it is.

    ``score`` is the ranking's own number (comparable within one search only); ``relevance``
    is a probability-like 0..1 figure that means the same across questions (None where no
    calibration applies). ``page`` is the 1-based page of a paged source (PDF), where known.
    """

    doc_id: str
    title: str
    section: str
    text: str
    start: int
    end: int
    score: float
    chunk_id: str = ""
    year: int | None = None
    relevance: float | None = None
    page: int | None = None

    @property
    def year_label(self) -> str:
        return year_label(self.year)

    def to_dict(self) -> dict[str, Any]:
        """The passage as JSON-ready data, the fields a program cites by first."""
        data: dict[str, Any] = _plain(_ordered(asdict(self), PASSAGE_KEYS))
        return data


PASSAGE_KEYS = ("doc_id", "title", "section", "year", "page", "text", "start", "end",
                "relevance")
"""The fields of a passage or citation in structured output, in order; the rest follow."""


def _ordered(data: dict[str, Any], first: tuple[str, ...]) -> dict[str, Any]:
    """``data`` with the ``first`` keys leading, in that order, and every other key after."""
    return {**{k: data[k] for k in first if k in data}, **data}


def _plain(value: Any) -> Any:
    """Tuples as lists, all the way down: what JSON gives back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


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
            end=p.end, score=p.score, chunk_id=p.chunk_id, year=p.year, relevance=p.relevance,
            page=p.page, number=number, highlights=highlights,
        )

    def to_dict(self) -> dict[str, Any]:
        """The citation as JSON-ready data: its number, then the passage's fields."""
        data: dict[str, Any] = _plain(_ordered(asdict(self), ("number", *PASSAGE_KEYS)))
        return data


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


COVERAGES = ("answered", "partial", "not_covered")
"""What an answer says of the documents: they answer it, answer part of it, or do not cover it."""


@dataclass(frozen=True, slots=True)
class AnswerPart:
    """One block of an answer, in order: a verbatim quote, or words peerqa writes itself.

    ``kind`` is "quote" (a sentence quoted verbatim, ``numbers`` its [n] markers), or one of
    peerqa's own: "lead" (an attribution line such as "Iriss Insight (2016) says:", or the line
    naming what is missing), "note"; or "written", a chat model's verified sentence. Faces show
    peerqa's own words visibly apart from quotes.
    """

    kind: str
    text: str
    numbers: tuple[int, ...] = ()
    bullet: bool = False

    @property
    def own(self) -> bool:
        """Whether peerqa wrote this part itself (not a quote, not a claim to be judged)."""
        return self.kind in OWN_KINDS

    @property
    def marked(self) -> str:
        """The part's text followed by its [n] markers."""
        return self.text + "".join(f" [{n}]" for n in self.numbers)


OWN_KINDS = frozenset({"lead", "note"})
"""The kinds of part peerqa writes itself."""


@dataclass(frozen=True, slots=True)
class ConflictSide:
    """One side of a disagreement: a quoted sentence, its source and what it states."""

    number: int
    """The citation the quote belongs to."""
    quote: str
    start: int
    end: int
    """Document offsets of the quoted sentence."""
    value: str
    """The figure or finding as the sentence states it ("around 37")."""
    as_of: str = ""
    """The date the figure refers to, where the text gives one ("2012")."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """Cited evidence that differs on one point, each side with its quote and source."""

    point: str
    """What the sources differ on, in peerqa's words ("paid peer posts in Scotland")."""
    sides: tuple[ConflictSide, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer: sentences with [n] markers, the citations they resolve to, and how it was made.

    ``coverage`` is "answered", "partial" (``missing`` names what the documents do not give) or
    "not_covered" (then ``abstained`` is true and ``passages`` holds the closest material, never
    presented as an answer). ``parts`` is the text's structure where the answerer gives one.
    """

    question: str
    text: str
    citations: list[Citation]
    abstained: bool
    passages: list[Passage] = field(default_factory=list)
    mode: str = "extractive"
    notices: list[str] = field(default_factory=list)
    checks: AnswerChecks = field(default_factory=AnswerChecks)
    retrieval_query: str = ""
    coverage: str = ""
    missing: str = ""
    conflicts: list[Conflict] = field(default_factory=list)
    parts: list[AnswerPart] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.coverage:  # the default follows abstained
            object.__setattr__(self, "coverage", "not_covered" if self.abstained else "answered")
        if self.coverage not in COVERAGES:
            raise ValueError(f"coverage must be one of {COVERAGES}, not {self.coverage!r}")
        if (self.coverage == "not_covered") != self.abstained:
            raise ValueError("abstained must be true exactly when coverage is 'not_covered'")

    @property
    def closest(self) -> list[Passage]:
        """The nearest passages shown when the answer abstains (empty otherwise)."""
        return list(self.passages) if self.abstained else []

    def to_dict(self) -> dict[str, Any]:
        """The answer as JSON-ready data: text, coverage, missing, citations, conflicts, then
        every other field (for Markdown, ``peerqa.render.answer_markdown(answer)``)."""
        out: dict[str, Any] = {
            "text": self.text,
            "coverage": self.coverage,
            "missing": self.missing,
            "citations": [c.to_dict() for c in self.citations],
            "conflicts": [asdict(c) for c in self.conflicts],
        }
        plain = asdict(self)
        for f in fields(self):
            if f.name not in out:
                out[f.name] = plain[f.name]
        out["passages"] = [p.to_dict() for p in self.passages]
        data: dict[str, Any] = _plain(out)
        return data
