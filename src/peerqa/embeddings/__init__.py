"""Embedders: the interface, the local MiniLM encoder and the OpenAI-compatible one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .base import BaseEmbedder, Embedder, TokenEmbedder, token_embedder
from .local import LocalEmbedder
from .minilm import local_model_dir
from .openai import OpenAIEmbedder

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = [
    "BaseEmbedder",
    "Embedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "TokenEmbedder",
    "get_embedder",
    "local_model_dir",
    "token_embedder",
]


def get_embedder(settings: Settings) -> Embedder:
    """The embedder chosen by ``settings.embedding_backend``."""
    backend = settings.embedding_backend
    if backend == "local":
        return LocalEmbedder(runtime=settings.local_runtime,
                             cache_dir=settings.resolved_model_cache_dir,
                             precision=settings.local_precision)
    if backend == "openai":
        return OpenAIEmbedder(settings)
    raise ConfigurationError(f"unknown embedding_backend {backend!r}: use 'local' or 'openai'")
