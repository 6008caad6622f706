"""peerqa: answers about mental-health Peer Support Workers, built from cited, verbatim passages.

    from peerqa import Assistant
    answer = Assistant().ask("What training do peer workers need?")
"""

from .assistant import Assistant
from .corpus import Corpus, load_corpus
from .errors import (
    BackendAuthError,
    BackendError,
    BackendTimeoutError,
    ConfigurationError,
    CorpusError,
    CorpusNotFoundError,
    IndexLockedError,
    IndexNotFoundError,
    InputError,
    ModelError,
    PeerQAError,
    StoreError,
)
from .indexing import IndexInfo
from .settings import Settings
from .types import (
    Answer,
    AnswerChecks,
    AnswerPart,
    Chunk,
    Citation,
    Conflict,
    ConflictSide,
    Document,
    Passage,
)

__all__ = [
    "Answer",
    "AnswerChecks",
    "AnswerPart",
    "Assistant",
    "BackendAuthError",
    "BackendError",
    "BackendTimeoutError",
    "Chunk",
    "Citation",
    "Conflict",
    "ConflictSide",
    "ConfigurationError",
    "Corpus",
    "CorpusError",
    "CorpusNotFoundError",
    "Document",
    "IndexInfo",
    "IndexLockedError",
    "IndexNotFoundError",
    "InputError",
    "ModelError",
    "Passage",
    "PeerQAError",
    "Settings",
    "StoreError",
    "load_corpus",
]
__version__ = "0.1.0"
