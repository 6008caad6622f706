"""How the app is exposed: who may listen where, which routes are refused, the launch call.

Loopback needs no login; any other address needs credentials, and blank ones are refused. The
app serves no files, so Gradio's file, proxy and upload routes answer 403 whatever their
encoding. ``ApiGuard`` refuses what a browser page of another site could send: a request whose
``Origin`` is neither the app's own nor one of ``PEERQA_APP_ALLOWED_ORIGINS`` (``null``
included), and, on loopback, a ``Host`` that is not a loopback name (DNS rebinding). Internal
handlers (the chat's ``respond``) are not API endpoints: their named routes answer 403, and the
queue runs them only for the app's own page.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .errors import ConfigurationError
from .settings import Settings

if TYPE_CHECKING:
    import gradio as gr

QUEUE_CONCURRENCY = 4
QUEUE_MAX_SIZE = 64
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
STATIC = Path(__file__).resolve().parent / "static"
CSS = (STATIC / "app.css").read_text(encoding="utf-8")
HEAD = (STATIC / "head.html").read_text(encoding="utf-8")
"""Clicking a [n] marker opens that answer's source n and scrolls to it; the chat scrolls to
each new answer's first line. The narrow-screen style is here, not in CSS, because Gradio scopes
CSS to inside the app's frame."""

def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def launch_auth(settings: Settings) -> tuple[str, str] | None:
    """Credentials for launch(): none on loopback; required anywhere else; never blank."""
    user = settings.app_username
    password = settings.app_password.get_secret_value() if settings.app_password else None
    for name, value in (("PEERQA_APP_USERNAME", user), ("PEERQA_APP_PASSWORD", password)):
        if value is not None and not value.strip():
            raise ConfigurationError(
                f"{name} is blank: set a real user name and password, or unset both to run the "
                "app on 127.0.0.1 without a login"
            )
    if is_loopback(settings.host):
        return (user, password) if user and password else None
    if not (user and password):
        raise ConfigurationError(
            f"listening on {settings.host} would let other machines reach the app: set "
            "PEERQA_APP_USERNAME and PEERQA_APP_PASSWORD to require a login, or listen on "
            "127.0.0.1 (PEERQA_HOST=127.0.0.1)"
        )
    return (user, password)


_REFUSED = re.compile(
    r"(?:^|/)(?:file=|file/|proxy=|upload(?=/|\s|$)|upload_progress|process_recording"
    r"|stream/.*/playlist-file|run-history|vibe-|monitoring)"
)


