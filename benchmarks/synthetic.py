"""Synthetic corpora N times the bundled one, for the scale benchmark.

Copy ``i`` of each bundled document has its paragraphs rotated by ``i`` and a few words changed
in most paragraphs, so that its chunks differ from every other copy's (a corpus of identical
copies would be deduplicated away) while the text stays the documents' own prose. The first copy
is the bundled corpus itself. Deterministic: the same ``scale`` always gives the same files.

    python benchmarks/synthetic.py 10 /tmp/corpus-10x
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "corpus"
# Plain words swapped in for others of the same kind; chosen so the prose stays readable.
SWAPS = ["staff", "teams", "people", "services", "workers", "managers", "clinicians", "roles",
         "support", "training", "recovery", "practice", "evidence", "care", "experience"]
_WORD = re.compile(r"\b[a-z]{5,}\b")


def _vary(paragraph: str, rng: random.Random) -> str:
    """The paragraph with two or three of its longer lower-case words replaced."""
    spots = list(_WORD.finditer(paragraph))
    if len(spots) < 4:
        return paragraph
    chosen = sorted(rng.sample(spots, k=min(len(spots) // 4, rng.choice([2, 3]))),
                    key=lambda m: m.start())
    out, last = [], 0
    for m in chosen:
        out.append(paragraph[last : m.start()])
        out.append(rng.choice(SWAPS))
        last = m.end()
    out.append(paragraph[last:])
    return "".join(out)


def _copy_text(entry: dict[str, str], copy: int) -> tuple[str, str]:
    """Copy ``copy`` of a bundled document: its file name and text."""
    text = (BUNDLED / entry["file"]).read_text(encoding="utf-8")
    name = entry["file"] if copy == 0 else f"c{copy:03d}-{entry['file']}"
    if copy:
        seed = int.from_bytes(hashlib.sha256(f"{copy}:{name}".encode()).digest()[:8])
        rng = random.Random(seed)
        paragraphs = text.split("\n\n")
        head, body = paragraphs[:1], paragraphs[1:]  # the title line stays first
        turn = copy % max(1, len(body))
        body = body[turn:] + body[:turn]
        text = "\n\n".join(head + [_vary(p, rng) for p in body])
    return name, text


def _entry(entry: dict[str, object], name: str, copy: int) -> dict[str, object]:
    doc_id = entry["doc_id"] if copy == 0 else f"{entry['doc_id']}-c{copy:03d}"
    title = entry["title"] if copy == 0 else f"{entry['title']} (copy {copy})"
    return {**entry, "file": name, "doc_id": doc_id, "title": title, "short_title": title,
            "aliases": entry["aliases"] if copy == 0 else []}


def add_document(corpus: Path, copy: int, which: int = 1) -> str:
    """Add copy ``copy`` of the ``which``-th bundled document to a corpus folder made by
    ``make_corpus`` (a document that is new: its title and most of its sentences differ from
    every other copy's). Returns its doc_id."""
    manifest = json.loads((BUNDLED / "manifest.json").read_text(encoding="utf-8"))
    entry = manifest["documents"][which]
    name, text = _copy_text(entry, copy)
    (corpus / name).write_text(text, encoding="utf-8")
    own = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    added = _entry(entry, name, copy)
    own["documents"].append(added)
    (corpus / "manifest.json").write_text(json.dumps(own, indent=1), encoding="utf-8")
    return str(added["doc_id"])


def make_corpus(scale: int, dest: Path) -> Path:
    """Write the ``scale``x corpus to ``dest`` (kept if already complete) and return it."""
    done = dest.parent / f"{dest.name}.complete"
    if done.is_file() and done.read_text() == str(scale):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((BUNDLED / "manifest.json").read_text(encoding="utf-8"))
    entries = []
    for copy in range(scale):
        for entry in manifest["documents"]:
            name, text = _copy_text(entry, copy)
            (dest / name).write_text(text, encoding="utf-8")
            entries.append(_entry(entry, name, copy))
    (dest / "manifest.json").write_text(json.dumps({"documents": entries}, indent=1),
                                        encoding="utf-8")
    done.write_text(str(scale))
    return dest


if __name__ == "__main__":
    print(make_corpus(int(sys.argv[1]), Path(sys.argv[2])))
