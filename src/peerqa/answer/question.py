"""What a question asks: its weighted words, the text to search with, and its shape.

The question's content words are stemmed and weighted by rarity (idf over chunks); in a
follow-up, the previous question's words join at half weight and its text joins the search.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..retrieval import Vocabulary
from ..text import tokenize

_LIST_CUE = re.compile(
    r"\b(what are|which|list|ways?|steps|types|kinds|factors|barriers|benefits|challenges|"
    r"recommendations|lessons|examples|elements|components|areas|key|main|outcomes|roles|"
    r"skills|qualities|themes|issues|things)\b",
    re.I,
)
_FOLLOW_UP = re.compile(
    r"^\s*(and|but|also|what about|how about|so)\b|\b(they|them|their|theirs|it|its|this|that|"
    r"these|those|he|she|his|her|there|the same)\b",
    re.I,
)


@dataclass(frozen=True, slots=True)
class QuestionTerms:
    """Stemmed content words of a question with their weights, and the text to retrieve with."""

    query: str
    weights: dict[str, float]
    mentioned: tuple[str, ...] = ()
    late: str | None = None
    """What late interaction reads when it is not the query: a follow-up's own words, without
    the earlier question's, which it would match word by word as if they were asked now."""

    @property
    def total(self) -> float:
        return sum(self.weights.values())

    def without(self, stems: set[str] | frozenset[str]) -> QuestionTerms:
        """These terms without some words (those naming a document, say). With none left,
        no sentence covers any of the question: its meaning alone ranks them."""
        kept = {t: w for t, w in self.weights.items() if t not in stems}
        return QuestionTerms(self.query, kept, self.mentioned, self.late)

    def coverage(self, tokens: set[str] | frozenset[str]) -> float:
        """Weighted share of the question's words found among ``tokens``."""
        total = self.total
        return sum(w for t, w in self.weights.items() if t in tokens) / total if total else 0.0


def previous_question(history: Sequence[Mapping[str, str]] | None) -> str | None:
    """The last user turn of a role/content history, if any."""
    for turn in reversed(list(history or [])):
        if turn.get("role") == "user" and str(turn.get("content", "")).strip():
            return str(turn["content"])
    return None


def question_terms(
    question: str,
    history: Sequence[Mapping[str, str]] | None,
    vocabulary: Vocabulary,
) -> QuestionTerms:
    """Weighted terms and the retrieval query; follow-ups borrow the previous question's words."""
    current = tokenize(question)
    weights: dict[str, float] = {t: vocabulary.idf(t) for t in current}
    query = question
    late = None
    earlier = previous_question(history)
    if earlier and (_FOLLOW_UP.search(question) or len(set(current)) <= 2):
        query, late = f"{question} {earlier}", question
        for t in tokenize(earlier):
            weights.setdefault(t, 0.5 * vocabulary.idf(t))
    return QuestionTerms(
        query=query, weights=weights, mentioned=tuple(vocabulary.mentioned_documents(query)),
        late=late,
    )


def is_list_question(question: str) -> bool:
    """Whether the question asks for several things (ways, steps, barriers...)."""
    return bool(_LIST_CUE.search(question))


# --------------------------------------------------------------------------- what kind of answer


# What a question asks for, by the words that ask for it: (answer type, pattern). The first
# group of each pattern names the thing asked for in the question's own words.
_ASKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("money", re.compile(
        r"\b((?:hourly |annual |starting |exact )?(?:salar(?:y|ies)|wages?|pay rates?|"
        r"rates? of pay|hourly rates?|price(?: tag)?|fees?|euros?|pounds|dollars)|"
        r"(?:what(?:'s| is| was| are| were)?|how much(?: is| was| does| did| do)?) (?:the )?"
        r"(?:annual |total |yearly |average |exact )?(?:costs?|spending|budget|funding|"
        r"investment)|how much (?:money|funding|extra funding|new funding|investment|"
        r"does it cost|is spent|do they earn|are they paid|is (?:a|an|the) \w+ paid)|"
        r"how much (?:\w+ ){0,4}(?:paid|earn\w*|cost\w*|spen[dt]\w*))\b", re.I)),
    ("percentage", re.compile(
        r"\b((?:what|by what|which) (?:percentage|proportion|share|fraction)|percentage|per ?cent|"
        r"(?:turnover|absence|response|completion|retention|success|drop-?out|readmission|"
        r"sickness absence) rates?|effect sizes?|return on investment|how much is saved|"
        r"(?:what|which) (?:\w+ )?(?:score|rating)s?)\b",
        re.I)),
    ("band", re.compile(
        r"\b((?:agenda for change |afc |pay )?bands?|(?:what|which) (?:\w+ ){0,3}(?:pay )?"
        r"(?:grades?|pay scales?))\b", re.I)),
    ("count", re.compile(
        r"\b(how many(?: (?!(?:did|do|does|were|was|are|is|should|would|could|can|will|have|"
        r"has|of|in|on|at|for|to|the|a|an)\b)[\w-]+){0,3}|what number of(?: \w+){0,2}|"
        r"headcount|"
        r"how much (?:research|evidence)|how big|what size)\b", re.I)),
    ("frequency", re.compile(
        r"\b(how often|how frequently|how regularly|(?:fortnightly|weekly|monthly) or "
        r"(?:fortnightly|weekly|monthly))\b", re.I)),
    ("duration", re.compile(
        r"\b(how long|how many (?:days|weeks|months|years|hours|sessions)|what length|"
        r"how much (?:\w+ )?time|"
        r"(?:length|duration) of)\b", re.I)),
    ("date", re.compile(
        r"(?:^|[.?!]\s+|\b(?:and|or)\s+)((?:when|since when|by when) (?:was|were|is|are|will|did|"
        r"does|do|should|has|have)\b)|\b((?:what|which|in what) (?:year|date|month)|deadline|"
        r"closing date|due date|launch date)\b", re.I)),
)
# Figures a year or a date does not answer: "how many" wants a count, not "in 2019".
NUMBER_WORDS = (r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
                r"twenty|thirty|forty|fifty|hundred|hundreds|thousand|thousands|dozen|dozens|"
                r"half|third|quarter|double|twice|several|few")
