"""The gold evaluation set: loading it from JSONL and checking every item against the corpus."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

TYPES = ("factoid", "list", "explanatory", "multi-document", "follow-up", "unanswerable")
REQUIRED_FIELDS = ("id", "question", "answer", "key_facts", "evidence", "type")
OPTIONAL_FIELDS = ("history", "absent_terms", "expected_coverage", "missing")
ROLES = ("user", "assistant")
MAX_KEY_FACTS = 4
COVERAGES = ("answered", "partial", "not_covered")


@dataclass(frozen=True, slots=True)
class Evidence:
    """A verbatim quote from one document that supports a gold answer."""

    doc_id: str
    quote: str


@dataclass(frozen=True, slots=True)
class GoldItem:
    """One gold question with its reference answer, key facts and supporting quotes."""

    id: str
    question: str
    answer: str
    key_facts: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    type: str
    history: tuple[dict[str, str], ...] = ()
    absent_terms: tuple[str, ...] = ()
    expected_coverage: str = ""
    """What a good answer says of the documents' coverage: "answered" (the default for an
    answerable item), "partial" (they discuss the topic but lack what is asked) or "not_covered"
    (the default for an unanswerable item)."""
    missing: str = ""
    """For a partial or not-covered item: what the documents do not give, in a few words."""

    @property
    def coverage(self) -> str:
        """The expected coverage, with its default for the item's type."""
        if self.expected_coverage:
            return self.expected_coverage
        return "not_covered" if self.type == "unanswerable" else "answered"


_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def default_gold_path() -> Path:
    """The gold set: a checkout's evals/gold.jsonl, or the copy an installed wheel carries."""
    checkout = _PACKAGE_DIR.parent.parent / "evals" / "gold.jsonl"
    if checkout.is_file():
        return checkout
    return _PACKAGE_DIR / "_bundled_evals" / "gold.jsonl"


