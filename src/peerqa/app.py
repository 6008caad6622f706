"""The Gradio chat app: a thin layer over one Assistant, with every corpus string escaped here.

Rendering is pure functions of an ``Answer`` (HTML for the chat, Markdown for the API and the
download); ``build_app`` wires them into Gradio; ``main`` opens the index once and launches on
127.0.0.1 with a bounded queue, no share link, no analytics and no file routes.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

# Gradio reads this when it is imported and at launch; set it before either can happen.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from .cli import ProgressBar  # noqa: E402
from .errors import ConfigurationError, InputError, PeerQAError  # noqa: E402
from .settings import Settings, load_settings  # noqa: E402
from .types import Answer, Citation, Document, Passage  # noqa: E402

if TYPE_CHECKING:
    import gradio as gr

    from .assistant import Assistant, IndexInfo

TITLE = "peerqa: evidence on Peer Support Workers"
CONTEXT_CHARS = 280
"""Characters of document text shown before and after a quoted passage."""
ANSWER_SLOTS = 2
"""Questions answered at once (the answering is CPU-bound); the rest wait for a slot."""
BUSY_WAIT_SECONDS = 30.0
QUEUE_CONCURRENCY = 4
QUEUE_MAX_SIZE = 64
BUSY_MESSAGE = (
    "Many questions are being answered right now, so this one could not be started. "
    "Please ask again in a moment."
)
CANDIDATE_EXAMPLES = (
    "What training do peer support workers need?",
    "What supervision should peer support workers receive?",
    "What challenges do peer support workers face when they join a team?",
    "What benefits does peer support bring to service users?",
    "How can peer support workers look after their own wellbeing and recovery?",
    "How should peer support workers be recruited?",
    "What is the role of a peer support worker?",
)
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}

# -- escaping ---------------------------------------------------------------------------------

# One pass over the text: HTML's five specials, plus every character that Markdown, GFM autolinks
# or LaTeX would act on, as numeric entities. Entities are literal text to a Markdown parser, so
# document text can never become a tag, a link or an emphasis, whatever Gradio does with it.
_HTML_TABLE = str.maketrans(
    {c: f"&#{ord(c)};" for c in "&<>\"'`*_[](){}#|~$\\!:=@^"}
)
_MARKER = re.compile(r"\[(\d{1,3})\]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$&])")


def html_text(text: str) -> str:
    """Escape text for the chat's HTML: nothing in it can act as HTML or Markdown."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_HTML_TABLE)
    return text.replace("\n", "<br>")


def md_text(text: str) -> str:
    """Escape text for Markdown: shown verbatim by any CommonMark renderer, never a link or tag."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\r\n", "\n").replace("\r", "\n"))


def _year(year: int | None) -> str:
    return str(year) if year is not None else "n.d."


def _section(section: str) -> str:
    return " › ".join(p.strip() for p in section.split(" > ") if p.strip()) or "untitled section"


# -- passages in context ------------------------------------------------------------------------


def _merged(spans: Sequence[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Highlight spans clipped to [start, end], sorted and merged."""
    clipped = sorted((max(a, start), min(b, end)) for a, b in spans if min(b, end) > max(a, start))
    out: list[tuple[int, int]] = []
    for a, b in clipped:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _context(doc_text: str, start: int, end: int, chars: int) -> tuple[str, str]:
    """About ``chars`` characters of text either side of [start, end], cut at word boundaries."""
    lo = max(0, start - chars)
    before = doc_text[lo:start]
    if lo > 0:
        cut = re.search(r"\s", before)
        before = "…" + (before[cut.end():] if cut else before)
    hi = min(len(doc_text), end + chars)
    after = doc_text[end:hi]
    if hi < len(doc_text):
        cut = re.search(r"\s\S*$", after)
        after = (after[: cut.start()] if cut else after) + "…"
    return before, after


