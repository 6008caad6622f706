"""The written-answer verifier: only sentences the cited passages support reach the reader.

The model's reply is read sentence by sentence as it streams: markers that point at no source
are removed; each sentence is tested against the passages it cites with ``judge.supports`` (the
evaluation's judge); unsupported or uncited sentences are dropped (or flagged), sentences with
links always, and so are sentences that give instructions (to the assistant, or to the reader
about what to do outside the answer) or repeat an instruction found in a passage, however well a
passage "supports" them: documents are data, never instructions. When as many sentences were
dropped for instructions or links as were kept, the reply as a whole is not trusted
(``compromised``) and the answer falls back to quotes. Sources are renumbered by first use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..text import BULLET, HEADING_MARK, sentence_spans, tokenize
from ..types import Citation, Passage
from .judge import MarkedSentence, marked_sentences, supports
from .prompt import PARTIAL_PREFIX

UNSUPPORTED_FLAG = "[unsupported]"
MISSING_CHARS = 200
_MARKER_LIST = re.compile(r"\[\s*(\d{1,3}(?:\s*[,;]\s*\d{1,3})+)\s*\]")
_PARTIAL_MARKER = re.compile(r"\[[^\]]*$")  # a marker still arriving: "[1" or "["
_GAP = re.compile(
    r"\b(?:sources?|documents?|passages?)\b.*\b(?:do|does|did)\s*(?:not|n't)\b"
    r"|\bno information\b|\bnot (?:covered|mentioned|addressed|answered|stated)\b",
    re.I,
)
# Links are never written: the prompt forbids them and an injected passage's favourite payload is
# one. A cited source's link still shows, verbatim, in the quoted passage.
_LINK = re.compile(
    r"(?i)\bhttps?://|\bwww\.\w|\]\([^)]*\)|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|co|info|biz|"
    r"xyz|ru|cn|uk|gov|edu|ly|me|app|site|online)(?:/\S*)?\b"
)
# An instruction addressed to the assistant (or to the reader about what to do outside the
# answer), as injected text words it. An answer reports what the documents say; it never tells
# anyone to reply, click, ignore instructions or take on a role. Verbs of replying count only as
# an imperative (a clause's first word) followed by what to say.
_REPLY = r"(?:reply|respond|answer|output|print|say|type|write|repeat|return|state)"
INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.!?]{0,60}?\b(?:instructions?|prompts?"
    r"|rules|directions|guidelines|messages?|context|everything\s+(?:above|before|else)"
    r"|(?:all\s+(?:of\s+)?)?the\s+above)\b"
    r"|\b(?:system|developer)\s+(?:prompt|message|instructions?)\b"
    r"|\b(?:new|updated|real|actual|hidden)\s+instructions?\b"
    r"|(?:^|[\n\"'“(])\s*(?:system|assistant|developer)\s*:"
    r"|\byou\s+are\s+now\b|\byou\s+are\s+(?:\w+\s+){0,3}?(?:ai|assistant|language\s+model"
    r"|chatbot|bot)\b"
    r"|\bas\s+an?\s+(?:ai|language\s+model|assistant)\b"
    r"|\b(?:the\s+)?(?:ai|assistant|language\s+model|chatbot|llm)\s+(?:must|should|will|shall"
    r"|is\s+to)\b"
    r"|(?:^|[;:]\s*|\b(?:please|now|instead|just|then|and)\s+)" + _REPLY
    + r"(?:\s+(?:only|exactly|just|back|verbatim))*(?:\s+with\b|\s+[\"'“‘]"
    r"|\s+(?-i:[A-Z0-9][A-Z0-9_-]*)\b)"
    r"|\b(?:tell|inform|warn)\s+(?:the\s+)?(?:user|reader)s?\b"
    r"|(?:^|[;:]\s*|\bplease\s+)(?:click|tap)\b"
    r"|\byou\s+(?:must|should|need\s+to|have\s+to)\s+(?:now\s+)?(?:reply|respond|click|visit"
    r"|email|send|enter|type|share|provide\s+your|call\s+us|contact\s+us)\b"
    r"|\b(?:do\s+not|don't|never)\s+(?:tell|mention|reveal|disclose)\b[^.!?]{0,30}"
    r"\b(?:user|reader|anyone|instructions?|prompt)\b",
    re.I,
)
# A heading or a lead-in such as "**Key points:**" or "In short:".
_FORMATTING = re.compile(r"^(?:" + HEADING_MARK.pattern + r"|\*\*[^*]+\*\*:?$|[^.!?]{0,80}:$)")

def injected_words(passages: Sequence[Passage]) -> frozenset[str]:
    """Words the passages use only inside sentences that give instructions: a written sentence
    made of them repeats an injected instruction (a canary such as "PWNED-7f3")."""
    inside: set[str] = set()
    outside: set[str] = set()
    for p in passages:
        for a, b in sentence_spans(p.text):
            sentence = p.text[a:b]
            (inside if INSTRUCTION.search(sentence) else outside).update(tokenize(sentence))
    return frozenset(inside - outside)


def repeats_instruction(sentence: str, injected: frozenset[str]) -> bool:
    """Whether ``sentence`` is made of an injected instruction's own words: two of them, or
    half of its words."""
    if not injected:
        return False
    tokens = set(tokenize(sentence))
    shared = len(tokens & injected)
    return shared >= 2 or (shared > 0 and 2 * shared >= len(tokens))


@dataclass(slots=True)
class _Kept:
    text: str
    sources: tuple[int, ...]  # 1-based numbers of the prompt's sources
    supported: bool


@dataclass
class Verifier:
    """Reads a reply as it arrives and lets through only sentences the cited passages support.

    Sentences are cut exactly as the judge cuts them (``judge.marked_sentences``, line by
    line), so the answer shown is judged on the same sentences that were verified. While a
    line is still arriving, only its sentences followed by more text are final.
    """

    sources: Sequence[Passage]
    flag_unsupported: bool = False
    kept: list[_Kept] = field(default_factory=list)
    numbers: dict[int, int] = field(default_factory=dict)  # source number -> answer number
    removed_markers: list[int] = field(default_factory=list)
    uncited: int = 0
    unsupported: int = 0
    linked: int = 0
    instructions: int = 0  # sentences giving or repeating instructions: always dropped
    gap: bool = False
    missing: str = ""
    """What the model says the sources do not give (its "Not covered:" line), if it said."""
    parts: list[str] = field(default_factory=list)
    raw: str = ""
    _line: str = ""
    _line_done: int = 0  # sentences of the current line already judged
    _line_shown: bool = False  # whether one of them was kept (it carries the bullet)
    _newlines: int = 0  # line breaks since the last kept sentence
    _injected: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._injected = injected_words(self.sources)

    @property
    def compromised(self) -> bool:
        """Whether the reply followed injected text: at least as many sentences were dropped
        for instructions or links as were kept, so what is left is not trusted either."""
        suspect = self.instructions + self.linked
        return suspect > 0 and suspect >= len(self.kept)

    def feed(self, delta: str) -> list[str]:
        """Verified text completed by ``delta``, in pieces that start with their separator."""
        self.raw += delta
        out: list[str] = []
        *complete, self._line = (self._line + delta).split("\n")
        for line in complete:
            out += self._judge_line(line, final=True)
            self._line_done, self._line_shown = 0, False
            self._newlines += 1
        out += self._judge_line(self._line, final=False)
        return out

    def flush(self) -> list[str]:
        """The last sentences, once the reply has ended."""
        out = self._judge_line(self._line, final=True)
        self._line, self._line_done, self._line_shown = "", 0, False
        return out

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def _judge_line(self, line: str, final: bool) -> list[str]:
        body = line.strip()
        bullet = BULLET.match(body)
        if bullet:
            # "1." would read to the judge as a sentence or a number the passage must hold.
            body = body[bullet.end():]
        if not final:
            body = _PARTIAL_MARKER.sub("", body)
        body = _MARKER_LIST.sub(
            lambda m: "".join(f"[{n}]" for n in re.split(r"\s*[,;]\s*", m.group(1))), body
        )
        sentences = marked_sentences(body)
        ready = len(sentences) if final else len(sentences) - 1
        out = []
        for sentence in sentences[self._line_done : ready]:
            piece = self._judge(sentence, "- " if bullet and not self._line_shown else "")
            if piece is not None:
                self._line_shown = True
                out.append(piece)
        self._line_done = max(self._line_done, ready)
        return out

    def _judge(self, sentence: MarkedSentence, prefix: str) -> str | None:
        said = sentence.text.strip("*_ ")
        if said.lower().startswith(PARTIAL_PREFIX.lower()):
            # What the sources do not give: kept apart, shown as peerqa's own line (no link,
            # no marker, one sentence at most).
            rest = said[len(PARTIAL_PREFIX):].strip()
            if rest and not _LINK.search(rest) and not self.missing:
                self.missing = rest[:MISSING_CHARS]
            self.gap = True
            return None
        if not sentence.numbers and _FORMATTING.match(sentence.text):
            return None  # a heading or a lead-in such as "Key points:"
        n_sources = len(self.sources)
        valid = tuple(n for n in sentence.numbers if 1 <= n <= n_sources)
        self.removed_markers.extend(n for n in sentence.numbers if n not in valid)
        if INSTRUCTION.search(sentence.text) or repeats_instruction(sentence.text, self._injected):
            self.instructions += 1  # never shown, cited or not, flagged or not
            return None
        if not valid and _GAP.search(sentence.text) and not _LINK.search(sentence.text):
            self.gap = True
            return None
        if _LINK.search(sentence.text):  # links are never shown, cited or not
            self.linked += 1
            return None
        if not valid:
            self.uncited += 1
            supported = False
        else:
            supported = supports(sentence.text, [self.sources[n - 1].text for n in valid])
            if not supported:
                self.unsupported += 1
        if not supported and not self.flag_unsupported:
            return None
        new = [self.numbers.setdefault(n, len(self.numbers) + 1) for n in valid]
        marks = "".join(f"[{n}]" for n in new)
        body = f"{prefix}{sentence.text} {marks}".rstrip()
        if not supported:
            body += f" {UNSUPPORTED_FLAG}"
        breaks = min(self._newlines, 2)
        sep = ("\n" * breaks or " ") if self.parts else ""
        self._newlines = 0
        self.kept.append(_Kept(sentence.text, valid, supported))
        self.parts.append(sep + body)
        return sep + body

    def citations(self) -> list[Citation]:
        """The cited sources, numbered by first use, with the best-matching spans highlighted."""
        out = []
        for source, number in sorted(self.numbers.items(), key=lambda kv: kv[1]):
            p = self.sources[source - 1]
            claims = [k.text for k in self.kept if source in k.sources]
            out.append(Citation.of(p, number, highlight_spans(p, claims)))
        return out


def highlight_spans(passage: Passage, claims: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Document offsets of the passage's sentences that best match each claim (at most 2 each)."""
    spans = [(a, b, set(tokenize(passage.text[a:b]))) for a, b in sentence_spans(passage.text)]
    chosen: set[tuple[int, int]] = set()
    for claim in claims:
        want = set(tokenize(claim))
        covered: set[str] = set()
        for round_ in range(2):
            best, gain = None, 0
            for a, b, toks in spans:
                g = len((want - covered) & toks)
                if g > gain or (g == gain and g and best and b - a < best[1] - best[0]):
                    best, gain = (a, b, toks), g
            # A second span only if it adds a real part of the claim.
            if best is None or gain < (1 if round_ == 0 else max(2, len(want) // 4)):
                break
            chosen.add((passage.start + best[0], passage.start + best[1]))
            covered |= best[2]
    return tuple(sorted(chosen))
