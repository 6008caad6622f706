"""Text tools every layer shares, each defined once: words and stems, sentences, tokens, marks.

- ``words`` / ``tokenize``: the one vocabulary BM25, sentence scoring, the judge and the
  evaluation use (NFKC, accents folded, lower case, stop words out, Snowball stems); ``fold``
  is the normalisation they share, the same for documents and questions.
- ``sentence_spans``: where sentences start and end, as offsets into the text.
- ``count_tokens``: cl100k_base token counts, with tiktoken kept offline.
- ``normalise``: white space, quote marks and dashes folded, so formatting never decides a match.
- The patterns of a ``[n]`` citation marker, a list bullet and a Markdown heading.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import Stemmer
import tiktoken

from .errors import InputError

# --------------------------------------------------------------------------- shared patterns

MARKER = re.compile(r"\[(\d{1,3})\]")
"""A citation marker such as ``[3]``: group 1 is the source number."""

BULLET = re.compile(r"\s*(?:[-*•–]|\d{1,2}[.)])\s+")
"""A list item's bullet or number at the start of a line ("- ", "• ", "2) ", "10. ")."""

HEADING_MARK = re.compile(r"#{1,6}\s+")
"""The hashes that open a Markdown heading."""

STATEMENT_WORDS = 4
"""A heading ending in a full stop with at least this many words is a statement set as a
heading (a review's recommendations in bold): it names its section and is also its text."""

CREDIT = re.compile(
    r"^(?:\S+\s+){0,3}?(?:developed|written|prepared|produced|compiled|edited|authored|"
    r"commissioned|funded)\s+by\s+(?:the\s+)?[A-Z]", re.I)
"""A line that credits a document's makers ("Developed by Dr ... on behalf of ..."), when it
stands alone without a full stop."""

AUTHORS = re.compile(r"^(?:[A-Z][\w'’-]+(?: [A-Z][\w'’.-]+){1,2}, ){2,}")
"""A line of authors: two or more personal names, a comma after each ("Joanne McLean, Hannah
Biggs, ...")."""

ASKS_WHO_MADE = re.compile(
    r"\bwho (?:\w+ly )?(?:wrote|authored|developed|produced|prepared|compiled|edited|"
    r"carried out|made|was behind|is behind)\b"
    r"|\b(?:who|what) (?:is|are|was|were) (?:the |its |their )?authors?\b|\bby whom\b",
    re.I,
)
"""A question who made a source, which its credit lines answer (not who commissioned or paid for
it: "Developed by X on behalf of Y" and a line of authors do not say that)."""


TERMINAL = re.compile(r"[.!?…](?:[\"'”’)\]*_]|\s*\*+)*$")
"""How a sentence ends: a full stop, "!", "?" or "…", closing quotes and emphasis allowed."""


def credit_line(line: str) -> bool:
    """Whether a line (its emphasis marks stripped) credits a document's makers: "Developed by
    ..." ending neither as a sentence nor with a colon, or a line of authors."""
    ends = TERMINAL.search(line) or line.endswith(":")
    return bool(AUTHORS.match(line)) or (bool(CREDIT.match(line)) and not ends)


def credit_lines(text: str) -> bool:
    """Whether ``text`` has a line of its own that credits its makers (``credit_line``)."""
    return any(credit_line(line.strip().strip("*_").strip()) for line in text.splitlines())

HEADING = re.compile(r"^\s{0,3}(" + HEADING_MARK.pattern + r")(.+?)\s*#*\s*$", re.M)
"""A whole Markdown heading line: group 1 its marker (level = number of '#'), group 2 its text."""


def heading_level(match: re.Match[str]) -> int:
    """The level of a heading matched by ``HEADING``."""
    return match.group(1).count("#")


