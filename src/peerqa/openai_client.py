"""The OpenAI-compatible HTTP transport: one client, bounded retries, errors that say what to do.

Below both of its users, the OpenAI embedder and the written answers. The ``openai`` package is
imported on first use, so offline work never pays for it. The key is scrubbed from every message.
A written answer has one deadline for everything (requests, retries, waits and a stream that
trickles): ``call`` and ``iterate`` take it, and the HTTP work runs in a helper thread that the
caller stops waiting for when the deadline passes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .errors import BackendAuthError, BackendError, BackendTimeoutError, ConfigurationError

if TYPE_CHECKING:
    from openai import OpenAI

    from .settings import Settings

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_RETRY_AFTER = 20.0  # seconds; a server asking for a longer wait gets no retry

_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9]*)[A-Za-z0-9_\-]{6,}")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")

T = TypeVar("T")



def scrub(text: str, secret: str | None) -> str:
    """``text`` with the key, key-like tokens and bearer credentials replaced by ***."""
    if secret:
        text = text.replace(secret, "***")
    text = _BEARER.sub("Bearer ***", text)
    return _KEYLIKE.sub(r"\1***", text)


def _where(base_url: str) -> str:
    """scheme://host[:port] of the endpoint: never a path, user name or password."""
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else host


class OpenAIBackend:
    """One OpenAI-compatible endpoint: the client, bounded retries, errors that say what to do."""

    def __init__(self, settings: Settings, purpose: str = "answer_mode='openai'") -> None:
        key = settings.openai_api_key.get_secret_value().strip() if settings.openai_api_key else ""
        if not key and not settings.openai_base_url:
            raise ConfigurationError(
                f"{purpose} needs a key: set OPENAI_API_KEY (or PEERQA_OPENAI_API_KEY), or point "
                "PEERQA_OPENAI_BASE_URL at a local OpenAI-compatible server"
            )
        self._key = key or "no-key"  # local servers (vLLM, Ollama) accept any key
        self.base_url = (settings.openai_base_url or DEFAULT_BASE_URL).rstrip("/")
        self.where = _where(self.base_url)
        self.timeout = settings.openai_timeout
        self.max_retries = settings.openai_max_retries
        self._client: OpenAI | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.where!r})"

    @property
    def client(self) -> OpenAI:
        with self._lock:
            if self._client is None:
                from openai import OpenAI

                # Retries are ours (bounded, capped Retry-After, no retry of timeouts).
                self._client = OpenAI(
                    api_key=self._key, base_url=self.base_url, timeout=self.timeout, max_retries=0
                )
            return self._client

    def scrub(self, text: str) -> str:
        return scrub(text, self._key)

    def call(
        self, request: Callable[[OpenAI], T], what: str, deadline: float | None = None
    ) -> T:
        """Run ``request`` with retries on 429, 5xx and refused connections; map failures.

        ``what`` names the service in messages: "chat model", "embedding model". With a
        ``deadline`` (a ``time.monotonic()`` value), every attempt and wait fits before it, and
        BackendTimeoutError is raised when it passes, whatever the server is doing.
        """
        import openai

        attempt = 0
        while True:
            try:
                if deadline is None:
                    return request(self.client)
                client = self.client.with_options(timeout=self._remaining(deadline, what))
                return _before(deadline, functools.partial(request, client), self.timed_out(what))
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                status = getattr(exc, "status_code", None)
                retriable = not isinstance(exc, openai.APITimeoutError) and (
                    status is None or status >= 500 or (status == 429 and not _out_of_quota(exc))
                )
                wait = self._retry_wait(exc, attempt)
                if wait is not None and deadline is not None and (
                    time.monotonic() + wait >= deadline
                ):
                    wait = None  # no time is left for another attempt
                if not retriable or attempt >= self.max_retries or wait is None:
                    raise self.error(exc, what, attempt) from (
                        None if self._leaks(exc) else exc
                    )
                log.info("%s: retrying in %.1f s after %s", what, wait, self.scrub(str(exc))[:200])
                time.sleep(wait)
                attempt += 1
            except openai.OpenAIError as exc:
                raise self.error(exc, what, attempt) from (None if self._leaks(exc) else exc)

    def iterate(
        self, stream: Iterable[T], what: str, deadline: float | None = None
    ) -> Iterator[T]:
        """The items of a streamed response; a failure mid-stream becomes a BackendError.

        It is not retried: what was already read stands. With a ``deadline``, the stream is read
        by a helper thread and BackendTimeoutError ends it when the deadline passes, however
        slowly the server sends; the stream is then closed.
        """
        import httpx
        import openai

        items = stream if deadline is None else _pumped(stream, deadline, self.timed_out(what))
        try:
            yield from items
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            raise self.error(exc, what) from (None if self._leaks(exc) else exc)

    def _remaining(self, deadline: float, what: str) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self.timed_out(what)
        return remaining

    def timed_out(self, what: str) -> BackendTimeoutError:
        """The error for an answer that missed its deadline."""
        return BackendTimeoutError(
            f"the {what} at {self.where} did not answer within {self.timeout:g} s: "
            "try again later, or raise PEERQA_OPENAI_TIMEOUT"
        )

    def unreadable(self, what: str, reply: object) -> BackendError:
        """The error for a reply that is not the JSON asked for (such as an event stream sent
        to a request that did not ask for one)."""
        kind = "an event stream" if "data:" in str(reply)[:200] else type(reply).__name__
        return BackendError(
            f"the {what} at {self.where} sent a reply peerqa cannot read ({kind}, not the JSON "
            "it asked for): check that PEERQA_OPENAI_BASE_URL points at an OpenAI-compatible API"
        )

    def _leaks(self, exc: BaseException) -> bool:
        body = getattr(exc, "body", None)
        return self._key in str(exc) or self._key in repr(body)

    @staticmethod
    def _retry_wait(exc: Exception, attempt: int) -> float | None:
        """Seconds to wait before retry ``attempt + 1``; None when the server asks too much."""
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        after: float | None = None
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                after = float(str(headers.get(name))) * scale
                break
            except (TypeError, ValueError):
                continue
        if after is not None and math.isfinite(after) and after > 0:
            return after if after <= MAX_RETRY_AFTER else None
        return min(0.5 * 2.0**attempt, 8.0) * (1 - 0.25 * random.random())

    def error(self, exc: BaseException, what: str, retries: int = 0) -> BackendError:
        """A BackendError that says what failed and what to do, with the key scrubbed out."""
        import httpx
        import openai

        where = self.where
        tried = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
        detail = self.scrub(_server_message(exc))[:300]
        status = getattr(exc, "status_code", None)
        if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
            return self.timed_out(what)
        if status == 401:
            return BackendAuthError(
                f"the {what} at {where} rejected the API key (HTTP 401): set a valid key "
                "in OPENAI_API_KEY (or PEERQA_OPENAI_API_KEY)"
            )
        if status == 403:
            return BackendAuthError(
                f"the {what} at {where} refused this key access "
                f"(HTTP 403{_colon(detail)}): "
                "check the key's project and model permissions"
            )
        if status == 404:
            model = "PEERQA_OPENAI_" + ("EMBEDDING_MODEL" if "embedding" in what else "MODEL")
            return BackendError(
                f"the {what} at {where} has no such model or endpoint (HTTP 404"
                f"{_colon(detail)}): check {model} and PEERQA_OPENAI_BASE_URL"
            )
        if status == 429 and _out_of_quota(exc):
            return BackendError(
                f"the {what} at {where} says the account has no quota left (HTTP 429"
                f"{_colon(detail)}): check the account's billing and limits"
            )
        if status == 429:
            return BackendError(
                f"the {what} at {where} is rate limiting requests (HTTP 429{tried}"
                f"{_colon(detail)}): wait a minute and try again, or check the account's limits"
            )
        if status is not None and status >= 500:
            return BackendError(
                f"the {what} at {where} failed (HTTP {status}{tried}): try again later"
            )
        if status is not None:
            return BackendError(
                f"the {what} at {where} refused the request (HTTP {status}"
                f"{_colon(detail)}): check the model and settings"
            )
        if isinstance(exc, (openai.APIConnectionError, httpx.TransportError)):
            return BackendError(
                f"cannot reach the {what} at {where}{tried}: check PEERQA_OPENAI_BASE_URL "
                "and the network"
            )
        return BackendError(f"the {what} at {where} failed ({type(exc).__name__}"
                            f"{_colon(detail)})")


