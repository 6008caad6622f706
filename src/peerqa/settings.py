"""One settings object: the only place that reads the environment.

Precedence: defaults < environment (``PEERQA_*``, and ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``)
< explicit arguments. ``python -m peerqa.settings`` prints the README's settings table.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError, InputError

_PACKAGE_DIR = Path(__file__).resolve().parent
MAX_K = 50
"""The most passages a search or an answer may ask for."""
_ORIGIN = re.compile(r"https?://(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?")


def bundled_corpus_dir() -> Path:
    """The five documents shipped with peerqa: the checkout's corpus/ or the wheel's copy."""
    checkout = _PACKAGE_DIR.parent.parent / "corpus"
    if (checkout / "manifest.json").is_file():
        return checkout
    return _PACKAGE_DIR / "_bundled_corpus"


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "peerqa"


def documents_index_dir(key: str) -> Path:
    """The default index folder of documents given in code (``Assistant.from_documents``)."""
    return _cache_root() / f"documents-{key}"


class Settings(BaseSettings):
    """peerqa's settings. Each field reads ``PEERQA_<NAME>`` from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="PEERQA_", extra="ignore", validate_assignment=True, populate_by_name=True
    )

    # Corpus and index
    corpus_dir: Path | None = Field(
        None,
        description="Folder of .txt/.md/.pdf/.docx files to index; default: the bundled corpus.",
    )
    index_dir: Path | None = Field(
        None,
        description="Where the index lives; default: ~/.cache/peerqa/<corpus name>-<hash>.",
    )
    chroma_host: str | None = Field(
        None,
        description="Use a Chroma server (`chroma run`) at this host instead of embedded Chroma.",
    )
    chroma_port: int = Field(8000, description="Port of the Chroma server.")
    tuning_file: Path | None = Field(
        None,
        description="Parameters fitted on the gold set (`peerqa tune`); default: the shipped ones.",
    )

    # Chunking
    chunk_target_words: int = Field(110, ge=20, description="Chunks grow to about this many words.")
    chunk_max_words: int = Field(
        150, ge=30, description="Hard bound on a chunk's words: a citation stays short."
    )

    # Embeddings
    embedding_backend: Literal["local", "openai"] = Field(
        "local", description="`local`: all-MiniLM-L6-v2, offline; `openai`: the API."
    )
    local_runtime: Literal["auto", "onnx", "numpy"] = Field(
        "auto",
        description="How the local model runs: `onnx` (onnxruntime), `numpy` (the reference), "
        "or `auto` (onnxruntime, numpy where it is not installed).",
    )
    local_precision: Literal["fp32", "int8"] = Field(
        "fp32",
        description="onnxruntime's MiniLM graph: `fp32` (the same vectors as numpy and "
        "sentence-transformers) or `int8` (weights quantised once from the pinned ones: "
        "questions about 1.5x and builds 2x faster here, vectors within cosine 0.97 of fp32, "
        "retrieval and declines a little lower; see README). numpy runs fp32 only. Each has its "
        "own index and its own shipped tuning.",
    )
    model_cache_dir: Path | None = Field(
        None,
        description="Where the local model's onnxruntime graph is cached (built once from the "
        "pinned weights); default: ~/.cache/peerqa/models.",
    )
    openai_embedding_model: str = Field(
        "text-embedding-3-small", description="Embedding model when embedding_backend=openai."
    )

    # Retrieval
    top_k: int = Field(5, ge=1, le=MAX_K, description="Passages returned by search.")
    answer_k: int = Field(6, ge=1, le=20, description="Passages an answer may draw on.")
    fusion: Literal["zscore", "rrf"] = Field(
        "zscore", description="How BM25 and dense scores combine: standardised sum, or RRF."
    )
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant (fusion=rrf).")
    bm25_weight: float = Field(0.25, ge=0, description="Weight of BM25 in fusion.")
    dense_weight: float = Field(0.45, ge=0, description="Weight of chunk vectors in fusion.")
    sentence_weight: float = Field(
        0.3, ge=0, description="Weight of a chunk's best-matching sentence vector in fusion."
    )
    tokens_weight: float = Field(
        0.75, ge=0, description="Weight of late interaction, added to the fused best 300: how "
        "well each question word's vector finds its closest word in the chunk (local model only)."
    )
    mention_boost: float = Field(
        1.0, ge=0, description="Boost for passages of a document the question names (e.g. 'Fife')."
    )

    # Answers
    answer_mode: Literal["extractive", "openai"] = Field(
        "extractive", description="`extractive`: verbatim sentences, offline; `openai`: written."
    )
    max_sentences: int = Field(4, ge=1, le=12, description="Sentences in an extractive answer.")
    max_list_sentences: int = Field(
        6, ge=1, le=12, description="Sentences for list-type questions (what are the ways...)."
    )
    max_question_chars: int = Field(
        1000, ge=10, description="Longest question accepted, in characters."
    )
    min_coverage: float = Field(
        0.12,
        ge=0,
        le=1,
        description="Abstain when retrieved passages cover less than this share of the question.",
    )

    # OpenAI backend
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("PEERQA_OPENAI_API_KEY", "OPENAI_API_KEY", "openai_api_key"),
        description="API key (OPENAI_API_KEY also works). Never logged.",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "PEERQA_OPENAI_BASE_URL", "OPENAI_BASE_URL", "openai_base_url"
        ),
        description="OpenAI-compatible endpoint (OPENAI_BASE_URL also works).",
    )
    openai_model: str = Field("gpt-4.1-mini", description="Chat model for answer_mode=openai.")
    openai_timeout: float = Field(
        30.0, gt=0, description="Seconds a written answer may take in all (requests, retries, "
        "the stream); then the offline answer stands in."
    )
    openai_max_retries: int = Field(2, ge=0, le=6, description="Retries on 429 and 5xx.")
    openai_context_window: int = Field(
        128_000, ge=1024, description="Tokens the chat model accepts; the prompt is cut to fit."
    )
    openai_answer_tokens: int = Field(
        800, ge=64, description="Tokens kept free for the written answer (its maximum length)."
    )
    openai_unsupported: Literal["drop", "flag"] = Field(
        "drop", description="Written sentences the cited passages do not support: drop or flag."
    )
    strict: bool = Field(
        False, description="Fail instead of falling back to an extractive answer."
    )

    # App
    host: str = Field("127.0.0.1", description="Address the Gradio app listens on.")
    port: int = Field(7860, description="Port of the Gradio app.")
    app_username: str | None = Field(None, description="Required to listen beyond 127.0.0.1.")
    app_password: SecretStr | None = Field(None, description="Required to listen beyond 127.0.0.1.")
    app_allowed_origins: str = Field(
        "",
        description="Other origins whose pages may call the app (comma-separated "
        "scheme://host[:port], e.g. the address a reverse proxy serves it at); any other is "
        "refused.",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_target_words > self.chunk_max_words:
            raise ConfigurationError(
                "chunk_target_words must not exceed chunk_max_words: "
                f"set PEERQA_CHUNK_TARGET_WORDS <= {self.chunk_max_words}"
            )
        for origin in self.allowed_origins:
            if not _ORIGIN.fullmatch(origin):
                raise ConfigurationError(
                    f"PEERQA_APP_ALLOWED_ORIGINS: {origin!r} is not an origin: write each as "
                    "scheme://host[:port] with no path, e.g. https://peerqa.example.org"
                )
        return self

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """The configured origins, lower-cased, without a trailing slash."""
        return tuple(
            o.strip().rstrip("/").lower() for o in self.app_allowed_origins.split(",") if o.strip()
        )

    @property
    def resolved_corpus_dir(self) -> Path:
        return Path(self.corpus_dir).expanduser() if self.corpus_dir else bundled_corpus_dir()

    @property
    def resolved_index_dir(self) -> Path:
        if self.index_dir:
            return Path(self.index_dir).expanduser()
        corpus = self.resolved_corpus_dir.resolve()
        digest = hashlib.sha256(str(corpus).encode()).hexdigest()[:10]
        return _cache_root() / f"{corpus.name}-{digest}"


    @property
    def resolved_model_cache_dir(self) -> Path:
        if self.model_cache_dir:
            return Path(self.model_cache_dir).expanduser()
        return _cache_root() / "models"


def load_settings(base: Settings | None = None, **overrides: Any) -> Settings:
    """Settings from the environment (or ``base``) with ``overrides`` on top, validated.

    Invalid values raise ConfigurationError naming the variable to fix, not pydantic's error.
    """
    try:
        if base is None:
            return Settings(**overrides)
        if not overrides:
            return base
        return Settings.model_validate({**base.model_dump(), **overrides})
    except ValidationError as e:
        problems = []
        for err in e.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"PEERQA_{name.upper()}: {message}" if err["loc"] else message)
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None


def check_k(k: object) -> int:
    """``k`` as a number of passages, or InputError saying what is allowed."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InputError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
    return k


def settings_table() -> str:
    """The README's settings table, from the field descriptions."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = "" if default in (None, "") else f"`{default}`"
        rows.append(f"| `PEERQA_{name.upper()}` | {shown} | {info.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