def passage_html(
    text: str,
    start: int,
    end: int,
    highlights: Sequence[tuple[int, int]],
    document: Document | None,
    context_chars: int = CONTEXT_CHARS,
) -> str:
    """A passage inside its surrounding document text, the quoted sentences in <mark>."""
    in_document = document is not None and document.text[start:end] == text
    before = after = ""
    if in_document:
        assert document is not None
        before, after = _context(document.text, start, end, context_chars)
    parts = []
    pos = start
    for a, b in _merged(highlights, start, end):
        parts.append(html_text(text[pos - start : a - start]))
        parts.append(f'<mark class="pq-hl">{html_text(text[a - start : b - start])}</mark>')
        pos = b
    parts.append(html_text(text[pos - start :]))
    return (
        '<div class="pq-passage">'
        + (f'<span class="pq-ctx">{html_text(before)}</span>' if before else "")
        + f'<span class="pq-quote">{"".join(parts)}</span>'
        + (f'<span class="pq-ctx">{html_text(after)}</span>' if after else "")
        + "</div>"
    )


def _preview(text: str, start: int, highlights: Sequence[tuple[int, int]], limit: int = 180) -> str:
    spans = _merged(highlights, start, start + len(text))
    quoted = " … ".join(text[a - start : b - start].strip() for a, b in spans) or text
    quoted = " ".join(quoted.split())
    return quoted if len(quoted) <= limit else quoted[: limit - 1].rsplit(" ", 1)[0] + " …"


def _source_card(
    anchor: str,
    label: str,
    item: Citation | Passage,
    highlights: Sequence[tuple[int, int]],
    document: Document | None,
) -> str:
    title = html_text(item.title)
    year = html_text(_year(item.year))
    section = html_text(_section(item.section))
    preview = html_text(_preview(item.text, item.start, highlights))
    doc_name = html_text(document.short_title if document and document.short_title else item.doc_id)
    return (
        f'<details class="pq-src" id="{anchor}">'
        f'<summary><span class="pq-num">{label}</span> '
        f'<span class="pq-title">{title}</span> <span class="pq-year">({year})</span>'
        f'<span class="pq-section">{section}</span>'
        f'<span class="pq-preview">“{preview}”</span></summary>'
        + passage_html(item.text, item.start, item.end, highlights, document)
        + f'<div class="pq-loc">{doc_name} · characters {item.start}–{item.end}</div>'
        "</details>"
    )


# -- answers -------------------------------------------------------------------------------------


def _answer_text_html(text: str, anchors: Mapping[int, str]) -> str:
    out, pos = [], 0
    for m in _MARKER.finditer(text):
        out.append(html_text(text[pos : m.start()]))
        n = int(m.group(1))
        if n in anchors:
            out.append(
                f'<a class="pq-marker" href="#{anchors[n]}" title="Show source {n}">'
                f"&#91;{n}&#93;</a>"
            )
        else:
            out.append(html_text(m.group(0)))
        pos = m.end()
    out.append(html_text(text[pos:]))
    return "".join(out)


def answer_html(answer: Answer, documents: Mapping[str, Document], turn: str) -> str:
    """An answer for the chat: text with clickable [n] markers, then its sources in context."""
    anchors = {c.number: f"pq-{turn}-s{c.number}" for c in answer.citations}
    parts = [f'<div class="pq-answer" id="pq-{turn}">']
    text_class = "pq-text pq-abstain" if answer.abstained else "pq-text"
    parts.append(f'<p class="{text_class}">{_answer_text_html(answer.text, anchors)}</p>')
    for notice in answer.notices:
        parts.append(f'<p class="pq-notice">Note: {html_text(notice)}</p>')
    if answer.citations:
        parts.append('<div class="pq-sources"><h4>Sources</h4>')
        parts.extend(
            _source_card(anchors[c.number], f"&#91;{c.number}&#93;", c,
                         c.highlights or ((c.start, c.end),), documents.get(c.doc_id))
            for c in answer.citations
        )
        parts.append("</div>")
    if answer.abstained and answer.passages:
        parts.append(
            '<div class="pq-closest"><h4>Closest material</h4>'
            '<p class="pq-note">The nearest passages in the documents. They do not answer the '
            "question; they show what the documents do say nearby.</p>"
        )
        parts.extend(
            _source_card(f"pq-{turn}-c{i}", f"&#40;{i}&#41;", p, (), documents.get(p.doc_id))
            for i, p in enumerate(answer.passages, 1)
        )
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def _quote_md(text: str, start: int, highlights: Sequence[tuple[int, int]]) -> str:
    """The passage as a Markdown block quote, the quoted sentences in bold."""
    spans = [(a - start, b - start) for a, b in _merged(highlights, start, start + len(text))]
    lines, offset = [], 0
    for raw in text.splitlines(keepends=True) or [""]:
        line = raw.rstrip("\r\n")
        end = offset + len(line)
        out, pos = [], offset
        for a, b in spans:
            a, b = max(a, offset), min(b, end)
            if b <= a:
                continue
            out.append(md_text(text[pos:a]))
            seg = text[a:b]
            lead = seg[: len(seg) - len(seg.lstrip())]
            trail = seg[len(seg.rstrip()) :]
            core = seg.strip()
            out.append(lead + (f"**{md_text(core)}**" if core else "") + trail)
            pos = b
        out.append(md_text(text[pos:end]))
        rendered = "".join(out).rstrip()
        lines.append(f"> {rendered}" if rendered else ">")
        offset += len(raw)
    return "\n".join(lines)


