"""A small OpenAI-compatible HTTP server for tests: scripted chat replies, hashed embeddings.

It listens on 127.0.0.1 (a free port) in a daemon thread and serves
- ``POST /v1/chat/completions``: the next scripted ``Reply`` (plain JSON, or SSE when the request
  asks for ``stream``); a reply's content may be a function of the request body;
- ``POST /v1/embeddings``: deterministic hashed bag-of-words vectors over peerqa's stemmed
  tokens, so that dense retrieval is meaningful without a model.
Every request is recorded (path, headers, JSON body) in ``server.requests``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from peerqa.text import tokenize

Content = str | Callable[[dict[str, Any]], str]


@dataclass
class Reply:
    """One scripted answer to a chat request."""

    content: Content = ""
    status: int = 200
    error: str = "scripted error"
    code: str | None = None  # the error's code, e.g. "insufficient_quota"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # accept the request and never answer
    finish_reason: str = "stop"
    stream_fail_after: int | None = None  # drop the connection after this many SSE chunks
    trickle: float = 0.0  # seconds between pieces: SSE events, or a JSON body's pieces
    sse: bool = False  # answer with an event stream even when the request did not ask for one


def hashed_embedding(text: str, dim: int) -> list[float]:
    """A unit vector: each stemmed content token adds a signed one at a hashed position."""
    v = np.zeros(dim, dtype=np.float64)
    for tok in tokenize(text):
        h = int.from_bytes(hashlib.sha1(tok.encode()).digest()[:8], "little")
        v[h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    norm = float(np.linalg.norm(v))
    if norm == 0:
        v[0], norm = 1.0, 1.0
    return (v / norm).tolist()


class FakeOpenAI:
    """The server: start(), script chat replies, read ``requests``, stop()."""

    def __init__(self, embedding_dim: int = 64) -> None:
        self.embedding_dim = embedding_dim
        self.replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                server._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                server._send_json(self, 404, {"error": {"message": "not found"}})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases handlers that hang
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def script(self, *replies: Reply | str) -> None:
        """Queue chat replies, answered in order; a plain string is a 200 with that content."""
        for r in replies:
            self.replies.append(Reply(content=r) if isinstance(r, str) else r)

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].endswith("/chat/completions")]

    def embedding_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].endswith("/embeddings")]

    # -- serving ---------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(h, 400, {"error": {"message": "body is not JSON"}})
            return
        with self._lock:
            self.requests.append({"path": h.path, "headers": dict(h.headers), "body": body})
        if h.path.endswith("/chat/completions"):
            self._chat(h, body)
        elif h.path.endswith("/embeddings"):
            self._embeddings(h, body)
        else:
            self._send_json(h, 404, {"error": {"message": f"no route {h.path}"}})

    def _chat(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        with self._lock:
            reply = self.replies.popleft() if self.replies else None
        if reply is None:
            self._send_json(h, 400, {"error": {"message": "no scripted reply left"}})
            return
        if reply.hang:
            self._stop.wait(30)
            return
        if reply.status != 200:
            error = {"message": reply.error, "type": "test", "code": reply.code}
            self._send_json(h, reply.status, {"error": error}, reply.headers)
            return
        content = reply.content(body) if callable(reply.content) else reply.content
        model = body.get("model", "fake")
        if body.get("stream") or reply.sse:
            self._stream(h, content, model, reply)
            return
        usage = {"prompt_tokens": 100, "completion_tokens": len(content.split()),
                 "total_tokens": 100 + len(content.split())}
        self._send_json(h, 200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": reply.finish_reason}],
            "usage": usage,
        }, trickle=reply.trickle)

    def _stream(self, h: BaseHTTPRequestHandler, content: str, model: str, reply: Reply) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        h.end_headers()

        def event(delta: dict[str, Any], finish: str | None) -> None:
            if reply.trickle and self._stop.wait(reply.trickle):
                raise BrokenPipeError  # the server is stopping
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            h.wfile.flush()

        # Small pieces, cut inside words and markers, as real token streams are.
        pieces = [content[i : i + 7] for i in range(0, len(content), 7)]
        try:
            event({"role": "assistant", "content": ""}, None)
            for i, piece in enumerate(pieces):
                if reply.stream_fail_after is not None and i >= reply.stream_fail_after:
                    h.wfile.write(b"data: {\"broken")
                    h.wfile.flush()
                    h.close_connection = True
                    return
                event({"content": piece}, None)
            event({}, reply.finish_reason)
            h.wfile.write(b"data: [DONE]\n\n")
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        h.close_connection = True

    def _embeddings(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or any(
            not isinstance(t, str) or not t.strip() for t in inputs
        ):
            # What the real API does with an empty string in a batch.
            self._send_json(h, 400, {"error": {"message": "'$.input' is invalid"}})
            return
        data = []
        for i, text in enumerate(inputs):
            vec = hashed_embedding(text, self.embedding_dim)
            emb: Any = vec
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        data.reverse()  # the API does not promise order: clients must sort by index
        self._send_json(h, 200, {
            "object": "list", "data": data, "model": body.get("model", "fake"),
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        })

    def _send_json(
        self, h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any],
        headers: dict[str, str] | None = None, trickle: float = 0.0,
    ) -> None:
        data = json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            step = 16 if trickle else len(data) or 1
            for i in range(0, len(data), step):  # a body that trickles in, 16 bytes at a time
                if trickle and self._stop.wait(trickle):
                    return
                h.wfile.write(data[i : i + step])
                h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
