"""The embedder interface: texts in, L2-normalised float32 vectors of a fixed width out.

An embedder implements ``embed_documents``; ``embed_query`` is built on it by ``BaseEmbedder``.
Anything with the same four members works (a test's deterministic fake, for one). An embedder
that can also give each content token's own vector (``TokenEmbedder``) lets retrieval match a
question's words against a passage's one by one (late interaction); one that cannot (an API)
simply goes without that signal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

Progress = Callable[[int], None]
"""Called with the number of texts just embedded."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    name: str
    """Identifies the model and its settings: an index built with another name is rebuilt."""
    dim: int

    def embed_documents(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


@runtime_checkable
class TokenEmbedder(Protocol):
    """An embedder that also gives the contextual vector of each content token of a text."""

    token_version: str
    """Identifies how token vectors are made (which tokens are kept): an index built with
    another is rebuilt."""

    def embed_tokens(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> list[np.ndarray]:
        """For each text, an (n_tokens, dim) float32 array of unit rows: its content tokens
        (no stop word, punctuation or special token) in context."""
        ...

    def embed_query_tokens(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``embed_query(text)`` and ``embed_tokens([text])[0]`` together (one pass)."""
        ...

    def embed_documents_and_tokens(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``embed_documents(texts)`` and ``embed_tokens(texts)`` together (one pass)."""
        ...


def token_embedder(embedder: Embedder) -> TokenEmbedder | None:
    """The embedder as a ``TokenEmbedder``, or None when it gives no token vectors."""
    return embedder if isinstance(embedder, TokenEmbedder) else None


class BaseEmbedder:
    """One method to write, ``embed_documents``; a query is a batch of one."""

    name: str
    dim: int

    def embed_documents(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> np.ndarray:
        raise NotImplementedError

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one text as a (dim,) float32 unit vector."""
        vector: np.ndarray = self.embed_documents([text])[0]
        return vector