_YEAR = re.compile(r"\b(?:19|20)\d\d(?:/\d\d)?\b")
_MONTHS = (r"January|February|March|April|May|June|July|August|September|October|November|"
           r"December|Spring|Summer|Autumn|Winter")
_HOLDS: dict[str, re.Pattern[str]] = {
    "money": re.compile(
        r"[£€$]\s?\d|\b\d[\d,.]*\s?(?:pounds|euros?|dollars|p\b)|\b(?:million|billion)\b", re.I),
    "percentage": re.compile(
        r"\d\s?%|\bper ?cent\b|\b\d+(?:\.\d+)? (?:out )?of (?:the )?\d+\b|\bone in (?:\w+)\b|"
        r"\b(?:half|a third|two thirds|a quarter|three quarters) of\b|\b\d+(?:\.\d+)?\s?:\s?1\b|"
        r"\b(?:ratio|odds ratio|effect size|rate) of \d", re.I),
    "band": re.compile(r"\b(?:band|grade|level)\s+\d|\bagenda for change band\b", re.I),
    "count": re.compile(r"\b\d[\d,.]*\b|\b(?:" + NUMBER_WORDS + r")\b", re.I),
    "frequency": re.compile(
        r"\b(?:weekly|fortnightly|monthly|daily|annually|yearly|quarterly|every (?:\w+ )?"
        r"(?:day|week|fortnight|month|year|session)s?|once a|twice a|\w+ times? (?:a|per|each)|"
        r"(?:per|each|a) (?:day|week|fortnight|month|year))\b", re.I),
    "duration": re.compile(
        r"\b(?:\d+|" + NUMBER_WORDS + r"|a|an)[- ](?:days?|weeks?|months?|years?|hours?|"
        r"sessions?|fortnights?)\b|\bover (?:a|the) period\b|\bfrom \w+ \d{4} to\b", re.I),
    "date": re.compile(r"\b(?:19|20)\d\d\b|\b(?:" + _MONTHS + r")\b|\b(?:early|late|mid)[- ]\d{4}",
                       re.I),
}
_PHRASE_END = re.compile(r"\b(?:the|a|an|of|for|to|in|on|at|by|did|do|does|is|are|was|were|"
                         r"should|would|could|can|will|have|has|get|each|every|and|or)$", re.I)


def asked_types(question: str) -> dict[str, str]:
    """The answer types the question asks for, each with the question's words asking for it
    ("money": "hourly rate"). A question may ask for none (most do) or several."""
    found: dict[str, str] = {}
    for kind, pattern in _ASKS:
        m = pattern.search(question)
        if m:
            phrase = next((g for g in m.groups() if g), m.group(0)).strip()
            while _PHRASE_END.search(phrase) and " " in phrase:
                phrase = phrase.rsplit(" ", 1)[0]
            # As the question writes it ("the HSE spending"); compared in lower case.
            found[kind] = phrase
    lower = {kind: phrase.lower() for kind, phrase in found.items()}
    if "duration" in found and lower.get("count", "").startswith(lower["duration"]):
        del found["count"]  # "how many weeks" asks for a length of time, not a head count
    if "percentage" in found and "count" in found and lower["count"].startswith("how much"):
        del found["count"]
    return found


