"""The exceptions peerqa raises. Every message says what went wrong and how to fix it.

PeerQAError
├── ConfigurationError (ValueError)      a setting is missing or contradicts another
├── InputError (ValueError)              a question, query or argument that cannot be used
├── CorpusError                          the corpus folder cannot give any usable document
│   └── CorpusNotFoundError (FileNotFoundError)
├── ModelError                           the local embedding model is missing or corrupt
├── StoreError                           the index on disk or on a Chroma server
│   ├── IndexLockedError                 another process is writing the same index
│   ├── IndexDamagedError                a generation's files do not match what it recorded
│   └── IndexNotFoundError (FileNotFoundError)
└── BackendError                         the OpenAI-compatible backend failed
    ├── BackendAuthError                 the key was rejected (never retried)
    └── BackendTimeoutError (TimeoutError)
"""

from __future__ import annotations


class PeerQAError(Exception):
    """Base class of every error peerqa raises on purpose."""


class ConfigurationError(PeerQAError, ValueError):
    """A setting is missing, malformed or contradicts another."""


class InputError(PeerQAError, ValueError):
    """A question, query or argument that cannot be used as given."""


class CorpusError(PeerQAError):
    """The corpus folder gives no usable document."""


class CorpusNotFoundError(CorpusError, FileNotFoundError):
    """The corpus folder does not exist."""


class ModelError(PeerQAError):
    """The local embedding model's files are missing or do not match their pinned hash."""


class StoreError(PeerQAError):
    """The index could not be read or written."""


class IndexLockedError(StoreError):
    """Another process holds the index's write lock."""


class IndexDamagedError(StoreError):
    """The live index generation's files are missing, cut short or changed: rebuild it."""

    def __init__(self, message: str, problem: str = "") -> None:
        super().__init__(message)
        self.problem = problem or message


class IndexNotFoundError(StoreError, FileNotFoundError):
    """No index has been built at the given location."""


class BackendError(PeerQAError):
    """The OpenAI-compatible backend failed."""


class BackendAuthError(BackendError):
    """The backend rejected the API key."""


class BackendTimeoutError(BackendError, TimeoutError):
    """The backend did not answer in time."""
