"""The local embedder: all-MiniLM-L6-v2 on onnxruntime, or in numpy where that cannot run.

``runtime`` chooses: ``auto`` (onnxruntime, falling back to numpy when onnxruntime, or onnx for a
graph not yet built, is not installed), ``onnx`` (onnxruntime or an error) or ``numpy`` (the
reference). ``precision`` chooses onnxruntime's graph: ``fp32`` (the default) or ``int8`` (weights
quantised: a question about 1.5x faster here, vectors within cosine 0.97 of float32). The float32
graph and numpy give the same vectors (within 1e-6 of each other, 1e-5 of sentence-transformers),
so they share one name and an index built with either is reused by the other; the int8 graph's
vectors differ a little, so its name ends in ``:int8`` and its index is its own. numpy runs
float32 only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InputError, ModelError
from ..text import STOPWORDS
from . import minilm
from .base import BaseEmbedder, Progress
from .minilm import DEFAULT_MAX_TOKENS, INSTALL_HINT, MODEL_NAME, WEIGHTS_SHA256
from .minilm_onnx import PRECISIONS, OnnxEncoder, Precision
from .threads import BUILD_THREADS, QUERY_THREADS, blas_threads

Runtime = Literal["auto", "onnx", "numpy"]
RUNTIMES: tuple[Runtime, ...] = ("auto", "onnx", "numpy")
ONNX_HINT = "pip install onnxruntime onnx"
TOKEN_VERSION = "content-wordpieces-1"
"""Which tokens ``embed_tokens`` keeps: word pieces with a letter or digit that are not a stop
word, nor [CLS] or [SEP]."""
BATCH_TOKENS = 512
"""Most tokens in one padded batch. Small batches stay in cache: measured 1.3x less CPU and
half the peak memory than with 4,096 (2 workers, texts of ~160 tokens)."""


class LocalEmbedder(BaseEmbedder):
    """all-MiniLM-L6-v2, offline: 384-dim vectors equal to sentence-transformers' within 1e-5."""

    def __init__(
        self,
        model_dir: Path | None = None,
        batch_size: int = 32,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        *,
        runtime: Runtime = "auto",
        cache_dir: Path | None = None,
        precision: Precision = "fp32",
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        if runtime not in RUNTIMES:
            raise InputError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
        if precision not in PRECISIONS:
            raise InputError(
                f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        directory = Path(model_dir) if model_dir is not None else minilm.local_model_dir()
        if not directory.is_dir():
            raise ModelError(
                f"The embedding model folder {directory} does not exist. "
                f"Install the model with: {INSTALL_HINT}"
            )
        minilm.check_files(directory, ("tokenizer.json", "config.json"))
        config = minilm.read_config(directory)
        if not 2 <= max_tokens <= config.max_positions:
            raise InputError(
                f"max_tokens must be between 2 and {config.max_positions}, got {max_tokens}"
            )
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.dim: int = config.hidden
        self._directory = directory
        self._tokenizer = minilm.load_tokenizer(directory, max_tokens)
        self._model: minilm.Model | None = None
        self._onnx: OnnxEncoder | None = None
        if runtime != "numpy":
            self._onnx = self._onnx_encoder(cache_dir, precision, required=runtime == "onnx")
        if self._onnx is None:
            self._model = minilm.load_model(directory)
        self.runtime = "onnxruntime" if self._onnx is not None else "numpy"
        self.precision: Precision = self._onnx.precision if self._onnx is not None else "fp32"
        # Every runtime checks the weights against the pinned hash (the graph is built only from
        # them): the hash prefix ties an index to these exact weights. A non-default truncation
        # gives different vectors for long texts, and so does the int8 graph: both are part of
        # the identity too.
        suffix = "" if max_tokens == DEFAULT_MAX_TOKENS else f":max{max_tokens}"
        if self.precision == "int8":
            suffix += ":int8"
        self.name: str = f"local:{MODEL_NAME}:{WEIGHTS_SHA256[:8]}{suffix}"

    def _onnx_encoder(self, cache_dir: Path | None, precision: Precision, *,
                      required: bool) -> OnnxEncoder | None:
        """The onnxruntime encoder; None (numpy stands in) when it cannot run and not required."""
        try:
            return OnnxEncoder(cache_dir, lambda: minilm.load_model(self._directory), precision)
        except ImportError as exc:
            if required:
                raise ModelError(
                    f"embedding runtime 'onnx' needs onnxruntime and onnx ({exc}): install them "
                    f"with `{ONNX_HINT}` or set PEERQA_LOCAL_RUNTIME=numpy"
                ) from exc
            return None
        except ModelError:
            if required:
                raise
            return None

    token_version = TOKEN_VERSION

    def __repr__(self) -> str:
        return (f"LocalEmbedder(name={self.name!r}, runtime={self.runtime!r}, "
                f"precision={self.precision!r}, batch_size={self.batch_size})")

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, stripped first as sentence-transformers does."""
        if len(texts) == 1:
            # A question: encode_batch would hand one text to the tokenizer's thread pool, which
            # waits for a time slice when other processes hold the cores.
            return [self._tokenizer.encode(str(texts[0]).strip()).ids]
        encodings = self._tokenizer.encode_batch([str(s).strip() for s in texts])
        return [e.ids for e in encodings]

    def _plan(self, ids: list[list[int]]) -> tuple[list[list[int]], int]:
        """Indices in length-sorted batches of at most batch_size texts and BATCH_TOKENS tokens,
        and the threads to run them on: one for a question or a small call (what fits one
        batch), two for a build (see threads.py).

        Sorted, a batch pads each text by a few tokens at most; the token bound keeps the
        attention scores of long texts (batch x 12 x length^2 floats) small.
        """
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batches: list[list[int]] = []
        for i in order:
            if batches and len(batches[-1]) < self.batch_size \
                    and (len(batches[-1]) + 1) * len(ids[i]) <= BATCH_TOKENS:
                batches[-1].append(i)
            else:
                batches.append([i])
        threads = QUERY_THREADS if len(batches) <= 1 else BUILD_THREADS
        if self.precision == "int8":
            # The int8 graph quantises each run's activations with one scale for the whole
            # batch, so a text's vector would depend on the texts beside it (measured: cosine
            # 0.96 between a sentence read alone and in a batch). Each text is read alone: its
            # vector is a function of the text, whatever else is embedded with it or before
            # it (reused vectors, an added document, the answer's cache of words). Alone, the
            # int8 graph reads 8,200 tokens/s on one core here; batched, 10,200.
            batches = [[i] for i in order]
        return batches, threads

    def embed_documents(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> np.ndarray:
        """Embed texts as an (n, dim) float32 array of unit rows, in input order."""
        if isinstance(texts, str):
            raise InputError("embed_documents expects a sequence of texts, not one string")
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        ids = self.tokenize(texts)
        batches, threads = self._plan(ids)

        def done(i: int, vectors: np.ndarray) -> None:
            out[batches[i]] = vectors
            if progress is not None:
                progress(len(batches[i]))

        seqs = [[ids[i] for i in batch] for batch in batches]
        if self._onnx is not None:
            self._onnx.encode_batches(seqs, threads, done)
            return out
        assert self._model is not None
        with blas_threads(threads):
            for i, batch_ids in enumerate(seqs):
                done(i, minilm.encode(self._model, batch_ids))
        return out

    def embed_tokens(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> list[np.ndarray]:
        """For each text, its content tokens' last-layer states as unit rows (float32), in order:
        the word pieces that carry meaning, each read in its context."""
        return self._read(texts, progress, vectors=False)[1]

    def embed_documents_and_tokens(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``embed_documents(texts)`` and ``embed_tokens(texts)`` from one pass of the encoder
        (a build needs both for every chunk): the same batches, so the same numbers."""
        return self._read(texts, progress, vectors=True)

    def _read(
        self, texts: Sequence[str], progress: Progress | None, *, vectors: bool
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        if isinstance(texts, str):
            raise InputError("embed_tokens expects a sequence of texts, not one string")
        pooled = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return pooled, []
        if len(texts) == 1:
            encodings = [self._tokenizer.encode(str(texts[0]).strip())]
        else:
            encodings = self._tokenizer.encode_batch([str(s).strip() for s in texts])
        ids = [e.ids for e in encodings]
        keep = [np.array([_content(t) for t in e.tokens], dtype=bool) for e in encodings]
        out: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)
        batches, threads = self._plan(ids)

        def done(i: int, result: Any) -> None:
            found, states = result if vectors else (None, result)
            if found is not None:
                pooled[batches[i]] = found
            for row, x in zip(batches[i], states, strict=True):
                kept = np.asarray(x[keep[row]], dtype=np.float32)
                norms = np.linalg.norm(kept, axis=1, keepdims=True)
                out[row] = kept / np.maximum(norms, np.float32(1e-12))
            if progress is not None:
                progress(len(batches[i]))

        seqs = [[ids[i] for i in batch] for batch in batches]
        if self._onnx is not None:
            self._onnx.encode_batches(seqs, threads, done, tokens=not vectors, both=vectors)
            return pooled, out
        assert self._model is not None
        with blas_threads(threads):
            for i, batch_ids in enumerate(seqs):
                done(i, minilm.encode_with_states(self._model, batch_ids) if vectors
                     else minilm.token_states(self._model, batch_ids))
        return pooled, out


    def embed_query_tokens(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``embed_query(text)`` and ``embed_tokens([text])[0]`` from one pass of the encoder:
        a question needs both, and the encoder is most of a question's time."""
        pooled, tokens = self._read([text], None, vectors=True)
        return pooled[0], tokens[0]


def _content(piece: str) -> bool:
    """Whether a word piece carries meaning: a letter or digit, not a stop word nor special."""
    if piece in ("[CLS]", "[SEP]", "[PAD]", "[UNK]"):
        return False
    return any(c.isalnum() for c in piece) and piece not in STOPWORDS