def check_encodable(text: str, what: str) -> str:
    """``text``, or InputError when it holds what no encoder takes (a lone surrogate, such as an
    invalid byte in a command-line argument becomes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(
            f"the {what} contains something that is not text at character {e.start + 1} (an "
            "invalid byte or a broken character): retype it, or check that the terminal or "
            "program sending it uses UTF-8"
        ) from None
    return text


def markers(text: str) -> list[int]:
    """Every [n] in ``text``, in order."""
    return [int(n) for n in MARKER.findall(text)]


def year_label(year: int | None) -> str:
    """The year for a reference line: the year, or 'n.d.' for an undated document."""
    return str(year) if year is not None else "n.d."


# --------------------------------------------------------------------------- words and stems

TOKENIZER_VERSION = "2"
"""Changes whenever ``words``/``tokenize`` give other tokens: what is built from tokens rebuilds."""

# Letters and digits of any script (after folding); an apostrophe form such as "workers'" ends
# the word.
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_WORD = re.compile(r"\S+")
STOPWORDS = frozenset(
    [
        "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and",
        "any", "are", "aren't", "as", "at", "be", "because", "been", "before", "being", "below",
        "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "don't",
        "down", "during", "each", "etc", "few", "for", "from", "further", "get", "gets",
        "getting", "had", "has", "have", "having", "he", "her", "here", "hers", "herself",
        "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself",
        "just", "let", "me", "more", "most", "much", "must", "my", "myself", "no", "nor", "not",
        "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves",
        "out", "over", "own", "same", "shall", "she", "should", "so", "some", "such", "than",
        "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these",
        "they", "this", "those", "through", "to", "too", "under", "until", "up", "upon", "us",
        "very", "via", "was", "we", "were", "what", "when", "where", "which", "while", "who",
        "whom", "why", "will", "with", "within", "would", "you", "your", "yours", "yourself",
        "yourselves", "tell", "know", "say", "says", "said", "anything", "something", "thing",
        "things", "way", "ways", "kind", "kinds", "sort", "lot", "lots", "really", "actually",
        "please", "like", "need", "needs", "needed", "want", "wants", "shouldn", "couldn",
        "wouldn", "doesn", "didn", "isn", "wasn", "weren", "hasn", "haven", "don", "aren"
    ]
)


@functools.lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def fold(text: str) -> str:
    """``text`` as words are compared: NFKC, accents removed, case folded.

    "café" typed composed or decomposed, "ﬁ" as a ligature and full-width digits all become the
    same letters, so a question matches a document however either was typed. Only tokens are
    folded: chunk texts and quotes stay verbatim.
    """
    if text.isascii():
        return text.lower()
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    # Combining marks removed by one translate over the distinct characters (a loop over every
    # character took 0.6 s of a 100x corpus's 1 s).
    marks = {ord(c): None for c in set(text) if unicodedata.combining(c)}
    if marks:
        text = text.translate(marks)
    return unicodedata.normalize("NFC", text).casefold()


def words(text: str) -> list[str]:
    """Folded word tokens (apostrophe forms folded: "workers'" -> "workers")."""
    return [w.replace("’", "'").split("'")[0] for w in _TOKEN.findall(fold(text))]


_KEPT_LENGTH = 300
"""Texts up to this long (words, a question's phrases, most sentences) have their tokens kept:
answering one question tokenises 150 of them, most of them seen before (the words of the
evidence, one by one). Longer ones (chunks) are not kept, so a large corpus's texts are never
held twice."""


def tokenize(text: str) -> list[str]:
    """Stemmed content tokens: the vocabulary BM25, sentence scoring and the judge share."""
    if len(text) <= _KEPT_LENGTH:
        return list(_short_tokens(text))
    return _tokens(text)


def _tokens(text: str) -> list[str]:
    kept = [w for w in words(text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    return list(_stemmer().stemWords(kept))


@functools.lru_cache(maxsize=1 << 15)
def _short_tokens(text: str) -> tuple[str, ...]:
    return tuple(_tokens(text))


def word_count(text: str) -> int:
    """Words as white-space separated runs: the unit of the chunk-size bounds."""
    return len(_WORD.findall(text))


def word_spans(text: str, start: int, end: int) -> list[re.Match[str]]:
    """The white-space separated words of ``text[start:end]``, as matches with offsets."""
    return list(_WORD.finditer(text, start, end))


def normalise(text: str) -> str:
    """Fold white space, curly quotes and dashes so formatting never decides support."""
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    text = text.replace("–", "-").replace("—", "-")
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------- sentences

_ABBREVIATIONS = {
    "e.g.", "i.e.", "al.", "etc.", "vs.", "cf.", "c.f.", "dr.", "no.", "fig.", "p.", "pp."
}
# Line breaks before bullets, and blank lines, always end a sentence.
_HARD_BREAK = re.compile(r"\n\s*\n|\n(?=" + BULLET.pattern + ")")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’')\]]*\s+(?=[\"“‘(\[]?[A-Z0-9])")


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence boundaries inside text[start:end], as trimmed (start, end) offsets of ``text``."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    pieces: list[tuple[int, int]] = []
    piece_start = start
    for m in _HARD_BREAK.finditer(text[start:end]):
        pieces.append((piece_start, start + m.start()))
        piece_start = start + m.end()
    pieces.append((piece_start, end))
    for a, b in pieces:
        cut = a
        for m in _SENTENCE_END.finditer(text, a, b):
            before = text[cut : m.start()].split()
            last = before[-1].lower() if before else ""
            if last in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last):
                continue
            sentence_end = m.start() + len(m.group(0).rstrip())
            spans.append((cut, sentence_end))
            cut = m.end()
        spans.append((cut, b))
    return trimmed(text, spans)


def trimmed(text: str, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each ``(a, b)`` span of ``text`` without its surrounding white space; blank ones dropped."""
    out = []
    for a, b in spans:
        seg = text[a:b]
        lead = len(seg) - len(seg.lstrip())
        trail = len(seg) - len(seg.rstrip())
        if b - trail > a + lead:
            out.append((a + lead, b - trail))
    return out


# --------------------------------------------------------------------------- tokens


def _bundled_tiktoken_cache() -> Path | None:
    """llama-index ships tiktoken's cl100k_base file; found without importing llama-index."""
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or not spec.origin:
        return None
    cache = Path(spec.origin).parent / "_static" / "tiktoken_cache"
    return cache if cache.is_dir() else None


@functools.lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    """cl100k_base, offline: tiktoken would fetch its BPE file on first use, so it is pointed at
    the copy llama-index ships, unless the user chose a cache of their own."""
    cache = _bundled_tiktoken_cache()
    if cache is not None:
        # tiktoken's own variable, read by tiktoken; not one of peerqa's settings.
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
    return tiktoken.get_encoding("cl100k_base")


def count_tokens(text: str) -> int:
    """Tokens in cl100k_base, the encoding of OpenAI's current models."""
    return len(encoding().encode(text, disallowed_special=()))