class RefuseFileRoutes:
    """ASGI middleware: the app serves no files, so Gradio's file, proxy and upload routes, 403."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            path = scope.get("path") or ""
            raw = (scope.get("raw_path") or b"").decode("latin-1")
            probe = path + " " + raw
            for _ in range(3):  # encoded, double-encoded, triple-encoded
                probe = unquote(probe)
            if _REFUSED.search(probe.lower().replace("\\", "/")):
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body", "body": b"Not available.\n"})
                return
        await self.app(scope, receive, send)


Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_NAMED_ROUTE = re.compile(r"^/gradio_api/(?:call/v2|call|run|api)/([^/]+)")
_BY_INDEX = re.compile(r"^/gradio_api/(?:queue/join|run/predict)/?$")
_MAX_BODY = 8 * 2**20


def _origin_parts(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or URL, ports defaulted; None when it is not one."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _host_parts(host: str) -> tuple[str, int | None] | None:
    """(name, port or None) of a Host header."""
    try:
        parts = urlsplit("//" + host)
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


class ApiGuard:
    """ASGI middleware: cross-origin requests, foreign Host names and internal handlers, 403.

    ``public`` names the API endpoints (``gr.api``'s); ``private`` holds the function indexes of
    the other handlers, which the queue runs only for a browser page of the app itself.
    """

    def __init__(
        self,
        app: Any,
        allowed_origins: Collection[str] = (),
        public: Collection[str] = (),
        private: Collection[int] = (),
        loopback: bool = True,
    ) -> None:
        self.app = app
        self.allowed = {p for p in map(_origin_parts, allowed_origins) if p}
        self.public = set(public)
        self.private = set(private)
        self.loopback = loopback

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers") or ()}
        refusal = self._refusal(scope.get("path") or "", headers)
        if refusal is None and scope["type"] == "http" and scope.get("method") == "POST" \
                and _BY_INDEX.match(scope.get("path") or "") and "origin" not in headers:
            body, receive = await _buffered(receive)
            refusal = self._private_call(body)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": refusal.encode() + b"\n"})

    def _refusal(self, path: str, headers: dict[str, str]) -> str | None:
        host = _host_parts(headers.get("host", ""))
        if self.loopback and (host is None or not (
            is_loopback(host[0]) or any(host[0] == a[1] for a in self.allowed)
        )):
            return "Unknown host."
        origin = headers.get("origin")
        if origin is not None and not self._same_or_allowed(origin, host):
            return "Cross-origin request refused."
        named = _NAMED_ROUTE.match(path)
        if named and named.group(1) != "predict" and named.group(1) not in self.public:
            return "Not an API endpoint."
        return None

    def _same_or_allowed(self, origin: str, host: tuple[str, int | None] | None) -> bool:
        parts = _origin_parts(origin.strip())
        if parts is None:  # "null" (a sandboxed page, a file) or garbage
            return False
        if parts in self.allowed:
            return True
        if host is None:
            return False
        # The page's own origin: its host and port are the ones the request was sent to.
        return parts[1] == host[0] and (host[1] is None or parts[2] == host[1])

    def _private_call(self, body: bytes) -> str | None:
        """A request by function index, without the Origin every browser sends, for an internal
        handler: a script calling what only the app's page may."""
        try:
            fn_index = json.loads(body or b"{}").get("fn_index")
        except (ValueError, AttributeError):
            return None  # Gradio answers malformed bodies itself
        return "Not an API endpoint." if fn_index in self.private else None


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The request body (up to _MAX_BODY), and a receive that replays it to the app."""
    messages: list[Message] = []
    body = b""
    while len(body) <= _MAX_BODY:
        message = await receive()
        messages.append(message)
        if message.get("type") != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body"):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return body, replay


def endpoints(blocks: gr.Blocks) -> tuple[set[str], set[int]]:
    """The public API names of ``blocks``, and the function indexes of everything else."""
    public: set[str] = set()
    private: set[int] = set()
    for fn in blocks.fns.values():
        if getattr(fn, "api_visibility", "public") == "public" and fn.api_name:
            public.add(str(fn.api_name))
        else:
            private.add(int(fn._id))
    return public, private


def launch(
    blocks: gr.Blocks,
    settings: Settings,
    blocked: Sequence[str | Path] = (),
    prevent_thread_lock: bool = True,
) -> str:
    """Start the server with the safe defaults; returns the local URL."""
    from starlette.middleware import Middleware

    auth = launch_auth(settings)
    public, private = endpoints(blocks)
    blocks.queue(
        default_concurrency_limit=QUEUE_CONCURRENCY, max_size=QUEUE_MAX_SIZE, api_open=False
    )
    _, url, _ = blocks.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=False,
        show_error=False,
        auth=auth,
        allowed_paths=[],
        blocked_paths=[str(Path(p).resolve()) for p in blocked],
        max_file_size="1kb",
        enable_monitoring=False,
        mcp_server=False,
        pwa=False,
        ssr_mode=False,
        run_history=False,
        footer_links=["api"],
        quiet=True,
        inbrowser=False,
        prevent_thread_lock=prevent_thread_lock,
        app_kwargs={"middleware": [
            Middleware(RefuseFileRoutes),
            Middleware(ApiGuard, allowed_origins=settings.allowed_origins, public=public,
                       private=private, loopback=is_loopback(settings.host)),
        ]},
        css=CSS,
        head=HEAD,
    )
    return url