def _answer_text_md(text: str, numbers: set[int]) -> str:
    out, pos = [], 0
    for m in _MARKER.finditer(text):
        out.append(md_text(text[pos : m.start()]))
        following = text[m.end() : m.end() + 1]
        # A bare [n] is never a link in Markdown unless "(", "[" or ":" follows it.
        keep = int(m.group(1)) in numbers and following not in ("(", "[", ":")
        out.append(m.group(0) if keep else md_text(m.group(0)))
        pos = m.end()
    out.append(md_text(text[pos:]))
    return "".join(out)


def _source_md(
    label: str, item: Citation | Passage, highlights: Sequence[tuple[int, int]]
) -> list[str]:
    return [
        f"**{label}** {md_text(item.title)} ({_year(item.year)}) — "
        f"{md_text(_section(item.section))}  ",
        f"{md_text(item.doc_id)}, characters {item.start}–{item.end}",
        "",
        _quote_md(item.text, item.start, highlights),
        "",
    ]


def answer_markdown(answer: Answer, question: str | None = None) -> str:
    """An answer as Markdown: the text with [n] markers, then each numbered source quoted."""
    out = []
    if question:
        out += [f"**Question:** {md_text(' '.join(question.split()))}", ""]
    out += [_answer_text_md(answer.text, {c.number for c in answer.citations}), ""]
    for notice in answer.notices:
        out += [f"*Note: {md_text(notice)}*", ""]
    if answer.citations:
        out += ["**Sources**", ""]
        for c in answer.citations:
            out += _source_md(f"[{c.number}]", c, c.highlights)
    if answer.abstained and answer.passages:
        out += ["**Closest material** (not an answer)", ""]
        for i, p in enumerate(answer.passages, 1):
            out += _source_md(f"({i})", p, ())
    return "\n".join(out).rstrip() + "\n"


def about_html(documents: Sequence[Document], info: IndexInfo | None = None) -> str:
    """The "About these documents" panel: each document's metadata, escaped."""
    rows = []
    for d in documents:
        meta = [m for m in (d.organisation, d.kind) if m]
        date = d.year_label + (f" ({d.date_note})" if d.date_note else "")
        rows.append(
            '<div class="pq-doc">'
            f'<div class="pq-doc-title">{html_text(d.title)}</div>'
            f'<div class="pq-doc-meta">{html_text(" · ".join([date, *meta]))}</div>'
            + (f'<div class="pq-doc-meta">{html_text(", ".join(d.authors))}</div>' if d.authors
               else "")
            + f'<div class="pq-doc-meta">{len(d.text.split()):,} words · id {html_text(d.doc_id)}'
            "</div></div>"
        )
    size = (
        f" They are indexed as {info.n_chunks} passages." if info is not None else ""
    )
    return (
        '<div class="pq-about">'
        f"<p>Every answer is built from sentences quoted word for word from these "
        f"{len(documents)} documents, each followed by the number of its source.{size} "
        "Nothing else is searched and nothing leaves this computer.</p>"
        + "".join(rows)
        + "</div>"
    )


# -- questions -----------------------------------------------------------------------------------

_HEADING = re.compile(r"^\s{0,3}#{2,4}\s+(.+?)\s*#*\s*$", re.M)


