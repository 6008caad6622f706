"""Reranking what the fused retrieval found: candidate features, a fitted linear ranker, a query
adapter and a calibrated relevance, each read from its own section of ``Tuning``.

The fused score ranks the whole corpus well enough that the evidence is almost always in its top
50; which of those 50 comes first is what fails. ``Reranker`` rescores them with a linear model
over per-candidate features (the three retrievers' standardised scores, the best sentence's
lexical and vector match, the query's words in the title and section, a named document, position
and length, passage kinds against the question's wh-word, the neighbours' scores). Every number
of it is fitted on the gold set (``evaluation/fitting.py``): the ``adapter`` section moves query
vectors towards the passages that answer them, ``ranker`` holds the model's weights, and
``relevance`` turns the final score into a 0..1 figure that means the same across questions.
Without a section each part falls back to the plain fused ranking.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .store import SentenceVectors
from .text import BULLET, tokenize, words
from .types import Chunk, Document

DEPTH = 50
"""How many of the fused ranking's best chunks the ranker rescores."""

_REFERENCE_SECTIONS = {"references", "reference list", "bibliography"}
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
_DIGIT = re.compile(r"\d")
_BULLET_LINE = re.compile(r"(?m)^" + BULLET.pattern)
_CONCLUDING = re.compile(r"recommend|conclusion|implication|mean for|key (?:points|messages)", re.I)
# The question words whose answers sit in recognisable kinds of passage.
_CUES = {
    "who": {"who", "whom", "whose", "author", "authors", "wrote", "written", "commissioned"},
    "when": {"when", "year", "date", "dated", "published"},
    "count": {"many", "much", "number", "percentage", "proportion"},
    "why": {"why", "reason", "reasons"},
    "advice": {"recommend", "recommended", "recommendations", "should", "advice", "advise"},
    "list": {"what", "which", "list", "ways", "types", "kinds"},
}

FEATURES = (
    "fused", "bm25", "dense", "sentence", "log_rank", "second_sentence",
    "mentioned", "other_document", "cover_body", "cover_heading", "cover_section",
    "sentence_cover", "sentence_match", "position", "first_chunk", "length", "reference",
    "bullets", "neighbour", "document_best",
    "who_first", "who_years", "when_first", "when_years", "count_digits", "why_cover",
    "advice_concluding", "list_bullets",
)
"""The candidate features, in the order the ranker's weights follow."""


# --------------------------------------------------------------------------- corpus facts


class CorpusFacts:
    """What the features need to know of every chunk, computed once per open index."""

    def __init__(
        self,
        chunks: Sequence[Chunk],
        documents: Mapping[str, Document],
        indexed: Sequence[str],
        sentences: SentenceVectors | None,
    ) -> None:
        n = len(chunks)
        self.doc_of = np.array([c.doc_id for c in chunks])
        self.body = [frozenset(tokenize(c.text)) for c in chunks]
        self.heading = [frozenset(tokenize(t.split("\n", 1)[0])) for t in indexed]
        self.section = [frozenset(tokenize(c.section)) for c in chunks]
        position = np.zeros(n)
        first = np.zeros(n)
        seen: set[str] = set()
        for i, c in enumerate(chunks):
            doc = documents.get(c.doc_id)
            position[i] = c.start / max(len(doc.text), 1) if doc else 0.0
            first[i] = float(c.doc_id not in seen)
            seen.add(c.doc_id)
        self.position = position
        self.first = first
        self.length = np.array([c.n_words for c in chunks], dtype=np.float64) / 150
        last = [c.section.split(" > ")[-1].strip().lower() for c in chunks]
        self.reference = np.array([s in _REFERENCE_SECTIONS for s in last], dtype=np.float64)
        self.concluding = np.array([bool(_CONCLUDING.search(c.section)) for c in chunks],
                                   dtype=np.float64)
        self.bullets = np.array([min(len(_BULLET_LINE.findall(c.text)), 5) / 5 for c in chunks])
        self.years = np.array([bool(_YEAR.search(c.text)) for c in chunks], dtype=np.float64)
        self.digits = np.array([bool(_DIGIT.search(_YEAR.sub(" ", c.text))) for c in chunks],
                               dtype=np.float64)
        rows = np.arange(n)
        same_prev = np.r_[False, self.doc_of[1:] == self.doc_of[:-1]]
        same_next = np.r_[self.doc_of[:-1] == self.doc_of[1:], False]
        self.previous = np.where(same_prev, rows - 1, rows)
        self.next = np.where(same_next, rows + 1, rows)
        # Each chunk's sentences: their rows in the sentence arrays, and their stemmed words.
        self.sentence_rows: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n
        self.sentence_tokens: list[list[frozenset[str]]] = [[] for _ in range(n)]
        if sentences is not None and len(sentences.chunk):
            order = np.argsort(sentences.chunk, kind="stable")
            bounds = np.searchsorted(sentences.chunk[order], np.arange(n + 1))
            for i, c in enumerate(chunks):
                found = order[bounds[i] : bounds[i + 1]]
                self.sentence_rows[i] = found
                text = documents[c.doc_id].text if c.doc_id in documents else ""
                self.sentence_tokens[i] = [
                    frozenset(tokenize(text[int(a) : int(b)])) for a, b in sentences.spans[found]
                ]


