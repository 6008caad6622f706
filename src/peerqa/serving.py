"""How the app is exposed: who may listen where, which routes are refused, the launch call.

Loopback needs no login; any other address needs credentials. The app serves no files, so
Gradio's file, proxy and upload routes answer 403 whatever their encoding.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

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
    """Credentials for launch(): none on loopback; required anywhere else."""
    user = settings.app_username
    password = settings.app_password.get_secret_value() if settings.app_password else None
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


def launch(
    blocks: gr.Blocks,
    settings: Settings,
    blocked: Sequence[str | Path] = (),
    prevent_thread_lock: bool = True,
) -> str:
    """Start the server with the safe defaults; returns the local URL."""
    from starlette.middleware import Middleware

    auth = launch_auth(settings)
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
        app_kwargs={"middleware": [Middleware(RefuseFileRoutes)]},
        css=CSS,
        head=HEAD,
    )
    return url
