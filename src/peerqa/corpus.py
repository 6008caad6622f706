"""Loading a folder of documents and their manifest, keeping every text verbatim."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
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
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "icon\r"})
"""Files an operating system leaves in folders (besides hidden ones such as .DS_Store)."""
# Control characters that text never holds, as UTF-8 bytes (each is one byte and never part of
# a multi-byte character, so counting bytes counts characters).
_CONTROL = bytes([*range(0x01, 0x09), *range(0x0E, 0x20), 0x7F])
_MAX_CONTROL_SHARE = 0.01  # more control characters than this and the file is not text


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
    if not path.exists() and not path.is_symlink():
        return {}
    problem = skip_reason(path, directory)
    if problem:
        raise CorpusError(f"{path} cannot be read ({problem}): replace it with a JSON file")
    try:
        data = json.loads(read_bytes(path).decode("utf-8"))
        entries = data["documents"] if isinstance(data, dict) else data
        return {str(e["file"]): dict(e) for e in entries}
    except (ValueError, KeyError, TypeError, CorpusError) as e:
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


def skip_reason(path: Path, root: Path) -> str | None:
    """Why the entry ``path`` of the corpus folder ``root`` cannot be a document, or None.

    Decided from the name and from what the path resolves to, without opening it: hidden and
    system files, links that lead outside the folder (by resolved path), and anything that is
    not a regular file (folders, named pipes, sockets, devices) are left out with a reason.
    """
    name = path.name
    if name.startswith(".") or name.lower() in SYSTEM_FILES:
        return "hidden or system file"
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # a dangling link or a link loop
        return "unreadable: a link to a file that does not exist"
    if not target.is_relative_to(root.resolve()):
        return "a link to a file outside the corpus folder"
    try:
        mode = target.stat().st_mode
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    if stat.S_ISDIR(mode):
        return "a folder, not a file (documents in sub-folders are not read)"
    if not stat.S_ISREG(mode):
        return f"not a regular file (a {_kind(mode)})"
    return None


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def read_bytes(path: Path) -> bytes:
    """A regular file's bytes, at most MAX_FILE_BYTES, or CorpusError with the reason.

    The file is opened without blocking and checked again once open, so a path swapped for a
    named pipe after it was listed cannot hang the read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CorpusError(f"not a regular file (a {_kind(info.st_mode)})")
        if info.st_size > MAX_FILE_BYTES:
            raise CorpusError(f"larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise CorpusError(f"larger than {MAX_FILE_BYTES // 2**20} MiB")
    return data


def read_text(path: Path) -> str:
    """A file's text exactly as stored (no newline translation), or CorpusError with the reason.

    Binary content is looked for in the whole file: a NUL byte anywhere, or more control
    characters than text ever has.
    """
    data = read_bytes(path)
    nul = data.find(b"\0")
    if nul >= 0:
        raise CorpusError(f"binary file (a NUL byte at byte {nul})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"not UTF-8 (byte {e.start}): re-save it as UTF-8 text"
        ) from e
    if len(data) - len(data.translate(None, _CONTROL)) > _MAX_CONTROL_SHARE * len(text):
        raise CorpusError("binary file (too many control characters for text)")
    if not text or text.isspace():
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
    # Links come after real files, so a duplicate through a link never takes the file's place.
    for path in sorted(directory.iterdir(), key=lambda p: (p.is_symlink(), p.name)):
        if path.name == MANIFEST:
            continue
        problem = skip_reason(path, directory)
        if problem is None and path.suffix.lower() not in SUFFIXES:
            problem = f"not a {KINDS} file"
        if problem is not None:
            skipped.append(Skipped(path.name, problem))
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
    documents.sort(key=lambda d: Path(d.path).name)
    if not documents:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped) or f"no {KINDS} files"
        raise CorpusError(
            f"corpus folder {directory} has no usable document ({reasons}): "
            "add UTF-8 .txt or .md files, or PDF and Word (.docx) files with a text layer"
        )
    return Corpus(directory=directory, documents=tuple(documents), skipped=tuple(skipped))