# A citation's year, "(Cooper et al., 2024)"; not a reference's own date after its full stop
# ("Katie Nicholas. (January 2021).", the date the work came out).
_CITED_YEAR = re.compile(r"(?<!\.\s)\([^()]*\b(?:19|20)\d\d[a-z]?\)")
_FIGURE_TOKEN = re.compile(r"\b\d[\d,.]*\b|\b(?:" + NUMBER_WORDS + r")\b", re.I)


def given(text: str, question: str) -> str:
    """The text without what cannot answer the question's figure or date: the year of a
    citation "(Cooper et al., 2024)" and the figures the question itself states."""
    text = _CITED_YEAR.sub(" ", text)
    stated = {m.group(0).lower() for m in _FIGURE_TOKEN.finditer(question)}
    if not stated:
        return text
    return _FIGURE_TOKEN.sub(lambda m: " " if m.group(0).lower() in stated else m.group(0), text)


def holds_type(kind: str, text: str, question: str = "") -> bool:
    """Whether a sentence holds an answer of this type (a count is not a year, a percentage
    or an amount of money counts as a figure); figures the ``question`` states and the years
    of citations do not count."""
    pattern = _HOLDS.get(kind)
    if pattern is None:
        return True
    text = given(text, question)
    if kind in ("count", "duration"):
        text = _YEAR.sub(" ", text)
    return bool(pattern.search(text))


_COUNTED = re.compile(r"\b(\d[\d,.]*|" + NUMBER_WORDS + r")\b((?:\W+[\w'’-]+){0,5})", re.I)


def counts(text: str, nouns: set[str] | frozenset[str], question: str = "") -> bool:
    """Whether the text gives a number of ``nouns`` (stems): a figure, not a year nor one the
    question states, with one of them among the five words after it ("11 Peer Support
    Workers", "five Health Board areas")."""
    plain = _YEAR.sub(" ", given(text, question))
    return any(nouns & set(tokenize(m.group(2))) for m in _COUNTED.finditer(plain))


def named_documents(question: str, vocabulary: Vocabulary) -> list[str]:
    """Documents the question names, in the order it first names them."""

    def first_mention(doc_id: str) -> int:
        lo, hi = 1, len(question)  # the shortest prefix of the question that names it
        while lo < hi:
            mid = (lo + hi) // 2
            if doc_id in vocabulary.mentioned_documents(question[:mid]):
                hi = mid
            else:
                lo = mid + 1
        return lo

    return sorted(vocabulary.mentioned_documents(question), key=first_mention)


_COMPARISON = re.compile(
    r"\b(?:compare[ds]?|comparison|differ(?:s|ent|ence|ently)?|both|agree|disagree|same thing|"
    r"versus|vs\.?|contrast|in common)\b", re.I)


def focus_query(question: str, vocabulary: Vocabulary) -> str:
    """The question without the names of documents and the words that ask for a comparison:
    what to search each named document for."""
    text = _COMPARISON.sub(" ", question)
    raw = text.split()
    keep = [True] * len(raw)
    for n in (3, 2, 1):
        for i in range(len(raw) - n + 1):
            if all(keep[i : i + n]) and vocabulary.mentioned_documents(" ".join(raw[i : i + n])):
                keep[i : i + n] = [False] * n
    focused = " ".join(w for w, k in zip(raw, keep, strict=True) if k)
    return focused if tokenize(focused) else question


_NAME_WORDS = re.compile(r"[A-Za-z0-9]+(?:['’][a-z]+)?")


SOURCE_VERBS = frozenset(tokenize("commissioned commissioning funded funding"))
"""Who asked and paid for a document: asked beside its name, they are the question's point,
and its text answers them in those words ("was commissioned by"). Who wrote it is answered by
credit lines, which carry those words for the purpose (``candidates.CREDIT_STEMS``)."""


def naming_stems(question: str, vocabulary: Vocabulary) -> set[str]:
    """The stems of the question's words that name a document ("Fife review", "HEE"): every
    word of a phrase of up to three words that names one ("cover" of "What did the QUB review
    cover?" included; narrowed to the name and its nouns, cross-validated correctness rose
    0.752 -> 0.755 but the practitioner holdout's wrongful partial answers rose 0.089 ->
    0.107), except the ``SOURCE_VERBS``."""
    raw = _NAME_WORDS.findall(question)
    naming: set[str] = set()
    for n in (1, 2, 3):
        for i in range(len(raw) - n + 1):
            gram = " ".join(raw[i : i + n])
            if vocabulary.mentioned_documents(gram):
                naming.update(tokenize(gram))
    # What was done to the document is asked, not its name: "Who commissioned the QUB review?"
    return naming - SOURCE_VERBS
