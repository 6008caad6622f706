"""peerqa with the fake embedder, for tests that need a second process without loading MiniLM.

    python tests/fake_peerqa.py index CORPUS INDEX      -> IndexInfo as JSON
    python tests/fake_peerqa.py search CORPUS INDEX K Q... -> {query: [chunk ids]} as JSON
Chroma's location comes from PEERQA_CHROMA_HOST / PEERQA_CHROMA_PORT as usual.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from peerqa import Assistant
from tests.helpers import FakeEmbedder


def main(argv: list[str]) -> int:
    command, corpus, index, *rest = argv
    assistant = Assistant(corpus_dir=corpus, index_dir=index, embedder=FakeEmbedder())
    if command == "index":
        print(json.dumps(dataclasses.asdict(assistant.index())))
    elif command == "search":
        k, *queries = rest
        print(json.dumps({q: [p.chunk_id for p in assistant.search(q, k=int(k))]
                          for q in queries}))
    else:
        raise SystemExit(f"unknown command {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
