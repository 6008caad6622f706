"""The Gradio app: rendering escapes every corpus string; the real server over HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest

from peerqa import Answer, Assistant, Citation, Document, Passage, Settings
from peerqa.app import BUSY_MESSAGE, AnswerSlots, Handlers, build_app
from peerqa.cards import passage_html
from peerqa.errors import ConfigurationError
from peerqa.render import TURN_BREAK, _quote_md, about_html, answer_html, answer_markdown, md_text
from peerqa.serving import is_loopback, launch_auth
from tests.helpers import (
    ANSWERABLE,
    HOSTILE,
    REPO,
    RunningApp,
    app_env,
    get,
    running_app,
    texts_by_class,
    visible_text,
)

OUTSIDE = "What are the tax rules for cryptocurrency mining?"


def client(app: RunningApp):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from gradio_client import Client

    return Client(app.url, verbose=False)


def parsed_sources(markdown: str) -> list[tuple[int, str, int, int]]:
    """(number, doc id, start, end) of each source in the app's Markdown."""
    found = re.findall(r"^\*\*\[(\d+)\]\*\* .*\n(.+), characters (\d+)–(\d+)$", markdown, re.M)
    return [(int(n), doc, int(a), int(b)) for n, doc, a, b in found]


# -- rendering (no server) --------------------------------------------------------------------

BEFORE = "Earlier text about peer work sets the scene. "
QUOTED = f"Supervision matters {HOSTILE} every fortnight."
AFTER = " Later text closes the section."


@pytest.fixture
def hostile() -> tuple[Document, Answer]:
    text = "# Guide\n\n" + BEFORE * 12 + QUOTED + " Not quoted here." + AFTER * 12
    doc = Document(doc_id="guide", title=f"Guide {HOSTILE}", text=text, path="guide.md",
                   sha256="0", short_title="Guide", year=None)
    start = text.index(QUOTED)
    end = start + len(QUOTED) + len(" Not quoted here.")
    citation = Citation(
        number=1, doc_id="guide", title=doc.title, section=f"Intro > {HOSTILE}",
        text=text[start:end], start=start, end=end, score=1.0,
        highlights=((start, start + len(QUOTED)),),
    )
    answer = Answer(question="q", text=f"{QUOTED} [1]", citations=[citation], abstained=False,
                    notices=[f"fallback {HOSTILE}"])
    return doc, answer


def test_answer_html__renders_hostile_document_text_as_text(hostile):
    doc, answer = hostile
    html = answer_html(answer, {"guide": doc}, "1")
    tags = re.findall(r"<\s*([a-zA-Z][a-zA-Z0-9]*)", html)
    assert set(tags) <= {"div", "p", "a", "h2", "h3", "section", "ol", "ul", "li", "strong",
                         "details", "summary", "span", "mark", "br"}
    assert "javascript:" not in html and "onerror=" not in html and "](" not in html
    assert re.findall(r'href="([^"]*)"', html) == ["#pq-1-s1"]
    assert HOSTILE in visible_text(html)
    assert visible_text(html).count(HOSTILE) >= 4  # title, section, answer, passage, notice


def test_answer_html__marker_opens_the_numbered_source_with_the_quote_marked(hostile):
    doc, answer = hostile
    html = answer_html(answer, {"guide": doc}, "3")
    assert '<a class="pq-marker" href="#pq-3-s1"' in html
    assert '<details class="pq-src" id="pq-3-s1">' in html
    marked = re.findall(r'<mark class="pq-hl">(.*?)</mark>', html)
    assert [visible_text(m) for m in marked] == [QUOTED]


def test_passage_html__shows_the_passage_inside_its_surrounding_text(hostile):
    doc, answer = hostile
    c = answer.citations[0]
    html = passage_html(c.text, c.start, c.end, c.highlights, doc)
    before, after = texts_by_class(html, "pq-ctx")
    (quote,) = texts_by_class(html, "pq-quote")
    assert before.startswith("…") and before.endswith(BEFORE)
    assert quote == c.text  # every stored character, Markdown syntax kept in hidden spans
    assert after.startswith(AFTER) and after.endswith("…")


