"""Loading a folder of documents and their manifest, keeping every text verbatim."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import readers
from .errors import CorpusError, CorpusNotFoundError
from .text import HEADING
from .types import Document

TEXT_SUFFIXES = (".txt", ".md")
SUFFIXES = (*TEXT_SUFFIXES, *readers.SUFFIXES)
KINDS = ".txt, .md, .pdf or .docx"
MANIFEST = "manifest.json"
MAX_FILE_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file left out of the corpus, and why."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Corpus:
    """The usable documents of a folder, and the files skipped with their reasons."""

    directory: Path
    documents: tuple[Document, ...]
    skipped: tuple[Skipped, ...] = field(default=())

    def get(self, doc_id: str) -> Document:
        for doc in self.documents:
            if doc.doc_id == doc_id:
                return doc
        raise KeyError(doc_id)

    @property
    def fingerprint(self) -> str:
        """A hash of every document's id and content: changes when the corpus does."""
        h = hashlib.sha256()
        for doc in sorted(self.documents, key=lambda d: d.doc_id):
            # A PDF's page breaks, too: chunks never cross one, so moving one means re-chunking.
            pages = f"\0{doc.page_starts}" if doc.page_starts else ""
            h.update(f"{doc.doc_id}\0{doc.sha256}\0{doc.title}\0{doc.keywords}{pages}\n".encode())
        return h.hexdigest()


def _read_manifest(directory: Path) -> dict[str, dict[str, Any]]:
    path = directory / MANIFEST
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["documents"] if isinstance(data, dict) else data
        return {str(e["file"]): dict(e) for e in entries}
    except (ValueError, KeyError, TypeError) as e:
        raise CorpusError(
            f"{path} is not a valid manifest ({e}): it must be JSON like "
            '{"documents": [{"file": "a.txt", "title": "..."}]}; fix or remove it'
        ) from e


def _title_from_text(text: str, path: Path) -> str:
    match = HEADING.search(text)
    if match:
        return re.sub(r"[*_`]+", "", match.group(2)).strip() or path.stem
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= 120 else path.stem.replace("_", " ").replace("-", " ")
    return path.stem


def _doc_id(path: Path) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")
    return slug or "document"


def read_text(path: Path) -> str:
    """A file's text exactly as stored (no newline translation), or CorpusError with the reason."""
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise CorpusError(f"larger than {MAX_FILE_BYTES // 2**20} MiB")
    if b"\0" in data[:8192]:
        raise CorpusError("binary file (contains NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"not UTF-8 (byte {e.start}): re-save it as UTF-8 text"
        ) from e
    if not text.strip():
        raise CorpusError("empty file")
    return text


def read_file(path: Path) -> readers.Extracted:
    """The text peerqa stores for one file: a text file as it is, a PDF or Word file extracted."""
    if path.suffix.lower() in readers.SUFFIXES:
        return readers.read_document(path)
    return readers.Extracted(read_text(path))


def load_corpus(directory: str | Path) -> Corpus:
    """Read every .txt, .md, .pdf and .docx file of ``directory``; skip unusable ones with a
    reason."""
    directory = Path(directory).expanduser()
    if not directory.exists():
        raise CorpusNotFoundError(
            f"corpus folder {directory} does not exist: create it or point "
            f"PEERQA_CORPUS_DIR (or --corpus) at a folder of {KINDS} files"
        )
    if not directory.is_dir():
        raise CorpusError(
            f"{directory} is not a folder: point the corpus at a folder of {KINDS} files"
        )
    manifest = _read_manifest(directory)
    documents: list[Document] = []
    skipped: list[Skipped] = []
    seen_hash: dict[str, str] = {}
    seen_ids: set[str] = set()
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in SUFFIXES)
    for path in files:
        if path.is_dir():
            continue
        try:
            extracted = read_file(path)
        except CorpusError as e:
            skipped.append(Skipped(path.name, str(e)))
            continue
        except OSError as e:
            skipped.append(Skipped(path.name, f"unreadable: {e.strerror or e}"))
            continue
        text = extracted.text
        # The hash of the stored text: a PDF or Word file whose text changes is re-indexed.
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if digest in seen_hash:
            skipped.append(Skipped(path.name, f"duplicate of {seen_hash[digest]}"))
            continue
        meta = manifest.get(path.name, {})
        doc_id = str(meta.get("doc_id") or _doc_id(path))
        if doc_id in seen_ids:
            skipped.append(Skipped(path.name, f"document id {doc_id!r} is already used"))
            continue
        seen_hash[digest] = path.name
        seen_ids.add(doc_id)
        title = str(meta.get("title") or extracted.title or _title_from_text(text, path))
        documents.append(
            Document(
                doc_id=doc_id,
                title=title,
                text=text,
                path=str(path),
                sha256=digest,
                short_title=str(meta.get("short_title") or title),
                authors=tuple(meta.get("authors") or ()),
                organisation=str(meta.get("organisation") or ""),
                year=meta.get("year"),
                date_note=str(meta.get("date_note") or ""),
                kind=str(meta.get("kind") or ""),
                url=meta.get("url"),
                keywords=tuple(str(k) for k in meta.get("keywords") or ()),
                aliases=tuple(str(k) for k in meta.get("aliases") or ()),
                page_starts=extracted.page_starts,
            )
        )
    ignored = sorted(
        p.name for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() not in SUFFIXES and p.name != MANIFEST
        and not p.name.startswith(".")
    )
    skipped.extend(Skipped(name, f"not a {KINDS} file") for name in ignored)
    if not documents:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped) or f"no {KINDS} files"
        raise CorpusError(
            f"corpus folder {directory} has no usable document ({reasons}): "
            "add UTF-8 .txt or .md files, or PDF and Word (.docx) files with a text layer"
        )
    return Corpus(directory=directory, documents=tuple(documents), skipped=tuple(skipped))
