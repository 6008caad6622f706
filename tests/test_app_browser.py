"""The app in a real headless Chromium: Debian's package driven by Playwright, never a download."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from peerqa import Assistant
from tests.helpers import (
    ANSWERABLE,
    HOSTILE,
    WAIT_MS,
    RunningApp,
    running_app,
)

pytestmark = [pytest.mark.browser, pytest.mark.server]

HOSTILE_DOC = f"""# Supervision guide {HOSTILE}

## How often supervision happens {HOSTILE}

Peer support workers should receive supervision from an experienced peer supervisor every two
weeks. {HOSTILE} <body onload=alert(6)> <details open ontoggle=alert(7)>x</details>
"><script>alert(8)</script> <a href="jAvAsCrIpT:alert(9)">notes</a>
<object data="javascript:alert(10)"></object> <embed src="javascript:alert(11)">
<input autofocus onfocus=alert(12)> <video><source onerror=alert(13)></video>
<math><mtext><table><mglyph><style><img src=x onerror=alert(14)>
[report](data:text/html,<script>alert(15)</script>)
<style>@import "javascript:alert(16)";</style> Supervision sessions give peer support workers
time to reflect on boundaries.

Each supervision session lasts one hour. <a href="javascript:alert(2)">guide</a> The supervisor
keeps notes. ![x](javascript:alert(3)) <svg onload=alert(4)></svg>
<iframe src="javascript:alert(5)">
"""
PLAIN_DOC = """# Recruitment notes

Recruitment of peer support workers values lived experience of mental health problems and
recovery. Interviews include a person with lived experience on the panel.
"""


@pytest.fixture(scope="module")
def app(corpus_index_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    with running_app(tmp_path_factory.mktemp("app"), index_dir=str(corpus_index_dir)) as running:
        yield running


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app over a tiny corpus whose document holds script, img-onerror and javascript: links."""
    root = tmp_path_factory.mktemp("hostile")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "supervision-guide.md").write_text(HOSTILE_DOC, encoding="utf-8")
    (corpus / "recruitment-notes.md").write_text(PLAIN_DOC, encoding="utf-8")
    Assistant(corpus_dir=corpus, index_dir=root / "index").index()
    with running_app(root / "run", corpus_dir=str(corpus), index_dir=str(root / "index")) as run:
        yield run


def open_page(browser, app: RunningApp, width: int = 1280, height: int = 900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.dialogs = []  # type: ignore[attr-defined]
    page.hosts = set()  # type: ignore[attr-defined]
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: page.hosts.add(urlsplit(r.url).hostname or r.url[:20]))
    page.goto(app.url, timeout=WAIT_MS)
    page.wait_for_selector("#pq-question textarea", timeout=WAIT_MS)
    return page


def ask(page, question: str) -> None:
    page.fill("#pq-question textarea", question)
    page.click("#pq-ask")
    page.wait_for_selector("#pq-chat .pq-answer", timeout=WAIT_MS)


def test_browser__answers_with_sources_and_the_highlighted_quote(browser, app, artifacts_dir):
    page = open_page(browser, app)
    ask(page, ANSWERABLE)
    answer = page.locator("#pq-chat .pq-answer").last
    assert answer.locator("a.pq-marker").count() >= 1
    sources = answer.locator("details.pq-src")
    assert sources.count() >= 1
    first = sources.first
    assert re.fullmatch(r"\[1\] .+ \((\d{4}|n\.d\.)\)", first.locator("h3").inner_text())
    assert first.locator(".pq-section").inner_text().strip()

    # A marker opens its source: the passage within its surrounding text, the quote in <mark>.
    answer.locator("a.pq-marker").first.click()
    opened = answer.locator("details.pq-src[open]").first
    mark = opened.locator("mark.pq-hl").first
    mark.wait_for(state="visible", timeout=WAIT_MS)
    assert mark.inner_text().strip()
    assert opened.locator(".pq-ctx").count() >= 1
    page.screenshot(path=str(artifacts_dir / "app-answer.png"))

    # Clicking a source's title toggles it too (the last source may be the one already open).
    last = sources.nth(sources.count() - 1)
    was_open = last.evaluate("d => d.open")
    last.locator("summary").click()
    assert last.evaluate("d => d.open") is not was_open

    assert page.hosts == {"127.0.0.1"}, page.hosts  # nothing fetched from elsewhere
    assert page.dialogs == []
    page.close()


def test_browser__phone_width_answer_is_readable(browser, app, artifacts_dir):
    page = open_page(browser, app, width=390, height=844)
    ask(page, "What supervision should peer support workers receive?")
    page.locator("#pq-chat a.pq-marker").first.click()
    page.locator("#pq-chat details.pq-src[open] mark.pq-hl").first.wait_for(timeout=WAIT_MS)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than a phone screen"
    page.screenshot(path=str(artifacts_dir / "app-phone.png"))
    page.close()


def test_browser__download_markdown_then_start_a_new_conversation(browser, app, tmp_path):
    page = open_page(browser, app)
    ask(page, ANSWERABLE)
    page.get_by_text("The conversation as Markdown").click()
    page.wait_for_function(
        "() => (document.querySelector('#pq-export textarea') || {}).value", timeout=WAIT_MS
    )
    with page.expect_download(timeout=WAIT_MS) as info:
        page.click("#pq-download")
    target = tmp_path / "answer.md"
    info.value.save_as(target)
    markdown = target.read_text(encoding="utf-8")
    assert markdown.startswith(f"**Question:** {ANSWERABLE}")
    assert "**Sources**" in markdown and "**[1]**" in markdown

    page.click("#pq-new")
    page.wait_for_function(
        "() => !document.querySelector('#pq-chat .pq-answer')", timeout=WAIT_MS
    )
    page.close()


def test_browser__hostile_document_renders_as_text_and_runs_nothing(
    browser, hostile_app, artifacts_dir
):
    page = open_page(browser, hostile_app)
    ask(page, "How often should peer support workers receive supervision?")
    chat = page.locator("#pq-chat")
    for summary in chat.locator("details.pq-src summary").all():
        summary.click()
    page.get_by_text("About these documents").click()
    page.wait_for_timeout(1000)  # time for any injected handler to fire

    assert page.dialogs == []
    injected = page.evaluate(
        """() => ({
            scripts: [...document.querySelectorAll('gradio-app script, #pq-chat script')].length,
            imgs: document.querySelectorAll('img[src="x"], img[onerror], [onerror]').length,
            svgs: document.querySelectorAll('#pq-chat svg[onload], [onload]').length,
            iframes: document.querySelectorAll('#pq-chat iframe, #pq-about iframe').length,
            js_links: [...document.querySelectorAll('a[href]')]
                .filter(a => a.getAttribute('href').trim().toLowerCase().startsWith('javascript'))
                .length,
        })"""
    )
    assert injected == {"scripts": 0, "imgs": 0, "svgs": 0, "iframes": 0, "js_links": 0}
    shown = chat.inner_text()
    assert "<script>alert(1)</script>" in shown
    assert "<img src=x onerror=alert(1)>" in shown
    assert "[click](javascript:alert(1))" in shown
    # All 16 payloads are on the page as text: shown, or (link targets, which the Markdown view
    # hides but never removes) in hidden text nodes.
    text = chat.text_content() or ""
    missing = [n for n in range(1, 17) if f"alert({n})" not in text]
    assert missing == [], missing
    about = page.locator("#pq-about").inner_text()
    assert "<script>alert(1)</script>" in about
    page.screenshot(path=str(artifacts_dir / "app-hostile-document.png"), full_page=True)
    page.close()