def test_answer_html__abstention_says_so_and_lists_closest_material_under_its_own_heading():
    p = Passage(doc_id="guide", title="Guide", section="S", text="Nearby text.", start=0, end=12,
                score=0.1)
    answer = Answer(question="q", text="The documents do not appear to cover this question.",
                    citations=[], abstained=True, passages=[p])
    html = answer_html(answer, {}, "2")
    assert "pq-abstain" in html and '<h2 class="pq-h">Closest material</h2>' in html
    assert ">Sources</h2>" not in html and "pq-marker" not in html
    assert "Not covered by the documents." in visible_text(html)
    assert "Closest material** (not an answer)" in answer_markdown(answer)


def test_answer_markdown__renders_hostile_text_as_text_in_any_markdown_renderer(hostile):
    MarkdownIt = pytest.importorskip("markdown_it").MarkdownIt  # comes with gradio (via rich)
    doc, answer = hostile
    markdown = answer_markdown(answer, question=f"Why {HOSTILE}?")
    html = MarkdownIt("commonmark").render(markdown)  # raw HTML allowed, as GitHub-like renderers
    assert "<script" not in html and "<img" not in html and "href" not in html
    assert HOSTILE in unescape(re.sub(r"<[^>]+>", "", html).replace("\n", " "))
    assert parsed_sources(markdown) == [(1, "guide", answer.citations[0].start,
                                         answer.citations[0].end)]
    assert "[1]" in markdown.split("**Sources**")[0]


def test_answer_markdown__a_marker_cannot_be_turned_into_a_link(hostile):
    MarkdownIt = pytest.importorskip("markdown_it").MarkdownIt
    _, answer = hostile
    text = "See [1](javascript:alert(1)) and [2][1] then\n[1]: javascript:alert(1)\nend [1]"
    answer = Answer(question="q", text=text, citations=answer.citations, abstained=False)
    markdown = answer_markdown(answer)
    assert markdown.startswith("See \\[1\\](javascript") and "end [1]" in markdown
    assert "href" not in MarkdownIt("commonmark").render(markdown)


def test_about_html__lists_every_document_with_its_metadata_escaped(hostile):
    doc, _ = hostile
    html = about_html([doc])
    assert "<script" not in html and HOSTILE in visible_text(html)
    assert "n.d." in visible_text(html)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_launch_auth__not_needed_on_loopback(host):
    assert is_loopback(host)
    assert launch_auth(Settings(host=host)) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_launch_auth__refuses_another_address_without_credentials(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigurationError, match="PEERQA_APP_USERNAME and PEERQA_APP_PASSWORD"):
        launch_auth(Settings(host=host))
    with pytest.raises(ConfigurationError):
        launch_auth(Settings(host=host, app_username="ana"))
    creds = Settings(host=host, app_username="ana", app_password="s3cret")
    assert launch_auth(creds) == ("ana", "s3cret")


