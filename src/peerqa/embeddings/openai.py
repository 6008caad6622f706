"""Vectors from an OpenAI-compatible ``/v1/embeddings`` endpoint (embedding_backend=openai)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BackendError, InputError
from ..openai_client import OpenAIBackend
from ..text import encoding
from .base import BaseEmbedder, Progress

if TYPE_CHECKING:
    from ..settings import Settings

_F32 = np.float32

OPENAI_EMBEDDING_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
OPENAI_MAX_INPUT_TOKENS = 8191  # per input, for OpenAI's embedding models
OPENAI_BATCH_TOKENS = 100_000  # per request; the API allows 300,000


class OpenAIEmbedder(BaseEmbedder):
    """Vectors from an OpenAI-compatible ``/v1/embeddings`` endpoint: batched, no empty inputs.

    Empty or blank texts are never sent (the API rejects them); they get a fixed unit vector.
    Texts over the model's input limit are cut to it. Vectors are re-normalised in float32,
    since OpenAI-compatible servers do not all normalise.
    """

    def __init__(
        self,
        settings: Settings,
        batch_size: int = 256,
        max_batch_tokens: int = OPENAI_BATCH_TOKENS,
    ) -> None:
        if batch_size < 1 or max_batch_tokens < 1:
            raise InputError("batch_size and max_batch_tokens must be at least 1")
        self.model = settings.openai_embedding_model
        self.batch_size = min(batch_size, 2048)  # the API's limit on inputs per request
        self.max_batch_tokens = max_batch_tokens
        self._backend = OpenAIBackend(settings, purpose="embedding_backend='openai'")
        self._dim: int | None = OPENAI_EMBEDDING_DIMS.get(self.model)
        # The model id is the index's identity: a new model means a rebuilt index.
        self.name: str = f"openai:{self.model}"

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(name={self.name!r}, batch_size={self.batch_size})"

    @property
    def dim(self) -> int:
        """The vectors' width; asked of the server once when the model is not a known one."""
        if self._dim is None:
            self._dim = int(self._request(["dimension probe"]).shape[1])
        return self._dim

    @dim.setter
    def dim(self, value: int) -> None:
        self._dim = value

    def _request(self, texts: list[str]) -> np.ndarray:
        response = self._backend.call(
            lambda client: client.embeddings.create(
                model=self.model, input=texts, encoding_format="float"
            ),
            "embedding model",
        )
        rows = sorted(response.data, key=lambda d: d.index)
        if len(rows) != len(texts):
            raise BackendError(
                f"the embedding model at {self._backend.where} returned {len(rows)} vectors "
                f"for {len(texts)} texts: check PEERQA_OPENAI_EMBEDDING_MODEL"
            )
        vectors = np.asarray([r.embedding for r in rows], dtype=_F32)
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))[:, None]
        vectors /= np.maximum(norms, _F32(1e-12))
        return vectors

    def embed_documents(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> np.ndarray:
        """Embed texts as an (n, dim) float32 array of unit rows, in input order."""
        if isinstance(texts, str):
            raise InputError("embed_documents expects a sequence of texts, not one string")
        tokens_of = encoding()
        found: dict[int, np.ndarray] = {}
        batch: list[tuple[int, str]] = []
        batch_tokens = 0

        def send() -> None:
            nonlocal batch, batch_tokens
            if not batch:
                return
            vectors = self._request([t for _, t in batch])
            if self._dim is None:
                self._dim = vectors.shape[1]
            elif vectors.shape[1] != self._dim:
                raise BackendError(
                    f"the embedding model at {self._backend.where} returned "
                    f"{vectors.shape[1]}-dimensional vectors, expected {self._dim}: check "
                    "PEERQA_OPENAI_EMBEDDING_MODEL"
                )
            for (i, _), v in zip(batch, vectors, strict=True):
                found[i] = v
            if progress is not None:
                progress(len(batch))
            batch, batch_tokens = [], 0

        for i, raw in enumerate(texts):
            text = str(raw)
            if not text.strip():
                continue
            tokens = tokens_of.encode(text, disallowed_special=())
            if len(tokens) > OPENAI_MAX_INPUT_TOKENS:
                tokens = tokens[:OPENAI_MAX_INPUT_TOKENS]
                text = tokens_of.decode(tokens)
            if batch and (len(batch) >= self.batch_size
                          or batch_tokens + len(tokens) > self.max_batch_tokens):
                send()
            batch.append((i, text))
            batch_tokens += len(tokens)
        send()
        n = len(texts)
        out = np.empty((n, self.dim), dtype=_F32)
        blank = np.full(self.dim, 1.0 / math.sqrt(self.dim), dtype=_F32)
        for i in range(n):
            out[i] = found.get(i, blank)
        if progress is not None and n > len(found):
            progress(n - len(found))
        return out
