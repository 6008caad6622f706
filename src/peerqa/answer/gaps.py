"""What the documents do not give, in peerqa's own words: "give no figure for the starting
salary", "do not say how often", and the words of what is missing that the nearest evidence must
be about."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..text import tokenize

# Words that frame what is asked rather than name what it is about (also the answerability
# check's: a question's specific terms are its other words).
FRAME = frozenset(tokenize(
    "many long often much year years exact exactly roughly approximately usually typical "
    "typically actual actually specific total date number numbers percentage proportion rate "
    "rates ratio figure amount size level whether anything something somebody anyone someone "
    "get got make made find found give given recommend recommended suggest suggested mean "
    "kind type good best main key important different difference differ compare compared "
    "agree disagree both same thing things say said according besides apart overall ok okay "
    "tell whether happen happened happens happening"
))
OF_A_THING = frozenset({"money", "band", "percentage", "count"})
"""Answer types that are a figure of something (pay, papers, a band), not a length of time, a
frequency or a date."""

_WORDS = re.compile(r"[A-Za-z0-9]+(?:['’][a-z]+)?")
# Words of "how big", "what size": they ask for a figure without naming a thing.
_NOT_A_THING = {"how", "often", "long", "when", "much", "many", "big", "large", "small", "size"}

ASKING_WORDS = re.compile(
    r"^(?:(?:by )?(?:what(?:'s|’s| is| was| are| were)?|which|how many|how much|how)\s+)?"
    r"(?:(?:the|a|an|exact|actual|typical|usual)\s+)*",
    re.I)


# What is left of "how much does it cost" or "how much is the HSE spending" once the asking
# words go: a verb and its subject, which "give no figure for the ..." cannot take.
_AUXILIARY = re.compile(
    r"^(?:(?:is|are|was|were|does|do|did|will|would|should|has|have)\s+)"
    r"(?:(?:it|they|we|you|one|the|a|an)\s+)?", re.I)


def thing(phrase: str) -> str:
    """What an asked-for phrase names, without the words that ask: "starting salary" of "the
    exact starting salary", "HSE spending" of "how much is the HSE spending", "pay" of "how
    much is a peer worker paid"; "" for "how often"."""
    bare = _AUXILIARY.sub("", ASKING_WORDS.sub("", phrase).strip()).strip()
    if re.search(r"\b(?:paid|earns?|earned|earning)$", bare, re.I):
        return "pay"  # not "the peer worker paid"
    return bare


def gap(kind: str, phrase: str) -> str:
    """What the documents do not give, as a verb phrase: "give no figure for the hourly rate"."""
    bare = thing(phrase)
    if kind == "money":
        return f"give no figure for the {bare}" if bare and bare.lower() not in {"much", "money"} \
            else "give no amount of money"
    if kind == "percentage":
        if not bare or bare.lower() in {"percentage", "proportion", "share", "fraction",
                                        "per cent"}:
            return "give no percentage or proportion"
        return f"give no figure for the {bare}"
    if kind == "band":
        return "give no pay band or grade"
    if kind == "count" and bare.lower() == "headcount":
        return "give no headcount"
    if kind == "count":
        return f"give no number of {bare}" if bare and bare.lower() not in {"many", "much"} \
            else "give no count"
    if kind == "frequency":
        return "do not say how often"
    if kind == "duration":
        return "do not say how long"
    return "give no date"


def join(items: Sequence[str], last: str = "and") -> str:
    """Items in a sentence: "a", "a and b", "a, b or c"."""
    items = list(dict.fromkeys(items))
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def content_words(phrase: str) -> list[str]:
    """The words of an asked-for phrase that say what is asked ("starting salary" of "the exact
    starting salary"; none of "how often")."""
    return [w for w in _WORDS.findall(thing(phrase)) if tokenize(w) and not set(tokenize(w)) & FRAME
            and w.lower() not in _NOT_A_THING]