def example_questions(assistant: Assistant, limit: int = 5) -> list[str]:
    """Example questions the documents answer: checked with the assistant, not assumed."""
    candidates = list(CANDIDATE_EXAMPLES)
    for doc in assistant.documents:
        for m in _HEADING.finditer(doc.text):
            heading = re.sub(r"[\[\]()*_`#]+", "", m.group(1)).strip()
            if 3 <= len(heading.split()) <= 8:
                candidates.append(f"What does the evidence say about {heading[0].lower()}"
                                  f"{heading[1:]}?")
    if assistant.settings.answer_mode != "extractive":
        return list(CANDIDATE_EXAMPLES)[:limit]  # checking them would cost API calls each start
    found: list[str] = []
    for question in candidates:
        try:
            answer = assistant.ask(question)
        except PeerQAError:
            continue
        if not answer.abstained and answer.citations:
            found.append(question)
        if len(found) >= limit:
            break
    return found


class AnswerSlots:
    """At most ``slots`` answers at once; a question that waits too long gets a busy message."""

    def __init__(self, slots: int = ANSWER_SLOTS, wait: float = BUSY_WAIT_SECONDS) -> None:
        self._sem = threading.BoundedSemaphore(slots)
        self.wait = wait

    def acquire(self) -> bool:
        return self._sem.acquire(timeout=self.wait)

    def release(self) -> None:
        self._sem.release()


def friendly_error(error: BaseException) -> str:
    """What a practitioner is told when a question cannot be answered."""
    if isinstance(error, InputError):
        return f"I could not use that question: {error}."
    if isinstance(error, PeerQAError):
        return f"Something went wrong while answering: {error}. Please try again."
    return (
        "Something went wrong while answering. Please try again; if it keeps happening, "
        "tell whoever runs this app."
    )


def _log(error: BaseException) -> None:
    print("peerqa: error while answering:", file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)


# -- the Gradio app ------------------------------------------------------------------------------

CSS = """
.gradio-container { max-width: 1280px !important; }
#pq-header h1 { margin-bottom: 0.1em; }
#pq-header p { margin-top: 0; color: var(--body-text-color-subdued); }
.pq-answer { line-height: 1.55; overflow-wrap: anywhere; }
.pq-answer p { margin: 0 0 0.6em 0; }
.pq-abstain { font-weight: 600; }
.pq-notice { font-size: 0.9em; color: var(--body-text-color-subdued); font-style: italic; }
.pq-marker { font-size: 0.78em; vertical-align: super; font-weight: 600; text-decoration: none;
  padding: 0 0.12em; cursor: pointer; color: var(--link-text-color) !important; }
.pq-sources h4, .pq-closest h4 { margin: 0.8em 0 0.3em 0; font-size: 0.95em;
  text-transform: uppercase; letter-spacing: 0.04em; color: var(--body-text-color-subdued); }
.pq-note { font-size: 0.9em; color: var(--body-text-color-subdued); }
details.pq-src { border: 1px solid var(--border-color-primary); border-radius: 8px;
  padding: 0.45em 0.7em; margin: 0.4em 0; background: var(--background-fill-secondary); }
details.pq-src > summary { cursor: pointer; font-size: 0.95em; line-height: 1.4; }
.pq-num { font-weight: 700; margin-right: 0.2em; }
.pq-title { font-weight: 600; font-size: 1em; }
.pq-year { color: var(--body-text-color-subdued); }
.pq-section { display: block; font-size: 0.88em; color: var(--body-text-color-subdued); }
.pq-preview { display: block; font-size: 0.9em; font-style: italic; margin-top: 0.15em; }
details.pq-src[open] .pq-preview { display: none; }
.pq-passage { margin: 0.5em 0 0.2em 0; padding: 0.5em 0.75em; border-left: 3px solid
  var(--color-accent); background: var(--background-fill-primary); font-size: 0.93em; }
.pq-ctx { color: var(--body-text-color-subdued); }
.pq-quote { color: var(--body-text-color); }
mark.pq-hl { background: #fde68a; color: #111; padding: 0 0.1em; border-radius: 2px; }
.pq-loc { font-size: 0.82em; color: var(--body-text-color-subdued); }
.pq-flash { outline: 2px solid var(--color-accent); outline-offset: 2px; }
.pq-about p { font-size: 0.92em; }
.pq-doc { margin: 0.6em 0; }
.pq-doc-title { font-weight: 600; }
.pq-doc-meta { font-size: 0.88em; color: var(--body-text-color-subdued); }
#pq-status { font-size: 0.85em; color: var(--body-text-color-subdued); }
"""

