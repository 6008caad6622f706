"""Text out of PDF and Word (.docx) files, through pypdf and python-docx.

The extracted text is what peerqa stores, indexes and quotes, so it is built once here, in a
fixed way: a PDF's pages joined by a line break (a sentence running over a page break stays
whole), with the offset where each page begins kept so that a passage can name its page; a Word
file's paragraphs in body order, blank-line separated, headings written as Markdown ``#`` lines
(so sections and the title come from them) and table rows as cells joined by `` | ``.

Both libraries are the optional extra ``peerqa[documents]``, imported on first use: without
them a PDF or .docx file is skipped with a reason that names the extra.
"""

from __future__ import annotations

import contextlib
import logging
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CorpusError

SUFFIXES = (".pdf", ".docx")
MAX_BYTES = 100 * 1024 * 1024
"""Larger than a text file's bound: a report's images make a PDF big, not its text."""
EXTRA = "pip install 'peerqa[documents]'"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""The header of an OLE compound file: an old .doc, or a password-protected Word file."""
_NO_TITLE = re.compile(
    r"^(?:untitled|document\d*|microsoft word\s*-.*|.*\.(?:docx?|pdf|rtf|odt))$", re.I
)
_HEADING_STYLE = re.compile(r"^(?:heading\s*(\d)|title)$", re.I)
_ENCRYPTED = "encrypted PDF (it needs a password): save a copy without a password"


@dataclass(frozen=True, slots=True)
class Extracted:
    """The text of one file as peerqa stores it, and what the file says about itself."""

    text: str
    page_starts: tuple[int, ...] = ()
    title: str = ""


def read_document(path: Path) -> Extracted:
    """The text of a .pdf or .docx file, or CorpusError with the reason it cannot be used."""
    suffix = path.suffix.lower()
    if path.stat().st_size > MAX_BYTES:
        raise CorpusError(f"larger than {MAX_BYTES // 2**20} MiB")
    if suffix == ".pdf":
        extracted = _read_pdf(path)
    elif suffix == ".docx":
        extracted = _read_docx(path)
    else:
        raise CorpusError(f"not a {' or '.join(SUFFIXES)} file")
    if not extracted.text.strip():
        raise CorpusError("no text in it")
    return extracted


def _title(value: Any) -> str:
    """A title from file metadata, unless it is a placeholder such as 'Microsoft Word - x.docx'."""
    title = " ".join(str(value or "").split())
    return "" if not title or _NO_TITLE.match(title) or len(title) > 200 else title


# --------------------------------------------------------------------------- PDF


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """A library's warnings held back while it reads: the skip reason says what matters."""
    log = logging.getLogger(logger)
    previous = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(previous)


def _read_pdf(path: Path) -> Extracted:
    try:
        from pypdf import PdfReader
        from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError
    except ImportError:
        raise CorpusError(f"a PDF, and the PDF reader is not installed: {EXTRA}") from None
    try:
        with _quiet("pypdf"):
            reader = PdfReader(path)
            # Many PDFs are encrypted with an owner password only: they open with an empty one.
            if reader.is_encrypted and not reader.decrypt(""):
                raise CorpusError(_ENCRYPTED)
            pages = [(page.extract_text() or "").replace("\x00", "") for page in reader.pages]
            info = reader.metadata
            title = _title(info.title if info is not None else "")
    except (FileNotDecryptedError, DependencyError):
        raise CorpusError(_ENCRYPTED) from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, NotImplementedError, zlib.error) as e:
        raise CorpusError(f"not a readable PDF ({type(e).__name__}: {e})"[:300]) from None
    if not pages:
        raise CorpusError("a PDF without pages")
    if not any(p.strip() for p in pages):
        raise CorpusError(
            f"no text layer in its {len(pages)} page(s) (a scanned PDF?): run OCR on it, "
            "e.g. ocrmypdf, and add the result"
        )
    starts, pos = [], 0
    for n, page in enumerate(pages):
        starts.append(pos)
        pos += len(page) + (1 if n < len(pages) - 1 else 0)
    return Extracted("\n".join(pages), tuple(starts), title)


# --------------------------------------------------------------------------- Word


def _read_docx(path: Path) -> Extracted:
    try:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
        from lxml.etree import XMLSyntaxError
    except ImportError:
        raise CorpusError(f"a Word file, and the Word reader is not installed: {EXTRA}") from None
    with path.open("rb") as f:
        if f.read(len(_OLE)) == _OLE:
            raise CorpusError(
                "a password-protected or old-format Word file: save it as .docx without a "
                "password"
            )
    try:
        document = docx.Document(str(path))
        blocks = [b for b in (_block(item) for item in document.iter_inner_content()) if b]
        title = _title(document.core_properties.title)
    except PackageNotFoundError:
        raise CorpusError(
            "not a readable Word file (not a .docx package: damaged, or another format renamed)"
        ) from None
    except (zipfile.BadZipFile, XMLSyntaxError, ValueError, KeyError, OSError) as e:
        raise CorpusError(f"not a readable Word file ({type(e).__name__}: {e})"[:300]) from None
    return Extracted("\n\n".join(blocks) + ("\n" if blocks else ""), (), title)


def _block(item: Any) -> str:
    """One paragraph (a heading as a Markdown heading) or one table, as stored text."""
    if hasattr(item, "rows"):  # a table: one line per row
        rows = []
        for row in item.rows:
            cells = [" ".join(c.text.split()) for c in row.cells]
            unique = [c for i, c in enumerate(cells) if c and (i == 0 or c != cells[i - 1])]
            if unique:
                rows.append(" | ".join(unique))
        return "\n".join(rows)
    text = str(item.text).replace("\x00", "").strip()
    if not text:
        return ""
    style = item.style.name if item.style is not None else ""
    match = _HEADING_STYLE.match(style or "")
    if match and "\n" not in text:
        level = int(match.group(1)) if match.group(1) else 1
        return "#" * max(1, min(level, 6)) + " " + text
    return text
