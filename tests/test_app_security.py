"""The app's exposure rules: cross-origin and foreign-host requests refused, internal handlers
not callable, blank credentials refused, errors in words without server paths, a new index
picked up while running. The real server runs on 127.0.0.1 over a tiny corpus whose embeddings
come from the fake OpenAI-compatible server (no model to load in either process)."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerqa import Assistant, Settings
from peerqa.app import Handlers, build_app
from peerqa.errors import ConfigurationError, IndexDamagedError
from peerqa.render import friendly_error
from peerqa.serving import ApiGuard, launch_auth
from tests.helpers import REPO, TINY, RunningApp, app_env, running_app
from tests.openai_server import FakeOpenAI

QUESTION = "How often should peer workers get supervision?"
PRISON = "# Prison peer teams\n\nPrison peer teams meet every Wednesday with their supervisor.\n"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def embeddings() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def _settings(workdir: Path, server: FakeOpenAI) -> dict[str, str]:
    return {
        "corpus_dir": str(workdir / "corpus"),
        "index_dir": str(workdir / "index"),
        "embedding_backend": "openai",
        "openai_embedding_model": "fake-embed",
        "openai_api_key": "sk-test-not-a-real-key-000000",
        "openai_base_url": server.base_url,
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, embeddings: FakeOpenAI) -> Iterator[RunningApp]:
    workdir = tmp_path_factory.mktemp("app-security")
    shutil.copytree(TINY, workdir / "corpus")
    with running_app(workdir, **_settings(workdir, embeddings)) as running:
        running.workdir = workdir  # type: ignore[attr-defined]
        yield running


def request(app: RunningApp, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None, raw: bytes | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=60)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def call_ask(app: RunningApp, raw: bytes, headers: dict[str, str] | None = None) -> str:
    """POST /gradio_api/call/ask then read its event stream: the events as text."""
    status, body = request(app, "POST", "/gradio_api/call/ask", raw=raw, headers=headers)
    assert status == 200, body
    event_id = json.loads(body)["event_id"]
    status, events = request(app, "GET", f"/gradio_api/call/ask/{event_id}", headers=headers)
    assert status == 200
    return events


def fn_index(app: RunningApp, api_name: str) -> int:
    status, body = request(app, "GET", "/config")
    assert status == 200
    deps = json.loads(body)["dependencies"]
    return next(d["id"] for d in deps if d.get("api_name") == api_name)


# -- the real server --------------------------------------------------------------------------


@pytest.mark.server
def test_api__cross_origin_and_null_origin_requests_are_refused(app):
    ask = {"data": [QUESTION, None, None]}
    others = (f"http://localhost:{app.port}", f"http://127.0.0.1:{app.port + 1}")
    for origin in (EVIL, "null", *others):
        status, body = request(app, "POST", "/gradio_api/call/ask", ask, {"Origin": origin})
        assert status == 403 and "refused" in body, origin
    own = {"Origin": f"http://127.0.0.1:{app.port}"}
    assert "event: complete" in call_ask(app, json.dumps(ask).encode(), own)
    events = call_ask(app, json.dumps(ask).encode())  # a script sends no Origin at all
    assert "event: complete" in events and "[1]" in events
    status, body = request(app, "POST", "/gradio_api/call/ask", ask)
    event_id = json.loads(body)["event_id"]
    status, _ = request(app, "GET", f"/gradio_api/call/ask/{event_id}", headers={"Origin": EVIL})
    assert status == 403


@pytest.mark.server
def test_api__a_foreign_host_name_is_refused_on_loopback(app):
    assert request(app, "GET", "/", headers={"Host": f"evil.example:{app.port}"})[0] == 403
    assert request(app, "GET", "/config", headers={"Host": "rebind.evil.example"})[0] == 403
    assert request(app, "GET", "/", headers={"Host": f"localhost:{app.port}"})[0] == 200


@pytest.mark.server
def test_api__internal_handlers_are_not_endpoints(app):
    for path in ("/gradio_api/call/respond", "/gradio_api/run/respond",
                 "/gradio_api/call/v2/respond", "/gradio_api/api/respond",
                 "/gradio_api/call/new_conversation"):
        status, body = request(app, "POST", path, {"data": [QUESTION, [], [], []]})
        assert status == 403 and "Not an API endpoint" in body, path
    respond = fn_index(app, "respond")
    join = {"data": [QUESTION, [], [], ["training-guide"], ""], "fn_index": respond,
            "session_hash": "abcdefghij"}
    status, body = request(app, "POST", "/gradio_api/queue/join", join)
    assert status == 403 and "Not an API endpoint" in body
    # The app's own page (it always sends its Origin) still runs it through the queue.
    own = {"Origin": f"http://127.0.0.1:{app.port}"}
    status, body = request(app, "POST", "/gradio_api/queue/join", join, own)
    assert status == 200 and "event_id" in body
    ask = fn_index(app, "ask")
    status, _ = request(app, "POST", "/gradio_api/queue/join",
                        {"data": [QUESTION, None, None], "fn_index": ask, "session_hash": "k2"})
    assert status == 200  # the public endpoint, by index, as gradio_client calls it


@pytest.mark.server
def test_api__unencodable_question_gets_a_clear_message_not_a_crash(app):
    events = call_ask(app, b'{"data": ["How often is supervision \\udce9 needed?", null, null]}')
    assert "event: error" in events and "not text at character" in events
    assert "Traceback" not in events and "/" not in events.split("not text")[1][:80]
    assert "Traceback" not in app.output()


@pytest.mark.server
def test_app__answers_from_the_new_index_after_peerqa_index_adds_a_document(app, embeddings):
    prison = json.dumps({"data": ["When do the prison peer teams meet?", None, None]}).encode()
    before = call_ask(app, prison)
    assert "prison" not in before.lower().split("sources")[-1]
    workdir: Path = app.workdir  # type: ignore[attr-defined]
    (workdir / "corpus" / "prison.md").write_text(PRISON, encoding="utf-8")
    env = app_env(workdir, **_settings(workdir, embeddings))
    r = subprocess.run([sys.executable, "-m", "peerqa", "index", "-q"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and "Built index" in r.stdout, r.stderr
    after = call_ask(app, prison)
    assert "prison" in after and "Wednesday" in after


def test_launcher__refuses_blank_credentials_before_any_work(tmp_path):
    env = app_env(tmp_path, host="0.0.0.0", index_dir=str(tmp_path / "index"),
                  app_username=" ", app_password=" ")
    result = subprocess.run([sys.executable, str(REPO / "app_gradio.py")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "PEERQA_APP_USERNAME is blank" in result.stderr
    assert not (tmp_path / "index").exists()


# -- the rules, without a server ---------------------------------------------------------------


@pytest.mark.parametrize(("user", "password"), [(" ", "s3cret"), ("ana", " "), ("", ""),
                                                ("\t", "\n")])
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_launch_auth__blank_credentials_are_refused_anywhere(host, user, password):
    with pytest.raises(ConfigurationError, match="is blank"):
        launch_auth(Settings(host=host, app_username=user, app_password=password))


def _guard_status(guard: ApiGuard, path: str, headers: dict[str, str], method: str = "POST",
                  body: bytes = b"") -> int:
    sent: list[dict[str, Any]] = []

    async def downstream(scope, receive, send):
        message = await receive()
        assert message.get("body", b"") == body  # the body reaches the app intact
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard.app = downstream

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [
        (k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(guard(scope, receive, send))
    return int(sent[0]["status"])


def test_api_guard__allowed_origins_and_a_reverse_proxys_host_name():
    proxy = "https://peerqa.example.org"
    guard = ApiGuard(None, allowed_origins=[proxy], public={"ask"}, private={0})
    ask = "/gradio_api/call/ask"
    # Behind a proxy on the same machine: its public name arrives as Host and Origin.
    assert _guard_status(guard, ask, {"Host": "peerqa.example.org", "Origin": proxy}) == 200
    assert _guard_status(guard, ask, {"Host": "127.0.0.1:7860", "Origin": proxy}) == 200
    assert _guard_status(guard, ask, {"Host": "127.0.0.1:7860", "Origin": EVIL}) == 403
    assert _guard_status(guard, ask, {"Host": "127.0.0.1:7860", "Origin": "null"}) == 403
    assert _guard_status(guard, ask, {"Host": "peerqa.example.org:8443", "Origin": "http://"
                                      "peerqa.example.org"}) == 403
    assert _guard_status(guard, ask, {"Host": "other.example.org", "Origin": proxy}) == 403
    body = b'{"fn_index": 0, "data": []}'
    join = "/gradio_api/queue/join"
    assert _guard_status(guard, join, {"Host": "127.0.0.1"}, body=body) == 403
    assert _guard_status(guard, join, {"Host": "127.0.0.1", "Origin": proxy}, body=body) == 200
    assert _guard_status(guard, join, {"Host": "127.0.0.1"},
                         body=b'{"fn_index": 1, "data": []}') == 200
    exposed = ApiGuard(None, loopback=False, public={"ask"})
    assert _guard_status(exposed, ask, {"Host": "peerqa.internal"}) == 200  # any name, no Origin
    assert _guard_status(exposed, ask, {"Host": "peerqa.internal", "Origin": EVIL}) == 403
    assert _guard_status(exposed, "/gradio_api/run/respond", {"Host": "peerqa.internal"}) == 403


# -- what practitioners are told -----------------------------------------------------------------


def test_friendly_error__says_what_failed_in_words_without_server_paths():
    damaged = IndexDamagedError("the index at /root/.cache/peerqa/corpus-1a2b is damaged "
                                "(vectors.npy: 3 bytes): run `peerqa index` to repair it")
    shown = friendly_error(damaged)
    assert "/root" not in shown and ".cache" not in shown and "peerqa index" not in shown
    assert "the document index could not be read" in shown


def test_handlers__chat_shows_failures_in_words_and_the_log_keeps_the_detail(
    tiny_fake: Assistant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    on = Handlers(tiny_fake)
    build_app(tiny_fake, examples=[], handlers=on)
    ids = [d.doc_id for d in tiny_fake.documents]
    *_, (chat, turns, _, _, _) = on.respond("How often is supervision \udce9 needed?", [], [], ids)
    assert "not text at character" in chat[-1]["content"] and turns == []
    json.dumps(chat, ensure_ascii=False).encode("utf-8")  # what Gradio must send can be sent

    def broken(*args: Any, **kwargs: Any):
        raise IndexDamagedError("the index at /srv/peerqa/index is damaged: run `peerqa index`")

    monkeypatch.setattr(tiny_fake, "stream", broken)
    *_, (chat, turns, _, _, _) = on.respond(QUESTION, [], [], ids)
    assert "could not be read" in chat[-1]["content"] and "/srv" not in chat[-1]["content"]
    assert "/srv/peerqa/index" in capsys.readouterr().err


def test_gradio_error_message__for_the_api_has_no_server_path(
    tiny_fake: Assistant, monkeypatch: pytest.MonkeyPatch
):
    import gradio as gr

    on = Handlers(tiny_fake)
    build_app(tiny_fake, examples=[], handlers=on)

    def broken(*args: Any, **kwargs: Any):
        raise IndexDamagedError("the index at /srv/peerqa/index is damaged: run `peerqa index`")

    monkeypatch.setattr(tiny_fake, "ask", broken)
    with pytest.raises(gr.Error) as info:
        on.ask(QUESTION)
    assert "/srv" not in str(info.value.message) and "could not be read" in str(info.value.message)