# Clicking a [n] marker opens that answer's source n and scrolls to it. The chat scrolls itself:
# to the bottom while an answer is written, then to the answer's first line (not the end of its
# sources). Listeners sit on the document because Gradio re-renders messages as they stream in.
# The narrow-screen style is here, not in CSS, because Gradio scopes CSS to inside the app's frame.
HEAD = """<style>
@media (max-width: 640px) {
  .gradio-container div.main.app { padding-left: 6px !important; padding-right: 6px !important; }
}
</style>
<script>
(function () {
  document.addEventListener("click", function (event) {
    var link = event.target && event.target.closest ? event.target.closest("a.pq-marker") : null;
    if (!link) { return; }
    var target = document.getElementById((link.getAttribute("href") || "").slice(1));
    event.preventDefault();
    event.stopPropagation();
    if (!target) { return; }
    target.open = true;
    var box = scroller(target);
    if (box) {
      box.scrollTo({top: box.scrollTop + target.getBoundingClientRect().top
        - box.getBoundingClientRect().top - 8, behavior: "smooth"});
    }
    target.classList.add("pq-flash");
    setTimeout(function () { target.classList.remove("pq-flash"); }, 1800);
  }, true);
  function scroller(node) {
    for (var e = node.parentElement; e; e = e.parentElement) {
      var overflow = getComputedStyle(e).overflowY;
      if ((overflow === "auto" || overflow === "scroll") && e.scrollHeight > e.clientHeight) {
        return e;
      }
    }
    return null;
  }
  var shown = new WeakSet();
  var queued = false;
  function follow() {
    queued = false;
    var pending = document.querySelector("#pq-chat .pq-pending");
    if (pending) {
      var box = scroller(pending);
      if (box) { box.scrollTop = box.scrollHeight; }
      return;
    }
    document.querySelectorAll("#pq-chat .pq-answer, #pq-chat .pq-error").forEach(function (el) {
      if (shown.has(el)) { return; }
      shown.add(el);
      var box = scroller(el);
      var row = el.closest(".message-row");
      var question = row && row.previousElementSibling;
      var top = question && question.classList.contains("user-row") ? question : el;
      if (box) {
        box.scrollTop += top.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
      }
    });
  }
  new MutationObserver(function () {
    if (!queued) { queued = true; requestAnimationFrame(follow); }
  }).observe(document.documentElement, {childList: true, subtree: true});
})();
</script>"""

DOWNLOAD_JS = """(markdown) => {
  if (!markdown) { return; }
  const blob = new Blob([markdown], {type: "text/markdown;charset=utf-8"});
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "peerqa-answer.md";
  document.body.appendChild(link);
  link.click();
  setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
}"""


