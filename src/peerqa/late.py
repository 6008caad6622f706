"""Late interaction: a question's words matched one by one against a passage's words.

One vector per passage blurs what a question asks: "relapse" and "became unwell" meet only if the
whole passage happens to point the same way. Here each content word of the question finds its
closest content word of the passage, both read in context by the encoder (MiniLM's last layer
before pooling), and the similarities are averaged: ColBERT's MaxSim, on the local model's own
token states, with nothing fitted on the gold set.

It reranks what the fused score already found: the best ``CANDIDATES`` of a search get its score,
standardised over them, weighted and added; the others keep theirs, lowered by the smallest
amount given to a candidate so that none overtakes one for want of a score. The cost is then the
same for a corpus of any size (about 23,000 token vectors a question: 300 chunks).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .embeddings import TokenEmbedder
from .tables import TokenVectors

CANDIDATES = 300
"""How many of a search's best passages late interaction reranks: every passage of the bundled
corpus (260), so its scores are standardised over all of them, as measured; a large corpus
pays for 300 passages a question. Reranking only the best 100 gave the same retrieval figures
cross-validated (hit@5 0.855 against 0.858) but moved the answerability thresholds fitted after
it to 0.084 wrongful partial answers (README, Evaluation)."""
BLOCK = 64
"""Chunks whose token rows are widened to float32 at once (about 5,000 rows, 8 MB)."""
CACHE = 512
"""Questions whose token vectors are kept, as for their vectors."""


def maxsim(query_tokens: np.ndarray, tokens: TokenVectors, chunks: np.ndarray) -> np.ndarray:
    """For each of ``chunks``, the mean over the query's token vectors of the best cosine with
    one of the chunk's. A chunk without a token, or a query without one, scores 0.

    Only the chunks' own rows are read from ``tokens`` (memory-mapped in an opened index) and
    widened to float32 for the product, ``BLOCK`` chunks at a time: the rest never enter
    memory, and a search holds a few MB of float32 rows, not all its candidates' (30 MB)."""
    chunks = np.asarray(chunks, dtype=np.int64)
    out = np.zeros(len(chunks), dtype=np.float32)
    if not len(query_tokens):
        return out
    for at in range(0, len(chunks), BLOCK):
        block = chunks[at : at + BLOCK]
        lo, hi = tokens.start[block], tokens.start[block + 1]
        length = hi - lo
        if not length.sum():
            continue
        # The block's rows gathered together, so one product scores them all.
        begin = np.concatenate([[0], np.cumsum(length)[:-1]])
        index = np.repeat(lo - begin, length) + np.arange(int(length.sum()))
        sims = tokens.similarities(query_tokens, index)
        filled = length > 0
        best = np.maximum.reduceat(sims, begin[filled], axis=1)  # (query tokens, filled chunks)
        out[at : at + BLOCK][filled] = best.mean(axis=0)
    return out


def rerank(scores: np.ndarray, mask: np.ndarray, late: np.ndarray, candidates: np.ndarray,
           weight: float) -> np.ndarray:
    """``scores`` with ``weight`` times the standardised late-interaction scores ``late`` (one per
    candidate) added to the ``candidates``; every other searchable chunk gets the smallest
    addition, so the candidates' order among the rest is theirs to lose only on the merits."""
    if not len(candidates) or not weight:
        return scores
    spread = float(late.std())
    standard = (late - float(late.mean())) / spread if spread > 0 else np.zeros_like(late)
    out = np.asarray(scores, dtype=np.float64) + np.where(mask, weight * float(standard.min()), 0)
    out[candidates] = scores[candidates] + weight * standard
    return out


class LateInteraction:
    """The chunks' token vectors of one generation and the encoder that reads a question's."""

    def __init__(self, tokens: TokenVectors, reader: TokenEmbedder) -> None:
        self.tokens = tokens
        self.reader = reader
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _keep(self, query: str, found: np.ndarray) -> None:
        with self._lock:
            self._cache[query] = found
            while len(self._cache) > CACHE:
                self._cache.popitem(last=False)

    def read(self, query: str) -> np.ndarray:
        """The query's vector, its token vectors kept for ``rerank``: one pass of the encoder."""
        vector, found = self.reader.embed_query_tokens(query)
        self._keep(query, found)
        return np.asarray(vector, dtype=np.float32)

    def query_tokens(self, query: str) -> np.ndarray:
        """The query's content-token vectors (read now unless ``read`` kept them)."""
        with self._lock:
            found = self._cache.get(query)
            if found is not None:
                self._cache.move_to_end(query)
                return found
        found = self.reader.embed_tokens([query])[0]
        self._keep(query, found)
        return found

    def rerank(self, query: str, scores: np.ndarray, mask: np.ndarray,
               weight: float) -> np.ndarray:
        """The search's scores with late interaction added to its best ``CANDIDATES``."""
        searchable = np.flatnonzero(mask)
        if len(searchable) > CANDIDATES:  # the best few, in no order: no full sort
            searchable = searchable[np.argpartition(-scores[searchable], CANDIDATES)[:CANDIDATES]]
        candidates = searchable
        late = maxsim(self.query_tokens(query), self.tokens, candidates)
        self.tokens.forget()
        return rerank(scores, mask, late, candidates, weight)