def test_launcher__refuses_to_listen_on_all_addresses_without_credentials(tmp_path):
    env = app_env(tmp_path, host="0.0.0.0", index_dir=str(tmp_path / "index"))
    result = subprocess.run([sys.executable, str(REPO / "app_gradio.py")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "PEERQA_APP_USERNAME and PEERQA_APP_PASSWORD" in result.stderr
    assert not (tmp_path / "index").exists()  # refused before any work


# -- the app's handlers, in process ------------------------------------------------------------


def test_handlers__busy_when_no_answer_slot_frees_up(assistant: Assistant):
    slots = AnswerSlots(1, wait=0.01)
    on = Handlers(assistant, slots)
    build_app(assistant, examples=[], handlers=on)
    assert slots.acquire()  # another question holds the only slot
    try:
        assert on.ask(ANSWERABLE) == BUSY_MESSAGE + "\n"
        *_, (chat, turns, _, _, _) = on.respond(ANSWERABLE, [], [], ["x"])
        assert BUSY_MESSAGE in chat[-1]["content"] and turns == []
    finally:
        slots.release()


def test_handlers__chat_explains_problems_in_words_and_keeps_history(assistant: Assistant):
    on = Handlers(assistant)
    build_app(assistant, examples=[], handlers=on)
    respond = on.respond
    ids = [d.doc_id for d in assistant.documents]
    *_, (chat, turns, _, _, _) = respond(ANSWERABLE, [], [], [])
    assert "no document is selected" in chat[-1]["content"] and turns == []
    *_, (chat, turns, _, export, _) = respond(f"<b>{ANSWERABLE}</b>", [], [], ids)
    assert chat[0]["content"].startswith("&#60;b&#62;")  # the user's own text is escaped too
    assert 'class="pq-answer"' in chat[-1]["content"] and len(turns) == 2
    assert export.startswith("**Question:**") and "**Sources**" in export
    follow_up = "And what about supervision?"
    *_, (chat, turns, _, export, _) = respond(follow_up, chat, turns, ids, export)
    expected = assistant.ask(follow_up, history=turns[:2])
    assert turns[-1]["content"] == expected.text and len(chat) == 4
    # The conversation's Markdown keeps both turns, each with its sources.
    first, second = export.split(TURN_BREAK)
    assert first.startswith(f"**Question:** \\<b\\>{ANSWERABLE}") and "**Sources**" in first
    assert second == answer_markdown(expected, follow_up)


def test_handlers__empty_or_too_long_question_gets_a_notice_and_keeps_the_box(
    assistant: Assistant,
):
    on = Handlers(assistant)
    build_app(assistant, examples=[], handlers=on)
    ids = [d.doc_id for d in assistant.documents]
    ((chat, turns, box, export, notice),) = list(on.respond("   ", [], [], ids))
    assert chat == [] and turns == [] and "Type a question first" in notice
    assert box.__class__.__name__ == export.__class__.__name__ != "str"  # both left as they are
    limit = assistant.settings.max_question_chars
    long = "Why? " * (limit // 5 + 40)
    ((chat, turns, box, _, notice),) = list(on.respond(long, [], [], ids))
    assert chat == [] and box.__class__.__name__ != "str"  # the question is not cleared or cut
    assert f"{len(long.strip()):,} characters long; the limit is {limit:,}" in visible_text(notice)


# -- the real server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(corpus_index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    with running_app(tmp_path_factory.mktemp("app"), index_dir=str(corpus_index_dir)) as running:
        yield running


@pytest.mark.server
def test_app__starts_on_loopback_and_prints_its_address(app):
    assert f"ready at http://127.0.0.1:{app.port}" in app.output()
    assert "reused the index" in app.output()
    status, body = get(app, "/config")
    assert status == 200 and b'"analytics_enabled":false' in body.replace(b" ", b"")


@pytest.mark.server
def test_api__answer_and_citations_match_assistant_ask(app, assistant: Assistant):
    markdown = client(app).predict(ANSWERABLE, api_name="/ask")
    expected = assistant.ask(ANSWERABLE)
    assert expected.citations and not expected.abstained
    assert parsed_sources(markdown) == [
        (c.number, md_text(c.doc_id), c.start, c.end) for c in expected.citations
    ]
    assert markdown == answer_markdown(expected)


@pytest.mark.server
def test_api__searches_only_the_chosen_documents(app):
    markdown = client(app).predict(
        "What supervision should peer support workers receive?", None, ["hee-evidence-brief"],
        api_name="/ask",
    )
    sources = parsed_sources(markdown)
    assert sources and {doc for _, doc, _, _ in sources} == {"hee-evidence-brief"}


@pytest.mark.server
def test_api__abstains_on_a_question_outside_the_documents(app):
    markdown = client(app).predict(OUTSIDE, api_name="/ask")
    assert "do not appear to cover" in markdown.split("\n")[0]
    assert "**Closest material** (not an answer)" in markdown
    assert "**Sources**" not in markdown and not parsed_sources(markdown)


@pytest.mark.server
def test_api__follow_up_uses_the_history(app, assistant: Assistant):
    first = assistant.ask(ANSWERABLE)
    history = [{"role": "user", "content": ANSWERABLE},
               {"role": "assistant", "content": first.text}]
    follow_up = "Who provides it?"  # "it" is the training: alone, the question means little
    c = client(app)
    with_history = c.predict(follow_up, history, api_name="/ask")
    alone = c.predict(follow_up, api_name="/ask")
    assert with_history == answer_markdown(assistant.ask(follow_up, history=history))
    assert with_history != alone


@pytest.mark.server
def test_api__thirty_two_concurrent_questions_are_all_answered_as_a_sequential_run(
    app, assistant: Assistant
):
    questions = [
        ANSWERABLE, OUTSIDE, "What supervision should peer support workers receive?",
        "What challenges do peer support workers face?",
        "How should peer support workers be recruited?",
        "What benefits does peer support bring to service users?",
        "What is the role of a peer support worker?",
        "How can peer support workers look after their own wellbeing?",
    ] * 4
    c = client(app)
    jobs = [c.submit(q, api_name="/ask") for q in questions]
    results = [job.result(timeout=180) for job in jobs]
    sequential = {q: answer_markdown(assistant.ask(q)) for q in dict.fromkeys(questions)}
    for question, result in zip(questions, results, strict=True):
        assert result == sequential[question], question


@pytest.mark.server
def test_api__too_long_question_gets_a_clear_message(app):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="the limit is 1000"):
        client(app).predict("x" * 1001, api_name="/ask")


@pytest.mark.server
def test_api__ask_json_gives_the_answer_as_data(app, assistant: Assistant):
    data = client(app).predict(ANSWERABLE, api_name="/ask_json")
    expected = assistant.ask(ANSWERABLE)
    assert data == expected.to_dict()
    assert list(data)[:5] == ["text", "coverage", "missing", "citations", "conflicts"]
    assert {"number", "doc_id", "title", "section", "year", "page", "text", "start", "end",
            "relevance"} <= set(data["citations"][0])
    outside = client(app).predict(OUTSIDE, None, ["hee-evidence-brief"], api_name="/ask_json")
    assert outside["coverage"] == "not_covered" and outside["citations"] == []
    assert {p["doc_id"] for p in outside["passages"]} == {"hee-evidence-brief"}


@pytest.mark.server
def test_api__only_the_ask_endpoints_are_offered(app):
    assert list(client(app).view_api(return_format="dict", print_info=False)
                ["named_endpoints"]) == ["/ask", "/ask_json"]


def _traversals(index_db: Path) -> list[str]:
    targets = [
        "/etc/passwd", str(index_db), "pyproject.toml", "corpus/manifest.json",
        "../../../../../../../etc/passwd", "..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "%2Fetc%2Fpasswd", "//etc/passwd",
        "..\\..\\..\\..\\etc\\passwd", "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        "file:///etc/passwd", "/etc/./passwd", "/tmp/../etc/passwd", "/proc/self/environ",
        "/etc/shadow", "%00/etc/passwd", "/etc/passwd%00.png", "....//....//....//etc/passwd",
        "..;/..;/..;/etc/passwd", "%c0%ae%c0%ae/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        ".env", "src/peerqa/settings.py", "../.git/config", "app_gradio.py",
        "%5c..%5c..%5c..%5cetc%5cpasswd",
    ]
    prefixes = ["/file=", "/gradio_api/file=", "/gradio_api/file/", "/gradio_api/proxy=",
                "/FILE=", "/static/", "/assets/", "/gradio_api/file%3D", "/file%3d",
                "//file=", "/gradio_api//file=", "/GRADIO_API/FILE=", "/gradio_api/proxy%3D",
                "/gradio_api/file=/..", "/svelte/", "/gradio_api/static/"]
    return [p + t for p in prefixes for t in targets]


@pytest.mark.server
def test_file_routes__refuse_files_outside_what_the_app_serves(app, corpus_index_dir: Path):
    index_db = next(corpus_index_dir.rglob("chroma.sqlite3"))
    probes = _traversals(index_db)
    assert len(probes) >= 400
    leaks = (b"root:", b"SQLite format", b"[project]", b"def load_settings", b"PATH=",
             b"repositoryformatversion", b"peerqa.app import main")
    for path in probes:
        status, body = get(app, path)
        assert status in (400, 403, 404), (path, status)
        assert not any(leak in body for leak in leaks), path
    assert get(app, "/gradio_api/upload", method="POST")[0] == 403
    assert get(app, "/")[0] == 200  # the page itself is still served


def test_launcher__bad_setting_is_a_one_line_message_not_a_traceback(tmp_path):
    env = app_env(tmp_path, index_dir=str(tmp_path / "index"))
    env["PEERQA_PORT"] = "not-a-port"
    result = subprocess.run([sys.executable, str(REPO / "app_gradio.py")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "PEERQA_PORT" in result.stderr and "Traceback" not in result.stderr


def test_answer_markdown__crlf_document_quotes_stay_whole():

    text = "Line one here.\r\nSecond line is highlighted.\r\nThird line."
    start = 100
    a = start + text.index("Second")
    md = _quote_md(text, start, [(a, a + len("Second line is highlighted."))])
    lines = md.split("\n")
    assert len(lines) == 3 and all(line.startswith(">") for line in lines)
    assert "Third line" in lines[2] and "**Second line is highlighted.**" in lines[1]