def build_app(
    assistant: Assistant,
    info: IndexInfo | None = None,
    examples: Sequence[str] | None = None,
    slots: AnswerSlots | None = None,
) -> gr.Blocks:
    """The chat app over one opened Assistant (its index already built)."""
    import gradio as gr

    by_id = {d.doc_id: d for d in assistant.documents}
    all_ids = list(by_id)
    limit = assistant.settings.max_question_chars
    slots = slots or AnswerSlots()
    if examples is None:
        examples = example_questions(assistant)

    def chosen(selected: Sequence[str] | None) -> list[str] | None:
        ids = [d for d in (selected or []) if d in by_id]
        if not ids:
            raise InputError(
                "no document is selected: tick at least one under 'Documents to search'"
            )
        return None if set(ids) == set(all_ids) else ids

    def respond(question: str, chat: list, turns: list, selected: list[str]) -> Iterator[tuple]:
        question = (question or "").strip()
        chat = list(chat or [])
        turns = list(turns or [])
        if not question:
            yield chat, turns, "", gr.skip()
            return
        turn = str(len(turns) // 2 + 1)
        chat.append({"role": "user", "content": html_text(question)})
        chat.append({"role": "assistant", "content": '<p class="pq-text pq-pending">…</p>'})
        yield chat, turns, "", gr.skip()
        if not slots.acquire():
            chat[-1] = {"role": "assistant",
                        "content": f'<p class="pq-text pq-error">{BUSY_MESSAGE}</p>'}
            yield chat, turns, gr.skip(), gr.skip()
            return
        try:
            answer, written = None, ""
            for piece in assistant.stream(question, history=turns, doc_ids=chosen(selected)):
                if isinstance(piece, Answer):
                    answer = piece
                    break
                written += piece
                chat[-1] = {"role": "assistant",
                            "content": f'<p class="pq-text pq-pending">{html_text(written)} ▍</p>'}
                yield chat, turns, gr.skip(), gr.skip()
            if answer is None:
                raise PeerQAError("the answer ended before it was complete")
            chat[-1] = {"role": "assistant", "content": answer_html(answer, by_id, turn)}
            turns += [{"role": "user", "content": question},
                      {"role": "assistant", "content": answer.text}]
            yield chat, turns, gr.skip(), answer_markdown(answer, question)
        except Exception as e:  # every failure becomes a message in the chat
            if not isinstance(e, PeerQAError):
                _log(e)
            message = html_text(friendly_error(e))
            chat[-1] = {"role": "assistant",
                        "content": f'<p class="pq-text pq-error">{message}</p>'}
            yield chat, turns, gr.skip(), gr.skip()
        finally:
            slots.release()

    def ask(
        question: str,
        history: list[dict[str, Any]] | None = None,
        documents: list[str] | None = None,
    ) -> str:
        """Answer a question from the documents: Markdown with [n] markers and numbered sources.

        history: earlier turns as [{"role": "user"|"assistant", "content": "..."}], oldest first.
        documents: document ids to search (default: all).
        """
        if not slots.acquire():
            return BUSY_MESSAGE + "\n"
        try:
            answer = assistant.ask(question, history=history, doc_ids=documents or None)
        except PeerQAError as e:
            raise gr.Error(friendly_error(e), print_exception=False) from None
        except Exception as e:
            _log(e)
            raise gr.Error(friendly_error(e), print_exception=False) from None
        finally:
            slots.release()
        return answer_markdown(answer)

    def new_conversation() -> tuple:
        return [], [], "", ""

    with gr.Blocks(title=TITLE, analytics_enabled=False, fill_width=False) as blocks:
        gr.HTML(
            "<h1>peerqa</h1><p>Questions about introducing and supporting mental-health Peer "
            "Support Workers, answered only with sentences quoted from the documents. Click a "
            "number like <b>&#91;1&#93;</b> or a source to read the passage where it "
            "appears.</p>",
            elem_id="pq-header",
        )
        turns = gr.State([])
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=340):
                chat = gr.Chatbot(
                    label="Conversation",
                    show_label=False,
                    elem_id="pq-chat",
                    height="68vh",
                    autoscroll=False,
                    min_height=320,
                    layout="panel",
                    buttons=[],
                    feedback_options=None,
                    latex_delimiters=[],
                    sanitize_html=True,
                    render_markdown=True,
                    allow_tags=False,
                    allow_file_downloads=False,
                    placeholder=(
                        "**Ask about introducing and supporting Peer Support Workers.**\n\n"
                        "Each answer is made of sentences quoted from the documents, each followed "
                        "by a number such as [1]: click it to read the passage where the sentence "
                        "appears. Try one of the example questions below."
                    ),
                )
                with gr.Row(equal_height=True):
                    question = gr.Textbox(
                        show_label=False,
                        placeholder="Ask about peer support work, e.g. what supervision helps?",
                        max_length=limit,
                        lines=1,
                        max_lines=4,
                        scale=5,
                        min_width=200,
                        elem_id="pq-question",
                        autofocus=True,
                    )
                    ask_button = gr.Button("Ask", variant="primary", scale=1, min_width=80,
                                           elem_id="pq-ask")
                with gr.Row():
                    new_button = gr.Button("New conversation", size="sm", elem_id="pq-new")
                shown_examples = None
                if examples:
                    shown_examples = gr.Examples(
                        examples=[[q] for q in examples],
                        inputs=[question],
                        label="Example questions the documents answer (click one to ask it)",
                        examples_per_page=len(examples),
                    )
            with gr.Column(scale=2, min_width=300):
                selected = gr.CheckboxGroup(
                    choices=[(f"{d.short_title or d.title} ({d.year_label})", d.doc_id)
                             for d in by_id.values()],
                    value=all_ids,
                    label="Documents to search",
                    elem_id="pq-docs",
                )
                with gr.Accordion("This answer as Markdown (copy or download)", open=False):
                    export = gr.Textbox(
                        show_label=False,
                        lines=8,
                        max_lines=16,
                        interactive=False,
                        buttons=["copy"],
                        elem_id="pq-export",
                        placeholder="The latest answer, with its references, appears here.",
                    )
                    download = gr.Button("Download .md", size="sm", elem_id="pq-download")
                with gr.Accordion("About these documents", open=False, elem_id="pq-about"):
                    gr.HTML(about_html(list(by_id.values()), info))
                status = f"{len(by_id)} documents"
                if info is not None:
                    status += f" · {info.n_chunks} passages indexed"
                gr.HTML(f"<p>{html_text(status)} · answers are quoted, never invented</p>",
                        elem_id="pq-status")

        answering = {
            "fn": respond,
            "inputs": [question, chat, turns, selected],
            "outputs": [chat, turns, question, export],
            "api_visibility": "private",
            "show_progress": "hidden",
            "concurrency_id": "answers",
        }
        gr.on(triggers=[ask_button.click, question.submit], **answering)
        if shown_examples is not None:
            shown_examples.load_input_event.then(**answering)
        new_button.click(new_conversation, outputs=[chat, turns, question, export],
                         api_visibility="private", queue=False)
        # The chat's own clear button must forget the history too, or follow-ups would use it.
        chat.clear(lambda: ([], ""), outputs=[turns, export], api_visibility="private",
                   queue=False)
        download.click(None, inputs=[export], js=DOWNLOAD_JS, api_visibility="private")
        gr.api(ask, api_name="ask", concurrency_id="answers")
    return blocks