def _strings(value: Any, name: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: {name!r} must be a list of strings")
    return tuple(value)


def _evidence(value: Any, where: str) -> tuple[Evidence, ...]:
    if not isinstance(value, list):
        raise InputError(f"{where}: 'evidence' must be a list of {{doc_id, quote}} objects")
    out: list[Evidence] = []
    for k, ev in enumerate(value):
        if (
            not isinstance(ev, dict)
            or not isinstance(ev.get("doc_id"), str)
            or not isinstance(ev.get("quote"), str)
        ):
            raise InputError(
                f"{where}: evidence[{k}] must be an object with string 'doc_id' and 'quote'"
            )
        out.append(Evidence(doc_id=ev["doc_id"], quote=ev["quote"]))
    return tuple(out)


def _string(obj: dict[str, Any], name: str, where: str) -> str:
    value = obj.get(name, "")
    if not isinstance(value, str):
        raise InputError(f"{where}: {name!r} must be a string")
    return value


def _item(obj: Any, where: str) -> GoldItem:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: each line must be a JSON object, got {type(obj).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in obj]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
    for name in ("id", "question", "answer", "type"):
        if not isinstance(obj[name], str):
            raise InputError(f"{where}: {name!r} must be a string")
    history = obj.get("history", [])
    if not isinstance(history, list):
        raise InputError(f"{where}: 'history' must be a list of {{role, content}} objects")
    return GoldItem(
        id=obj["id"],
        question=obj["question"],
        answer=obj["answer"],
        key_facts=_strings(obj["key_facts"], "key_facts", where),
        evidence=_evidence(obj["evidence"], where),
        type=obj["type"],
        history=tuple(history),
        absent_terms=_strings(obj.get("absent_terms", []), "absent_terms", where),
        expected_coverage=_string(obj, "expected_coverage", where),
        missing=_string(obj, "missing", where),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise InputError(f"gold file {path} does not exist: write it or pass another path") from e
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"gold file {path} cannot be read as UTF-8 text: {e}") from e


def _parsed(path: Path, text: str) -> list[tuple[str, GoldItem | InputError]]:
    """(file:line, the item or why the line is not one) for every non-blank line."""
    out: list[tuple[str, GoldItem | InputError]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            out.append((where, InputError(f"{where}: not valid JSON ({e.msg} at column "
                                          f"{e.colno})")))
            continue
        try:
            out.append((where, _item(obj, where)))
        except InputError as e:
            out.append((where, e))
    return out


def load_gold(path: str | Path) -> list[GoldItem]:
    """Read a gold JSONL file; InputError with file:line on a malformed line or missing field."""
    path = Path(path)
    items: list[GoldItem] = []
    for _, parsed in _parsed(path, _read(path)):
        if isinstance(parsed, InputError):
            raise parsed
        items.append(parsed)
    return items


def check_gold_file(
    path: str | Path, documents: dict[str, str]
) -> tuple[list[GoldItem], list[str]]:
    """Every problem of a gold file, not only the first: lines that are not items (JSON,
    fields, types), unknown field names, and each item checked against the corpus texts."""
    path = Path(path)
    text = _read(path)
    items: list[GoldItem] = []
    problems: list[str] = []
    known = set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS)
    lines = [line for line in text.splitlines() if line.strip()]
    for (where, parsed), line in zip(_parsed(path, text), lines, strict=True):
        if isinstance(parsed, InputError):
            problems.append(str(parsed))
            continue
        items.append(parsed)
        unknown = sorted(set(json.loads(line)) - known)
        if unknown:
            problems.append(f"{where}: unknown field(s) {', '.join(unknown)} (known: "
                            f"{', '.join([*REQUIRED_FIELDS, *OPTIONAL_FIELDS])})")
    problems += validate_gold(items, documents)
    return items, problems


def _history_problem(history: tuple[dict[str, str], ...]) -> str | None:
    for k, turn in enumerate(history):
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            return f"history[{k}] must have exactly the keys 'role' and 'content'"
        if turn["role"] not in ROLES:
            return f"history[{k}] has role {turn['role']!r}, expected one of {ROLES}"
        if not isinstance(turn["content"], str) or not turn["content"].strip():
            return f"history[{k}] has empty content"
    return None


def _item_problems(item: GoldItem, documents: dict[str, str]) -> list[str]:
    problems: list[str] = []
    if item.type not in TYPES:
        problems.append(f"unknown type {item.type!r} (expected one of {', '.join(TYPES)})")
    if not item.question.strip():
        problems.append("empty question")
    if not item.answer.strip():
        problems.append("empty answer")
    if any(not fact.strip() for fact in item.key_facts):
        problems.append("empty key fact")
    answerable = item.type != "unanswerable"
    if item.expected_coverage and item.expected_coverage not in COVERAGES:
        problems.append(f"unknown expected_coverage {item.expected_coverage!r} "
                        f"(expected one of {', '.join(COVERAGES)})")
    if answerable:
        if not 1 <= len(item.key_facts) <= MAX_KEY_FACTS:
            problems.append(
                f"{len(item.key_facts)} key facts (an answerable item needs 1 to {MAX_KEY_FACTS})"
            )
        if not item.evidence:
            problems.append("answerable item without evidence")
    else:
        if item.key_facts:
            problems.append("unanswerable item with key facts (it must have none)")
        if item.evidence:
            problems.append("unanswerable item with evidence (it must have none)")
        if not item.absent_terms:
            problems.append("unanswerable item without absent_terms")
        if item.coverage == "answered":
            problems.append("unanswerable item expected to be answered")
    for k, ev in enumerate(item.evidence):
        if ev.doc_id not in documents:
            problems.append(f"evidence[{k}] has unknown doc_id {ev.doc_id!r}")
        elif not ev.quote:
            problems.append(f"evidence[{k}] has an empty quote")
        elif ev.quote not in documents[ev.doc_id]:
            problems.append(
                f"evidence[{k}] quote is not verbatim in {ev.doc_id}: {ev.quote[:60]!r}"
            )
    if item.type == "follow-up":
        if not item.history:
            problems.append("follow-up item without history")
        elif (problem := _history_problem(item.history)) is not None:
            problems.append(problem)
    elif item.history:
        problems.append(f"{item.type} item with history (only follow-up items have one)")
    for term in item.absent_terms:
        if not term.strip():
            problems.append("empty absent term")
            continue
        found = [doc_id for doc_id, text in documents.items() if term.lower() in text.lower()]
        if found:
            problems.append(f"absent term {term!r} occurs in {', '.join(sorted(found))}")
    if item.type == "multi-document" and len({ev.doc_id for ev in item.evidence}) < 2:
        problems.append("multi-document item with evidence from fewer than 2 documents")
    return problems


def validate_gold(items: list[GoldItem], documents: dict[str, str]) -> list[str]:
    """Every problem of the gold items against the corpus texts (doc_id -> text); [] if valid."""
    problems: list[str] = []
    seen: set[str] = set()
    for n, item in enumerate(items, start=1):
        label = item.id or f"item {n}"
        if not item.id.strip():
            problems.append(f"{label}: empty id")
        elif item.id in seen:
            problems.append(f"{label}: duplicate id")
        seen.add(item.id)
        problems.extend(f"{label}: {p}" for p in _item_problems(item, documents))
    return problems
