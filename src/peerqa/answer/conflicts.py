"""Differing figures in the quoted evidence: "around 37 peer workers in paid employment" (a 2012
framework, quoted in 2021) against "around 80 paid peer support roles" (2016).

Two quoted sentences from different documents differ on one point when each states a figure
and the words that follow the figures share at least two specific words (beyond those almost
every passage uses) while the figures differ. Each side keeps its quote, its source and the date
its figure refers to: a year the sentence gives itself, else the date that heads its entry in an
annotated bibliography ("October 2012"), else its document's year.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..text import tokenize
from ..types import Conflict, ConflictSide

_WORD_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "hundred": 100,
}
_QUALIFIER = r"(?:(?:around|about|approximately|nearly|over|more than|some|up to|at least|" \
             r"fewer than|less than|almost|roughly|only|just|an estimated|estimated)\s+)?"
_FIGURE = re.compile(
    r"\b(" + _QUALIFIER + r"(\d[\d,]*(?:\.\d+)?%?|" + "|".join(_WORD_NUMBERS) + r"))"
    # What follows is looked at, not consumed: a year before a figure must not swallow it.
    r"(?=\s+((?:[\w'’-]+\s+){0,11}[\w'’-]+))",
    re.I,
)
_YEARLIKE = re.compile(r"^(?:19|20)\d\d$")
# Words too common to say two figures are about the same thing.
_GENERIC = frozenset(tokenize(
    "peer support worker workers mental health service services people person role roles "
    "number numbers total more many other new across within around among"
))
_OWN_YEAR = re.compile(
    r"\b(?:in|by|since|during|from|as of|at the end of|until|between)\s+(?:\w+\s+)?"
    r"((?:19|20)\d\d)\b", re.I)
_ENTRY_DATE = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December|Spring|Summer|Autumn|Winter)\s+((?:19|20)\d\d)\b")
_POINT_END = re.compile(r"[,;:.()]|\b(?:and|but|which|who|with|while|whereas)\b")


@dataclass(frozen=True, slots=True)
class Stated:
    """A quoted sentence as the conflict finder sees it."""

    number: int
    doc_id: str
    quote: str
    start: int
    end: int
    before: str
    """The passage's text before the sentence (where an entry's date would be)."""
    year: int | None


@dataclass(frozen=True, slots=True)
class _Figure:
    value: str
    amount: float
    about: frozenset[str]
    phrase: str


@functools.lru_cache(maxsize=1 << 13)
def _figures(text: str) -> tuple[_Figure, ...]:
    """The figures a sentence states, each with the words of what it counts. Kept: a
    question's quotes are read several times, and the corpus's sentences recur."""
    out = []
    for m in _FIGURE.finditer(text):
        raw = m.group(2).lower().rstrip("%").replace(",", "")
        if _YEARLIKE.match(raw) or m.group(2).endswith("%"):
            continue
        amount = float(_WORD_NUMBERS.get(raw, 0)) if raw in _WORD_NUMBERS else float(raw)
        tail = m.group(3)
        cut = _POINT_END.search(tail)
        phrase = (tail[: cut.start()] if cut else tail).strip()
        about = frozenset(tokenize(phrase)) - _GENERIC
        out.append(_Figure(m.group(1), amount, about, phrase))
    return tuple(out)


def amounts(text: str) -> set[float]:
    """The figures a sentence states (years and percentages aside), as numbers."""
    return {f.amount for f in _figures(text)}


def as_of(side: Stated) -> str:
    """The date a sentence's figure refers to, where the text gives one (a year)."""
    own = _OWN_YEAR.search(side.quote)
    if own:
        return own.group(1)
    entry = list(_ENTRY_DATE.finditer(side.before))
    if entry:
        return entry[-1].group(1)
    return str(side.year) if side.year is not None else ""


def find_conflicts(stated: Sequence[Stated]) -> list[Conflict]:
    """Points on which quotes from different documents give different figures."""
    conflicts: list[Conflict] = []
    used: set[int] = set()
    figures = [(s, f) for s in stated for f in _figures(s.quote)]
    for i, (s1, f1) in enumerate(figures):
        if i in used:
            continue
        sides = [(s1, f1)]
        for j in range(i + 1, len(figures)):
            s2, f2 = figures[j]
            if j in used or any(s2.doc_id == s.doc_id for s, _ in sides):
                continue
            if len(f1.about & f2.about) >= 2 and all(f2.amount != f.amount for _, f in sides):
                sides.append((s2, f2))
                used.add(j)
        if len(sides) < 2:
            continue
        used.add(i)
        conflicts.append(Conflict(
            point=f1.phrase,
            sides=tuple(
                ConflictSide(number=s.number, quote=s.quote, start=s.start, end=s.end,
                             value=f.value, as_of=as_of(s))
                for s, f in sides
            ),
        ))
    return conflicts