def _before(deadline: float, work: Callable[[], T], late: BaseException) -> T:
    """``work()`` run in a helper thread; ``late`` is raised if it has not ended by the deadline
    (the thread is left to end on its own, and what it returns then is closed)."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)
    abandoned = threading.Event()

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the caller
            box.put((False, exc))
            return
        box.put((True, result))
        if abandoned.is_set():
            _close(result)

    threading.Thread(target=run, name="peerqa-openai", daemon=True).start()
    try:
        ok, value = box.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        abandoned.set()
        with contextlib.suppress(queue.Empty):
            _close(box.get_nowait()[1])
        raise late from None
    if not ok:
        raise value
    result: T = value
    return result


def _pumped(stream: Iterable[T], deadline: float, late: BaseException) -> Iterator[T]:
    """The stream's items, read by a helper thread, until the deadline; then ``late``."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def pump() -> None:
        try:
            for item in stream:
                if stop.is_set():
                    return
                items.put(("item", item))
            items.put(("end", None))
        except BaseException as exc:  # handed to the reader
            items.put(("error", exc))

    threading.Thread(target=pump, name="peerqa-openai-stream", daemon=True).start()
    try:
        while True:
            try:
                kind, value = items.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise late from None
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        _close(stream)  # a server still sending finds the connection gone


def _close(value: object) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


def _out_of_quota(exc: BaseException) -> bool:
    """OpenAI's 429 for an exhausted balance: waiting will not help, so it is not retried."""
    body = getattr(exc, "body", None)
    inner = body.get("error", body) if isinstance(body, Mapping) else None
    return isinstance(inner, Mapping) and inner.get("code") == "insufficient_quota"


def _colon(detail: str) -> str:
    return f": {detail}" if detail else ""


def _server_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return "" if getattr(exc, "status_code", None) else str(exc)