# -- launching -----------------------------------------------------------------------------------


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

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
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


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Open the index (building it the first time), then serve the app until interrupted."""
    parser = argparse.ArgumentParser(
        prog="app_gradio.py", description="The peerqa chat app (offline, on 127.0.0.1)."
    )
    parser.add_argument("--host", help="address to listen on (env PEERQA_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (env PEERQA_PORT; default 7860)")
    parser.add_argument("--corpus", metavar="DIR",
                        help="folder of documents (env PEERQA_CORPUS_DIR)")
    parser.add_argument("--index-dir", metavar="DIR", help="index folder (env PEERQA_INDEX_DIR)")
    args = parser.parse_args(argv)

    try:
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        settings = load_settings(**overrides)
        launch_auth(settings)  # refuse an exposed address without credentials, before any work
        from .assistant import Assistant

        assistant = Assistant(corpus_dir=args.corpus, index_dir=args.index_dir, settings=settings)
        print(f"peerqa: opening the index at {assistant.settings.resolved_index_dir}",
              file=sys.stderr)
        progress = ProgressBar()
        try:
            info = assistant.index(progress=progress)
        finally:
            progress.close()
        verb = "built" if info.built else "reused"
        print(f"peerqa: {verb} the index: {info.n_documents} documents, {info.n_chunks} passages "
              f"({info.seconds:.1f} s)", file=sys.stderr)
        for path, reason in info.skipped:
            print(f"peerqa: skipped {path}: {reason}", file=sys.stderr)
    except PeerQAError as e:
        print(f"peerqa: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, (ConfigurationError, InputError)) else 1

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # SIGTERM closes the server like Ctrl+C does, so the private temp folder is removed.
    signal.signal(signal.SIGTERM, _interrupt)
    own_temp = "GRADIO_TEMP_DIR" not in os.environ
    if own_temp:
        os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="peerqa-gradio-")
    try:
        blocks = build_app(assistant, info)
        s = assistant.settings
        try:
            url = launch(blocks, s, blocked=[s.resolved_index_dir, s.resolved_corpus_dir])
        except OSError as e:
            print(f"peerqa: error: cannot listen on {s.host}:{s.port} ({e}): stop what uses "
                  "the port or choose another with PEERQA_PORT / --port", file=sys.stderr)
            return 1
        print(f"peerqa: ready at {url.rstrip('/')} (Ctrl+C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            blocks.block_thread()
        return 0
    finally:
        if own_temp:
            shutil.rmtree(os.environ["GRADIO_TEMP_DIR"], ignore_errors=True)
