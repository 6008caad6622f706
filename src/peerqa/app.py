"""The Gradio chat app: the Blocks over one Assistant, and a launch with safe defaults.

How answers look is ``render.py``'s job (every corpus string is escaped there); the style and
script are static files beside this module. ``Handlers`` holds what the app's events call, by
name; ``build_app`` wires them into Gradio; ``main`` opens the index once and launches on
127.0.0.1 with a bounded queue, no share link, no analytics and no file routes.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigurationError,
    InputError,
    PeerQAError,
)
from .markup import html_text
from .render import (
    ProgressBar,
    about_html,
    answer_html,
    answer_markdown,
    conversation_markdown,
    friendly_error,
)
from .serving import STATIC, launch, launch_auth
from .settings import load_settings
from .text import HEADING, heading_level
from .types import Answer, Document

if TYPE_CHECKING:
    import gradio as gr

    from .assistant import Assistant
    from .indexing import IndexInfo

TITLE = "peerqa: evidence on Peer Support Workers"
ANSWER_SLOTS = 2
"""Questions answered at once (the answering is CPU-bound); the rest wait for a slot."""
BUSY_WAIT_SECONDS = 30.0
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
DOWNLOAD_JS = (STATIC / "download.js").read_text(encoding="utf-8")
COPY_JS = (STATIC / "copy.js").read_text(encoding="utf-8")
EMPTY_MESSAGE = "Type a question first, for example: What training do peer support workers need?"

# -- questions -----------------------------------------------------------------------------------

def example_questions(assistant: Assistant, limit: int = 5) -> list[str]:
    """Example questions the documents answer: checked with the assistant, not assumed."""
    candidates = list(CANDIDATE_EXAMPLES)
    for doc in assistant.documents:
        for m in HEADING.finditer(doc.text):
            if not 2 <= heading_level(m) <= 4:
                continue
            heading = re.sub(r"[\[\]()*_`#]+", "", m.group(2)).strip()
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


def too_long_message(length: int, limit: int) -> str:
    """What a practitioner is told when a question is over the limit (it is never cut)."""
    return (f"Your question is {length:,} characters long; the limit is {limit:,}. "
            "Please shorten it, then ask again.")


_notices = itertools.count(1)


def notice_html(message: str = "") -> str:
    """The line above the question box: a short message, or nothing. Each message has its own
    id, so the same message twice is shown twice (the page hides a notice once typing resumes)."""
    if not message:
        return ""
    return f'<p class="pq-notice-msg" id="pq-notice-{next(_notices)}">{html_text(message)}</p>'




def _log(error: BaseException) -> None:
    """The whole story for whoever runs the app: the message, and a traceback when unexpected."""
    if isinstance(error, PeerQAError):
        print(f"peerqa: error while answering: {error}", file=sys.stderr)
        return
    print("peerqa: error while answering:", file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)


# -- the Gradio app ------------------------------------------------------------------------------


class Handlers:
    """What the app's events call: one object per app, reachable by name (tests call it too)."""

    def __init__(self, assistant: Assistant, slots: AnswerSlots | None = None) -> None:
        import gradio as gr

        self._gr = gr
        self.assistant = assistant
        self.slots = slots or AnswerSlots()
        self.documents: dict[str, Document] = {d.doc_id: d for d in assistant.documents}

    def chosen(self, selected: Sequence[str] | None) -> list[str] | None:
        """The ticked documents as a filter (None when all are ticked)."""
        ids = [d for d in (selected or []) if d in self.documents]
        if not ids:
            raise InputError(
                "no document is selected: tick at least one under 'Documents to search'"
            )
        return None if set(ids) == set(self.documents) else ids

    def respond(
        self,
        question: str,
        chat: list[dict[str, str]],
        turns: list[dict[str, str]],
        selected: list[str],
        export: str = "",
    ) -> Iterator[tuple[Any, ...]]:
        """The chat: the question, the answer as it is written, then the answer with sources.

        Yields (chat, turns, question box, conversation Markdown, notice). An empty or too long
        question gets a notice and keeps the question box as it is, so nothing typed is lost.
        """
        gr = self._gr
        question = (question or "").replace("\x00", "").strip()
        chat = list(chat or [])
        turns = list(turns or [])
        limit = self.assistant.settings.max_question_chars
        if not question:
            yield chat, turns, gr.skip(), gr.skip(), notice_html(EMPTY_MESSAGE)
            return
        if len(question) > limit:
            yield chat, turns, gr.skip(), gr.skip(), notice_html(
                too_long_message(len(question), limit))
            return
        turn = str(len(turns) // 2 + 1)
        chat.append({"role": "user", "content": html_text(question)})
        chat.append({"role": "assistant", "content": '<p class="pq-text pq-pending">…</p>'})
        yield chat, turns, "", gr.skip(), notice_html()
        if not self.slots.acquire():
            chat[-1] = {"role": "assistant",
                        "content": f'<p class="pq-text pq-error">{BUSY_MESSAGE}</p>'}
            yield chat, turns, gr.skip(), gr.skip(), gr.skip()
            return
        try:
            answer, written = None, ""
            pieces = self.assistant.stream(question, history=turns,
                                           doc_ids=self.chosen(selected))
            for piece in pieces:
                if isinstance(piece, Answer):
                    answer = piece
                    break
                written += piece
                chat[-1] = {"role": "assistant",
                            "content": f'<p class="pq-text pq-pending">{html_text(written)} ▍</p>'}
                yield chat, turns, gr.skip(), gr.skip(), gr.skip()
            if answer is None:
                raise PeerQAError("the answer ended before it was complete")
            # The documents of the index that answered (a newer one may have replaced it).
            documents = {d.doc_id: d for d in self.assistant.documents}
            chat[-1] = {"role": "assistant", "content": answer_html(answer, documents, turn)}
            turns += [{"role": "user", "content": question},
                      {"role": "assistant", "content": answer.text}]
            yield (chat, turns, gr.skip(), conversation_markdown(export or "", answer, question),
                   gr.skip())
        except Exception as e:  # every failure becomes a message in the chat
            if not isinstance(e, InputError):
                _log(e)
            message = html_text(friendly_error(e))
            chat[-1] = {"role": "assistant",
                        "content": f'<p class="pq-text pq-error">{message}</p>'}
            yield chat, turns, gr.skip(), gr.skip(), gr.skip()
        finally:
            self.slots.release()

    def _ask(
        self, question: str, history: list[dict[str, Any]] | None, documents: list[str] | None
    ) -> Answer | None:
        """The answer, or None when no answer slot frees up; failures become gr.Error."""
        gr = self._gr
        if not self.slots.acquire():
            return None
        try:
            return self.assistant.ask(question, history=history, doc_ids=documents or None)
        except Exception as e:
            if not isinstance(e, InputError):
                _log(e)  # the log keeps the detail; the reader gets words without paths
            raise gr.Error(friendly_error(e), print_exception=False) from None
        finally:
            self.slots.release()

    def ask(
        self,
        question: str,
        history: list[dict[str, Any]] | None = None,
        documents: list[str] | None = None,
    ) -> str:
        """Answer a question from the documents: Markdown with [n] markers and numbered sources.

        history: earlier turns as [{"role": "user"|"assistant", "content": "..."}], oldest first.
        documents: document ids to search (default: all).
        """
        answer = self._ask(question, history, documents)
        return BUSY_MESSAGE + "\n" if answer is None else answer_markdown(answer)

    def ask_json(
        self,
        question: str,
        history: list[dict[str, Any]] | None = None,
        documents: list[str] | None = None,
    ) -> dict[str, Any]:
        """Answer a question from the documents, as data: text, coverage, missing, citations
        [{number, doc_id, title, section, year, page, text, start, end, relevance, ...}],
        conflicts, then the answer's other fields (what Answer.to_dict() gives).

        history: earlier turns as [{"role": "user"|"assistant", "content": "..."}], oldest first.
        documents: document ids to search (default: all).
        """
        answer = self._ask(question, history, documents)
        if answer is None:
            return {"error": BUSY_MESSAGE, "hint": "ask again in a moment"}
        return answer.to_dict()

    @staticmethod
    def new_conversation() -> tuple[list[Any], list[Any], str, str, str]:
        return [], [], "", "", ""


def build_app(
    assistant: Assistant,
    info: IndexInfo | None = None,
    examples: Sequence[str] | None = None,
    slots: AnswerSlots | None = None,
    handlers: Handlers | None = None,
) -> gr.Blocks:
    """The chat app over one opened Assistant (its index already built)."""
    import gradio as gr

    on = handlers or Handlers(assistant, slots)
    by_id = on.documents
    all_ids = list(by_id)
    limit = assistant.settings.max_question_chars
    if examples is None:
        examples = example_questions(assistant)

    with gr.Blocks(title=TITLE, analytics_enabled=False, fill_width=False) as blocks:
        gr.HTML(
            "<h1>peerqa</h1><p>Questions about introducing and supporting mental-health Peer "
            "Support Workers, answered only with sentences quoted from the documents. Click a "
            "number like <b>&#91;1&#93;</b> or a source to read the passage where it "
            f'appears.</p><span hidden id="pq-limit" data-limit="{limit}"></span>',
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
                # Notices sit just above the question box, so they show wherever it is in view.
                notice = gr.HTML("", elem_id="pq-notice", padding=False)
                gr.HTML('<p id="pq-client-msg" class="pq-notice-msg" role="status" '
                        'aria-live="polite"></p>', elem_id="pq-client", padding=False)
                with gr.Row(equal_height=True):
                    # No max_length: a pasted question over the limit is never cut silently; the
                    # notice below says how long it is and what the limit is.
                    question = gr.Textbox(
                        label="Your question",
                        show_label=False,
                        placeholder="Ask about peer support work, e.g. what supervision helps?",
                        lines=1,
                        max_lines=4,
                        scale=5,
                        min_width=200,
                        elem_id="pq-question",
                        autofocus=True,
                    )
                    ask_button = gr.Button("Ask", variant="primary", scale=1, min_width=80,
                                           elem_id="pq-ask")
                with gr.Row(elem_id="pq-actions"):
                    new_button = gr.Button("New conversation", size="sm", scale=0,
                                           elem_id="pq-new")
                    copy = gr.Button("Copy", size="sm", scale=0, elem_id="pq-copy")
                    download = gr.Button("Download .md", size="sm", scale=0,
                                         elem_id="pq-download")
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
                with gr.Accordion("The conversation as Markdown", open=False,
                                  elem_id="pq-export-box"):
                    export = gr.Textbox(
                        label="The conversation as Markdown",
                        show_label=False,
                        lines=8,
                        max_lines=16,
                        interactive=False,
                        elem_id="pq-export",
                        placeholder="Every question and answer, with its sources, appears here.",
                    )
                with gr.Accordion("About these documents", open=False, elem_id="pq-about"):
                    gr.HTML(about_html(list(by_id.values()), info))
                status = f"{len(by_id)} documents"
                if info is not None:
                    status += f" · {info.n_chunks} passages indexed"
                gr.HTML(f"<p>{html_text(status)} · answers are quoted, never invented</p>",
                        elem_id="pq-status")

        answering = {
            "fn": on.respond,
            "inputs": [question, chat, turns, selected, export],
            "outputs": [chat, turns, question, export, notice],
            "api_visibility": "private",
            "show_progress": "hidden",
            "concurrency_id": "answers",
        }
        gr.on(triggers=[ask_button.click, question.submit], **answering)
        if shown_examples is not None:
            shown_examples.load_input_event.then(**answering)
        new_button.click(on.new_conversation, outputs=[chat, turns, question, export, notice],
                         api_visibility="private", queue=False)
        # The chat's own clear button must forget the history too, or follow-ups would use it.
        chat.clear(lambda: ([], "", ""), outputs=[turns, export, notice],
                   api_visibility="private", queue=False)
        copy.click(None, inputs=[export], js=COPY_JS, api_visibility="private")
        download.click(None, inputs=[export], js=DOWNLOAD_JS, api_visibility="private")
        gr.api(on.ask, api_name="ask", concurrency_id="answers")  # type: ignore[attr-defined]
        gr.api(on.ask_json, api_name="ask_json",  # type: ignore[attr-defined]
               concurrency_id="answers")
    app: gr.Blocks = blocks
    return app


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
        if info.repaired:
            print(f"peerqa: the index was damaged ({info.repaired}); rebuilt it", file=sys.stderr)
        verb = "built" if info.built else "reused"
        print(f"peerqa: {verb} the index: {info.n_documents} documents, {info.n_chunks} passages "
              f"({info.seconds:.1f} s)", file=sys.stderr)
        for path, reason in info.skipped:
            print(f"peerqa: skipped {path}: {reason}", file=sys.stderr)
    except PeerQAError as e:
        print(f"peerqa: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, (ConfigurationError, InputError)) else 1

    # Read by Gradio and huggingface_hub when they start: no telemetry, no Hub look-ups.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
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