# --------------------------------------------------------------------------- features


@dataclass(frozen=True, slots=True)
class Query:
    """What the features need of one query: its weighted words, its wh-cues, named documents."""

    weights: dict[str, float]
    cues: frozenset[str]
    mentioned: tuple[str, ...]

    def cover(self, tokens: frozenset[str]) -> float:
        """Weighted share of the query's words among ``tokens``."""
        total = sum(self.weights.values())
        return sum(w for t, w in self.weights.items() if t in tokens) / total if total else 0.0


def read_query(query: str, idf: Callable[[str], float], mentioned: Sequence[str]) -> Query:
    """The query's stemmed words weighted by ``idf``, its cue words and the documents it names."""
    said = set(words(query))
    cues = frozenset(name for name, cue in _CUES.items() if said & cue)
    return Query({t: idf(t) for t in tokenize(query)}, cues, tuple(mentioned))


def _standard(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    values = x[mask]
    spread = float(values.std()) if values.size else 0.0
    return (x - float(values.mean())) / spread if spread > 0 else np.zeros_like(x, dtype=float)


def candidate_features(
    facts: CorpusFacts,
    query: Query,
    candidates: np.ndarray,
    fused: np.ndarray,
    scores: Mapping[str, np.ndarray],
    sentence_sims: np.ndarray | None,
    mask: np.ndarray,
) -> np.ndarray:
    """One row of ``FEATURES`` per candidate (chunk indices, best fused first).

    ``fused`` is the fused score of every chunk (with the mention boost); ``scores`` holds each
    retriever's raw score of every chunk ("bm25", "dense", "sentence").
    """
    c = candidates
    n = len(c)
    f: dict[str, np.ndarray] = {"fused": fused[c]}
    for name in ("bm25", "dense", "sentence"):
        f[name] = _standard(scores[name], mask)[c]
    f["log_rank"] = np.log1p(np.arange(n, dtype=np.float64))
    second = np.zeros(n)
    best_cover = np.zeros(n)
    best_match = np.zeros(n)
    for j, i in enumerate(c):
        rows = facts.sentence_rows[i]
        covers = np.array([query.cover(t) for t in facts.sentence_tokens[i]])
        if sentence_sims is not None and len(rows):
            sims = sentence_sims[rows].astype(np.float64)
            top = np.sort(sims)[::-1]
            second[j] = top[1] - top[0] if len(top) > 1 else 0.0
            best_match[j] = float(np.max(0.5 * covers + 0.5 * np.maximum(sims, 0)))
        elif len(covers):
            best_match[j] = float(np.max(0.5 * covers))
        best_cover[j] = float(covers.max()) if len(covers) else 0.0
    f["second_sentence"] = second
    mentioned = np.isin(facts.doc_of[c], list(query.mentioned)) if query.mentioned \
        else np.zeros(n, bool)
    f["mentioned"] = mentioned.astype(np.float64)
    f["other_document"] = (~mentioned).astype(np.float64) * float(bool(query.mentioned))
    f["cover_body"] = np.array([query.cover(facts.body[i]) for i in c])
    f["cover_heading"] = np.array([query.cover(facts.heading[i]) for i in c])
    f["cover_section"] = np.array([query.cover(facts.section[i]) for i in c])
    f["sentence_cover"] = best_cover
    f["sentence_match"] = best_match
    f["position"] = facts.position[c]
    f["first_chunk"] = facts.first[c]
    f["length"] = facts.length[c]
    f["reference"] = facts.reference[c]
    f["bullets"] = facts.bullets[c]
    f["neighbour"] = np.maximum(fused[facts.previous[c]], fused[facts.next[c]]) - fused[c]
    best_of: dict[str, float] = {}
    for i in c:
        d = str(facts.doc_of[i])
        best_of[d] = max(best_of.get(d, -math.inf), float(fused[i]))
    leader = float(fused[c].max()) if n else 0.0
    f["document_best"] = np.array([best_of[str(facts.doc_of[i])] for i in c]) - leader
    cue = {name: float(name in query.cues) for name in _CUES}
    f["who_first"] = cue["who"] * facts.first[c]
    f["who_years"] = cue["who"] * facts.years[c]
    f["when_first"] = cue["when"] * facts.first[c]
    f["when_years"] = cue["when"] * facts.years[c]
    f["count_digits"] = cue["count"] * facts.digits[c]
    f["why_cover"] = cue["why"] * best_cover
    f["advice_concluding"] = cue["advice"] * facts.concluding[c]
    f["list_bullets"] = cue["list"] * facts.bullets[c]
    return np.stack([f[name] for name in FEATURES], axis=1) if n \
        else np.zeros((0, len(FEATURES)))


# --------------------------------------------------------------------------- fitted parts


@dataclass(frozen=True, slots=True)
class Ranker:
    """A linear model over standardised ``FEATURES``: score = ((x - mean) / scale) . weights."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> Ranker | None:
        """The ranker of a ``ranker`` tuning section (None when absent or fitted on other
        features: the fused order stands)."""
        if not section or list(section.get("features", [])) != list(FEATURES):
            return None
        return cls(*(np.asarray(section[k], dtype=np.float64) for k in ("mean", "scale",
                                                                         "weights")))

    def to_section(self) -> dict[str, Any]:
        return {"features": list(FEATURES), "mean": _rounded(self.mean),
                "scale": _rounded(self.scale), "weights": _rounded(self.weights)}

    def score(self, x: np.ndarray) -> np.ndarray:
        """Each candidate's score (higher ranks first)."""
        return np.asarray(((x - self.mean) / self.scale) @ self.weights, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Adapter:
    """A linear map of query vectors, W = I + U V^T (low rank), fitted on question->passage pairs;
    the adapted vector is renormalised."""

    u: np.ndarray
    v: np.ndarray

    @classmethod
    def from_section(cls, section: Mapping[str, Any], dim: int) -> Adapter | None:
        """The adapter of an ``adapter`` section (None when absent or for another vector size)."""
        if not section or int(section.get("dim", -1)) != dim:
            return None
        return cls(np.asarray(section["u"], dtype=np.float32),
                   np.asarray(section["v"], dtype=np.float32))

    def to_section(self) -> dict[str, Any]:
        return {"dim": int(self.u.shape[0]), "rank": int(self.u.shape[1]),
                "u": _rounded(self.u, 5), "v": _rounded(self.v, 5)}

    def apply(self, vector: np.ndarray) -> np.ndarray:
        """The adapted, unit-length query vector."""
        q = np.asarray(vector, dtype=np.float32)
        out = q + self.u @ (self.v.T @ q)
        norm = float(np.linalg.norm(out))
        return out / norm if norm > 0 else q


@dataclass(frozen=True, slots=True)
class Calibration:
    """relevance = sigmoid(a * score + b * (score - best score of the search) + c).

    With a + b >= 0 it never rises as a list goes down; the defaults calibrate the plain fused
    score (used when no ``relevance`` section was fitted for the ranking in use).
    """

    a: float
    b: float
    c: float
    on: str = "fused"

    @classmethod
    def from_section(cls, section: Mapping[str, Any], on: str) -> Calibration:
        """The section's calibration if it was fitted for scores of kind ``on``, else defaults."""
        if section and section.get("on") == on:
            return cls(float(section["a"]), float(section["b"]), float(section["c"]), on)
        return DEFAULT_CALIBRATION if on == "fused" else UNCALIBRATED

    def to_section(self) -> dict[str, Any]:
        return {"on": self.on, "a": round(self.a, 6), "b": round(self.b, 6), "c": round(self.c, 6)}

    def relevance(self, scores: np.ndarray) -> np.ndarray:
        """The 0..1 relevance of each score of one search (best first or not)."""
        if not len(scores):
            return np.zeros(0)
        z = self.a * scores + self.b * (scores - float(scores.max())) + self.c
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -40, 40))), dtype=np.float64)


DEFAULT_CALIBRATION = Calibration(0.55, 0.9, -2.0, "fused")
"""Relevance of the plain fused score: the fit of "holds gold evidence" on the untuned ranking's
top 10 of every gold item (evals/gold.jsonl, 422 items, 2026-12-01)."""

UNCALIBRATED = Calibration(0.0, 1.0, 0.0, "none")
"""A ranking nobody calibrated: 0.5 for its best passage, less below it (relative only)."""


def _rounded(x: np.ndarray, digits: int = 6) -> list[Any]:
    return np.round(np.asarray(x, dtype=np.float64), digits).tolist()  # type: ignore[no-any-return]
