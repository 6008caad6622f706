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
