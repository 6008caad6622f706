"""Whether the chosen evidence answers the question: all of it, part of it, or none of it.

The check reads the question, not only its overlap with the passages:

1. **The answer type asked for** (a figure of money, a percentage or rate, a pay band, a count, a
   frequency, a length of time, a date) must be held by a chosen sentence that is itself about
   the question (its relevance at least ``focus``).
2. **The question's specific terms**, its content words beyond those almost every passage shares
   (peer, support, worker, mental health: idf below ``common_idf``), must be found in the chosen
   evidence, by their stem or by their meaning (a word of the evidence whose vector is at least
   ``meaning`` close); ``term_share`` of their weight must be.
3. **A document the question names** must itself hold evidence (relevance at least
   ``named_relevance``); in a comparison, each named document.
4. **Names the corpus never uses** ("Germany", "PVG") and evidence below ``min_relevance`` leave
   the question not covered.

``assess`` gathers what the thresholds are applied to (once per question); ``decide`` applies
them. The thresholds are the "answerability" section of the tuning, fitted on the gold set
(``evaluation/fitting.py``) with the trade-off between declining unanswerable questions and
wrongly declining answerable ones printed by ``peerqa tune``.

The measures that cost an encoder pass (how much of the question each unmatched term carries,
the heads of a figure's thing and whether a quote is near them) are ``Deferred``: worked out
when ``decide`` first reads them, which most verdicts never do (every term found, no figure
wanting), and then kept for every later threshold tried on the same assessment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..retrieval import Vocabulary
from ..text import tokenize, words
from .focus import heads as focus_heads
from .focus import near
from .gaps import ASKING_WORDS, FRAME, OF_A_THING, content_words, gap, join
from .meaning import Deferred, Meaning, literal_only, want
from .question import NUMBER_WORDS, QuestionTerms, asked_types, counts, holds_type, naming_stems

SECTION = "answerability"
MEANING_CAP = 0.6
"""Terms matched by meaning at least this closely are never measured for their focus."""
TERM_FLOOR = 0.5
"""Terms rarer than this (idf) are gathered; ``common_idf`` then chooses among them."""

# "fortnightly or monthly?": an either-or question names the answers it will accept.
_ALTERNATIVES = re.compile(r"\b([\w-]+),? or ([\w-]+)\s*\?\s*$", re.I)
_COMPOUNDS = re.compile(r"[A-Za-z0-9]+(?:[-'’][A-Za-z0-9]+)*")
_NAME = re.compile(r"(?<![\w'’-])[A-Z][\w'’&-]*")
_NUMBER_WORD = re.compile(NUMBER_WORDS, re.I)
# Capitalised words so common in English that their absence from the corpus says nothing.
_GENERAL_NAMES = {"i", "ok", "okay", "hr", "gp", "gps", "uk", "us", "usa", "it", "tv", "faq"}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The fitted thresholds of the check (the tuning's "answerability" section). Defaults
    are a reasonable operating point; the shipped tuning replaces them."""

    min_relevance: float = 0.2
    """The best quote less relevant than this: not covered."""
    term_share: float = 0.0
    """Share of the specific terms' weight the evidence must match (0: no such check)."""
    meaning: float = 0.55
    """Similarity at which an evidence word matches a term by meaning."""
    focus: float = 0.25
    """Relevance a quote holding the answer type asked for needs."""
    named_relevance: float = 0.0
    """Relevance a named document's own best quote needs."""
    common_idf: float = 1.0
    """Terms more common than this (idf) are not specific to the question."""
    count_noun: float = 0.0
    """1: a count must be of the thing asked ("how many people": a number of people)."""
    unknown_share: float = 1.01
    """Share of the specific terms' weight that words the corpus never uses (and nothing in the
    evidence means) may take before the answer is partial (above 1: never)."""
    focal: float = 0.08
    """An unmatched term carrying at least this much of the question's meaning makes the
    answer partial (above 1: never)."""
    focal_idf: float = 0.0
    """A word the corpus uses this often or more (idf below it) that the quotes lack does not
    make the answer partial on its own: "staff", "papers", "questions" are said in many ways, so
    their absence from the quotes says little (0: every such word counts)."""
    name_focus: float = 1.01
    """A name the corpus never uses carrying at least this much of the question's meaning
    leaves it not covered, not partial (above 1: never)."""
    named_quoted: float = 0.0
    """1: a question about one named document is partial when no quote comes from it."""

    @classmethod
    def of(cls, section: Mapping[str, Any]) -> Thresholds:
        """From a tuning section; absent values keep their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: float(v) for k, v in section.items() if k in known})

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Term:
    """A specific word of the question: its stem, its words as asked, its weight (idf)."""

    stem: str
    word: str
    idf: float
    known: bool
    """Whether the corpus uses the word at all."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """A chosen sentence as the check sees it."""

    doc_id: str
    text: str
    tokens: frozenset[str]
    relevance: float
    context: frozenset[str] = frozenset()
    """Tokens of where the sentence stands (its section, its entry's title): a question's
    "Japan" is matched by a sentence listed under a study "from the Japan Outreach Model"."""


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the check found for one question, before any threshold is applied."""

    asked: dict[str, str]
    """Answer types asked for, with the question's words for each ("money": "salary")."""
    typed: dict[str, float]
    """For each type asked, the best relevance of a chosen sentence holding it (0 if none)."""
    terms: tuple[Term, ...]
    matched: dict[str, float]
    """For each specific term: 1.0 when a chosen sentence uses it, else the closest meaning."""
    relevance: float
    """The best chosen sentence's relevance (0 when nothing can be quoted)."""
    focus: Mapping[str, float] = field(default_factory=dict)
    """For unmatched terms: how much of the question's meaning goes with each (see
    ``Meaning.focus``); a term absent here carries none worth measuring. Deferred."""
    unknown_names: tuple[str, ...] = ()
    counted: float = 0.0
    """The best relevance of a chosen sentence giving a number of the thing a "how many"
    question counts (0 if none, or if no count is asked)."""
    named: tuple[str, ...] = ()
    named_relevance: dict[str, float] = field(default_factory=dict)
    """For each named document, the best relevance of its own evidence (0 if none)."""
    named_quoted: tuple[str, ...] = ()
    """The named documents the chosen quotes come from."""
    titles: dict[str, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    """The alternatives of an either-or question ("weekly", "fortnightly")."""
    option_found: bool = True
    """Whether a chosen sentence names one of them."""
    passage_coverage: tuple[float, float] = (1.0, 1.0)
    """Weighted share of the question the best three passages cover: together, and the best
    one alone (the ``min_coverage`` setting's check)."""
    forms: tuple[str, ...] = ()
    """Words of the question the corpus never uses as asked but does in another form
    ("disclosing": "disclosure"); the missing line says the passages found lack them, not the
    documents."""
    heads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """For each figure of a thing asked for (pay, papers), the words naming the thing that
    carry most of the question ("salary" of "starting salary"; ``focus.heads``)."""
    near: Mapping[str, bool] = field(default_factory=dict)
    """For each of those, whether a chosen sentence is about the thing (``focus.near``).
    Deferred, as ``heads``."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The check's outcome: coverage, what is missing (a sentence), and about what the nearest
    evidence speaks (for the line that introduces it)."""

    coverage: str
    missing: str = ""
    topic: str = ""
    silent: tuple[str, ...] = ()
    """Named documents that hold no evidence on the question."""
    focus: tuple[str, ...] = ()
    """Words of what is missing that the nearest evidence must be about ("starting", "salary"
    of "the starting salary"): the figure asked for, the words the evidence lacks (never a
    name the corpus does not use, which nothing can be near)."""




def specific_terms(question: str, vocabulary: Vocabulary, *, common_idf: float) -> list[Term]:
    """The question's content words beyond those almost every passage shares, beyond words
    that frame the question ("how many", "exactly") and beyond the names of documents.

    A hyphenated word ("part-time", "de-escalation") is one term, keyed by its stems joined.
    """
    naming = naming_stems(question, vocabulary)
    out: dict[str, Term] = {}
    for word in _COMPOUNDS.findall(question):
        word = _POSSESSIVE.sub("", word)
        stems = [s for s in tokenize(word) if s not in FRAME and s not in naming]
        if not stems:
            continue
        key = "-".join(stems)
        if key in out:
            continue
        idf = max(vocabulary.idf(s) for s in stems)
        if idf < common_idf:
            continue
        unseen = vocabulary.idf("\x00")
        known = vocabulary.knows_word(word.lower()) or all(vocabulary.idf(s) < unseen
                                                            for s in stems)
        out[key] = Term(key, word, idf, known)
    return list(out.values())


def _used(term: Term, tokens: frozenset[str], text: str) -> bool:
    """Whether evidence uses a term: its stem, or for a compound the compound itself."""
    if "-" not in term.stem:
        return term.stem in tokens
    spaced = re.sub(r"[-\s]+", r"[-\\s]?", re.escape(term.word.lower()).replace("\\-", "-"))
    return bool(re.search(spaced, text.lower()))


_SPACES = re.compile(r"\s+")


class Phrases:
    """Whether the corpus uses a phrase: its documents' text, lower-cased, white space folded."""

    def __init__(self, texts: Sequence[str]) -> None:
        # As UTF-8 bytes: half the memory of a str holding any non-Latin-1 character (15 MB
        # at 100 times the bundled corpus), and one string is in another exactly when its
        # UTF-8 bytes are in the other's. White space is folded by one substitution rather
        # than a split into millions of words (the same characters count as white space).
        self._text = b" \n ".join(_SPACES.sub(" ", t.lower()).strip().encode("utf-8")
                                  for t in texts)

    def __contains__(self, phrase: object) -> bool:
        return (isinstance(phrase, str)
                and " ".join(phrase.lower().split()).encode("utf-8") in self._text)


# A name of several words: "Access to Work", "Sharing the Vision", "Recovery Star".
_TITLED = re.compile(
    r"(?<![\w'’-])[A-Z][\w’'&-]*(?:\s+(?:(?:of|to|the|for)\s+)*[A-Z][\w’'&-]*)+")
_SENTENCE_START = re.compile(r"(?:^|[.?!:;]\s+|\s-\s+)(?=\S)")
_POSSESSIVE = re.compile(r"['’]s\b")


def unknown_names(
    question: str, vocabulary: Vocabulary, phrases: Phrases | None = None
) -> list[str]:
    """Names in the question the corpus never uses: capitalised words and acronyms (not the
    question's first word) it never uses, and names of several words it never writes as such.

    A question about the Welsh strategy, PVG checks or the Recovery Star cannot be answered
    from documents that never name them, however close their other words come.
    """
    found = []
    starts = {m.end() for m in _SENTENCE_START.finditer(question)}
    for m in _NAME.finditer(question):
        if m.start() in starts:
            continue  # a sentence's first word is capitalised anyway
        word = _POSSESSIVE.sub("", m.group(0))  # "Highland's" is a name, "Highland"
        parts = [p for p in re.split(r"[-'’&]", word.lower()) if p]
        if word.lower() in _GENERAL_NAMES or not parts:
            continue
        if not all(vocabulary.knows_word(p) for p in parts):
            found.append(word)
    if phrases is not None:
        for m in _TITLED.finditer(question):
            name = _POSSESSIVE.sub("", m.group(0))
            if m.start() in starts:  # "Can peer workers ...": the first word is not a name
                name = name.split(maxsplit=1)[1] if " " in name else ""
                name = re.sub(r"^(?:(?:of|to|the|for)\s+)+", "", name)
            if len(name.split()) < 2 or name in phrases or any(name in f or f in name
                                                               for f in found):
                continue
            if set(tokenize(name)) <= naming_stems(name, vocabulary):
                continue  # "the Iriss Insight": a document's own name, whatever its text says
            found.append(name)
    return found


FOCUS_CANDIDATES = 4
"""Unmatched terms whose weight in the question's meaning is measured (the rarest first)."""


def assess(
    question: str,
    evidence: Sequence[Evidence],
    terms: QuestionTerms,
    vocabulary: Vocabulary,
    *,
    named: Sequence[str],
    named_evidence: Mapping[str, Sequence[Evidence]],
    meaning: Meaning | None = None,
    titles: Mapping[str, str] | None = None,
    passage_coverage: tuple[float, float] = (1.0, 1.0),
    phrases: Phrases | None = None,
) -> Assessment:
    """What the chosen ``evidence`` holds of what the question asks (no threshold applied).

    ``named_evidence`` maps each named document to the quotable sentences of its own passages.
    """
    asked = asked_types(question)
    typed = {
        kind: max((e.relevance for e in evidence if holds_type(kind, e.text, question)),
                  default=0.0)
        for kind in asked
    }
    counted = 0.0
    if "count" in asked:
        nouns = set() if asked["count"].lower().startswith(("how much", "how big", "what size")) \
            else set(tokenize(ASKING_WORDS.sub("", asked["count"]))) - FRAME
        counted = max((e.relevance for e in evidence if counts(e.text, nouns, question)),
                      default=0.0) if nouns else typed["count"]
    specific = specific_terms(question, vocabulary, common_idf=TERM_FLOOR)
    seen = frozenset().union(*(e.tokens | e.context for e in evidence)) if evidence \
        else frozenset()
    said = " \n ".join(e.text for e in evidence)
    matched = {t.stem: 1.0 if _used(t, seen, said) else 0.0 for t in specific}
    unmatched = [t for t in specific if not matched[t.stem]]
    if meaning is not None and unmatched and evidence:
        vocab = sorted({w for e in evidence for w in words(e.text) if tokenize(w)})
        for t, sim in zip(unmatched, meaning([t.word for t in unmatched], vocab), strict=True):
            matched[t.stem] = max(0.0, min(sim, 0.999))
    focus: Mapping[str, float] = {}
    if meaning is not None:
        loose = sorted((t for t in specific if matched[t.stem] < MEANING_CAP),
                       key=lambda t: -t.idf)[:FOCUS_CANDIDATES]
        # A follow-up is read with the question before it: "Is it free to read?" alone
        # would put all its meaning on "free".
        words_of = {t.stem: t.word for t in loose}
        focus = Deferred(words_of, lambda stems: dict(zip(
            stems, meaning.focus(terms.query, [words_of[s] for s in stems]), strict=True)))
    texts = [e.text for e in evidence]

    def thing_heads(kinds: list[str]) -> dict[str, tuple[str, ...]]:
        found = {k: tuple(focus_heads(terms.query, content_words(asked[k]), meaning))
                 for k in kinds}
        return {k: h for k, h in found.items() if h}

    kinds = [k for k in asked if k in OF_A_THING]
    heads = Deferred(kinds, thing_heads)
    near_thing = Deferred(kinds, lambda ks: {k: any(near(texts, heads[k], meaning))
                                             for k in ks if k in heads})
    choice = _ALTERNATIVES.search(question)
    options: tuple[str, ...] = choice.groups() if choice else ()
    option_stems = {s for o in options for s in tokenize(o)}
    return Assessment(
        asked=asked,
        typed=typed,
        counted=counted,
        terms=tuple(specific),
        matched=matched,
        focus=focus,
        relevance=max((e.relevance for e in evidence), default=0.0),
        unknown_names=tuple(unknown_names(question, vocabulary, phrases)),
        forms=tuple(t.word for t in specific if not t.known and phrases is not None
                    and _stem_of(t.word) in phrases),
        named=tuple(named),
        named_relevance={d: max((e.relevance for e in named_evidence.get(d, ())), default=0.0)
                         for d in named},
        named_quoted=tuple(d for d in named if any(e.doc_id == d for e in evidence)),
        titles=dict(titles or {}),
        options=options,
        option_found=not option_stems or bool(option_stems & seen),
        passage_coverage=passage_coverage,
        heads=heads,
        near=near_thing,
    )


# --------------------------------------------------------------------------- the decision

def _share(terms: Sequence[Term], a: Assessment, t: Thresholds) -> float:
    total = sum(term.idf for term in terms)
    if not total:
        return 1.0
    return sum(term.idf for term in terms if a.matched[term.stem] >= t.meaning) / total


def decide(
    a: Assessment, t: Thresholds, *, min_coverage: float = 0.0, words: bool = True
) -> Verdict:
    """Apply the thresholds: answered, partial (naming what is missing) or not covered.

    ``min_coverage`` is the setting of that name: passages covering less of the question than
    this leave it not covered, whatever else holds. Without ``words`` only the coverage is
    decided (what fitting needs, many times over).
    """
    terms = [term for term in a.terms if term.idf >= t.common_idf]
    unmatched = [term for term in terms if a.matched[term.stem] < t.meaning]
    share = _share(terms, a, t)
    union, single = a.passage_coverage
    if (a.relevance < t.min_relevance or union < min_coverage or single < 0.6 * min_coverage
            or (a.unknown_names and (share < t.term_share
                                     or _named_focus(a, unmatched) >= t.name_focus))):
        if not words:
            return Verdict("not_covered")
        # Words the corpus never uses are named when they carry the question ("euros"), not
        # when they only frame it ("How do I stop ...": "The documents never mention stop").
        never = [term for term in unmatched if not term.known]
        weights = want(a.focus, [term.stem for term in never])
        names = [*a.unknown_names,
                 *(term.word for term in never if weights.get(term.stem, 0.0) >= t.focal)]
        missing = (f"The documents never mention {join(names, 'or')}." if names
                   else "The documents hold nothing close enough to answer it.")
        return Verdict("not_covered", missing)
    wanting = [k for k in a.asked if a.typed[k] < t.focus
               or (k == "count" and t.count_noun >= 0.5 and a.counted < t.focus)]
    # Words that ask for a type, or name an either-or's options, are checked as such.
    said = {stem for k in wanting for stem in tokenize(a.asked[k])}
    said |= {stem for option in a.options for stem in tokenize(option)}
    unknown = [term for term in unmatched if not term.known and term.stem not in said]
    total = sum(term.idf for term in terms) or 1.0
    # Only a word that may make the answer partial is weighed (an encoder pass each).
    weighable = [term for term in unmatched
                 if term.stem not in said and (not term.known or term.idf >= t.focal_idf)]
    weights = want(a.focus, [term.stem for term in weighable])
    focal = [term for term in weighable if weights.get(term.stem, 0.0) >= t.focal]
    terms_short = bool(a.unknown_names) or share < t.term_share or bool(focal) \
        or sum(term.idf for term in unknown) / total >= t.unknown_share
    silent = tuple(d for d in a.named if a.named_relevance.get(d, 0.0) < t.named_relevance
                   or (len(a.named) == 1 and t.named_quoted >= 0.5 and d not in a.named_quoted))
    if not wanting and a.option_found and not terms_short and not silent:
        return Verdict("answered")
    # A figure of a thing (a salary) and no chosen sentence about the thing (pay): nothing to
    # quote as the nearest material; the documents do not cover it.
    far = any(not a.near.get(k, True) for k in wanting)
    if not words:
        return Verdict("not_covered" if far else "partial")
    gaps = [gap(k, a.asked[k]) for k in wanting]
    if not a.option_found:
        gaps.append(f"do not say whether {join(list(a.options), 'or')}")
    lacking: list[str] = []  # words the corpus uses that the evidence found does not
    unused: list[str] = []
    if terms_short:
        named = [*a.unknown_names, *(term.word for term in focal)] or \
            [term.word for term in unknown] or \
            [term.word for term in unmatched if term.stem not in said]
        unused = [w for w in named if w in a.unknown_names
                  or not (_known(w, terms) or w in a.forms)]
        lacking = [w for w in named if w not in unused]
        if unused:
            gaps.append(f"say nothing about {join(unused, 'or')}")
    if wanting:
        # A figure is missing, and so is a name or year the question set it in ("in Germany",
        # "in 2025"): the reader is told the quotes are not about that either. A number word
        # is an answer the question offers ("Two years?"), not where it is set.
        setting = [term for term in unmatched if term.stem not in said
                   and literal_only(term.word) and not _NUMBER_WORD.fullmatch(term.word)
                   and term.word not in (*a.unknown_names, *unused)]
        lacking = [term.word for term in setting if term.known]
        if unheard := [term.word for term in setting if not term.known]:
            gaps.append(f"never mention {join(unheard, 'or')}")
    sentences = [f"The documents {join(gaps)}."] if gaps else []
    if lacking:
        # The corpus uses the word elsewhere: only the quotes chosen are silent on it (a passage
        # found may use it in a sentence not quoted, so "the passages" would not be true).
        sentences.append(f"The quotes found say nothing about {join(lacking, 'or')}.")
    for d in silent:
        sentences.append(f"The {a.titles.get(d, d)} says nothing on this.")
    # The quotes shown are about the question's matched words, not about the figure asked
    # for; never about a word of a name the documents do not use ("Access" of "Access to
    # Work"); the two most specific are named.
    in_names = {stem for name in a.unknown_names for stem in tokenize(name)}
    matched = sorted((term for term in terms if a.matched[term.stem] >= t.meaning
                      and term.stem not in in_names | said), key=lambda term: -term.idf)[:2]
    topic = "" if wanting or lacking or not matched else join([term.word for term in matched])
    # A figure of something (pay, papers): the nearest evidence must be about that thing. A
    # length of time, a frequency or a date names no thing; a word the evidence lacks is by
    # definition not in it: the nearest evidence is then about the rest of the question.
    missing = " ".join(sentences) or "The documents answer only part of it."
    if far:
        return Verdict("not_covered", missing)
    focus = [w for k in wanting for w in a.heads.get(k, ())]
    return Verdict("partial", missing, topic, silent, tuple(dict.fromkeys(focus)))


def _named_focus(a: Assessment, unmatched: Sequence[Term]) -> float:
    """The most of the question's meaning an unmatched name carries (read only when needed:
    measuring it costs an encoder pass)."""
    names = [term.stem for term in unmatched if term.word[:1].isupper() and not term.known]
    return max((want(a.focus, names).get(stem, 0.0) for stem in names), default=0.0)


def _stem_of(word: str) -> str:
    """The start a word's forms share ("disclos" of "disclosing"), for a look-up in the text."""
    return word.lower()[: max(5, len(word) - 3)]


def _known(word: str, terms: Sequence[Term]) -> bool:
    return any(term.word == word and term.known for term in terms)
