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

from functools import cached_property

import numpy as np

from .embeddings import TokenEmbedder
from .embeddings.integer import HeldRows, products
from .tables import TOKENS_KEPT, TokenVectors, quantised

CANDIDATES = 300
"""How many of a search's best passages late interaction reranks: every passage of the bundled
corpus (260), so its scores are standardised over all of them, as measured; a large corpus
pays for 300 passages a question. Reranking only the best 100 gave the same retrieval figures
cross-validated (hit@5 0.855 against 0.858) but moved the answerability thresholds fitted after
it to 0.084 wrongful partial answers (README, Evaluation)."""
BLOCK = 64
"""Chunks whose token rows are gathered and multiplied at once (about 5,000 int8 rows, 2 MB)."""


def maxsim(query_tokens: np.ndarray, tokens: TokenVectors, chunks: np.ndarray,
           held: HeldRows | None = None) -> np.ndarray:
    """For each of ``chunks``, the mean over the query's token vectors of the best cosine with
    one of the chunk's. A chunk without a token, or a query without one, scores 0.

    The query's rows are quantised to int8 as the stored ones are, and the products taken in
    integers (``embeddings.integer``), each side's scale applied to the products. Only the
    chunks' own rows are read from ``tokens`` (memory-mapped in an opened index), ``BLOCK``
    chunks at a time: the rest never enter memory. With ``held`` (every row of ``tokens``,
    handed to onnxruntime once) every row is multiplied and the chunks' scores picked out: the
    same numbers, bit for bit."""
    chunks = np.asarray(chunks, dtype=np.int64)
    out = np.zeros(len(chunks), dtype=np.float32)
    if not len(query_tokens):
        return out
    asked, asked_scale = quantised(query_tokens)
    if held is not None:
        every = _every(held.products(asked), asked_scale, tokens)
        picked: np.ndarray = every[chunks]
        return picked
    for at in range(0, len(chunks), BLOCK):
        block = chunks[at : at + BLOCK]
        lo, hi = tokens.start[block], tokens.start[block + 1]
        length = hi - lo
        if not length.sum():
            continue
        # The block's rows gathered together, so one product scores them all.
        begin = np.concatenate([[0], np.cumsum(length)[:-1]])
        index = np.repeat(lo - begin, length) + np.arange(int(length.sum()))
        sims = products(tokens.vectors[index], asked)  # (rows, query tokens)
        sims *= np.asarray(tokens.scale[index], dtype=np.float32)[:, None]
        sims *= asked_scale[None, :]
        filled = length > 0
        best = np.maximum.reduceat(sims, begin[filled], axis=0)  # (filled chunks, query tokens)
        out[at : at + BLOCK][filled] = best.mean(axis=1)
    return out


def _every(sims: np.ndarray, asked_scale: np.ndarray, tokens: TokenVectors) -> np.ndarray:
    """Every chunk's MaxSim from the integer products of all of ``tokens``' rows (rows, query
    tokens), computed as ``maxsim`` computes a block's."""
    sims *= np.asarray(tokens.scale, dtype=np.float32)[:, None]
    sims *= asked_scale[None, :]
    begin = np.asarray(tokens.start[:-1])
    filled = np.asarray(tokens.start[1:]) > begin
    out = np.zeros(len(begin), dtype=np.float32)
    if filled.any():  # empty chunks have no rows, so each filled one runs to the next's start
        out[filled] = np.maximum.reduceat(sims, begin[filled], axis=0).mean(axis=1)
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
    """The chunks' token vectors of one generation and the encoder that reads a question's.

    It keeps nothing of a question: the retriever keeps what ``read`` gives (``Retriever.read``).
    """

    def __init__(self, tokens: TokenVectors, reader: TokenEmbedder) -> None:
        self.tokens = tokens
        self.reader = reader
        self._searched = False

    @cached_property
    def held(self) -> HeldRows | None:
        """Every token row handed to onnxruntime once, when the file is one a process keeps
        (``tables.TOKENS_KEPT``): a search then multiplies the question by all of them at once
        (0.5 ms for the bundled corpus, where gathering its candidates' rows took 5).

        Handing them over costs about 66 ms (the bundled corpus, a 2-core Xeon), more than a
        question gains: ``rerank`` holds them from a process's second search on, so a one-off
        ``peerqa ask`` never pays for it and a serving process pays once."""
        if self.tokens.vectors.nbytes > TOKENS_KEPT:
            return None
        return HeldRows(np.asarray(self.tokens.vectors))

    def read(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """The query's vector and its content-token vectors: one pass of the encoder."""
        vector, found = self.reader.embed_query_tokens(query)
        return np.asarray(vector, dtype=np.float32), np.asarray(found, dtype=np.float32)

    def rerank(self, query_tokens: np.ndarray, scores: np.ndarray, mask: np.ndarray,
               weight: float) -> np.ndarray:
        """The search's scores with late interaction added to its best ``CANDIDATES``."""
        searchable = np.flatnonzero(mask)
        if len(searchable) > CANDIDATES:  # the best few, in no order: no full sort
            searchable = searchable[np.argpartition(-scores[searchable], CANDIDATES)[:CANDIDATES]]
        candidates = searchable
        held = self.held if self._searched else None  # the same numbers either way
        self._searched = True
        late = maxsim(query_tokens, self.tokens, candidates, held)
        self.tokens.forget()
        return rerank(scores, mask, late, candidates, weight)
