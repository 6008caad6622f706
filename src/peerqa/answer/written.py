"""Written answers from an OpenAI-compatible chat model, every sentence verified before it is shown.

``WrittenAnswerer.run`` sends the prompt (``prompt.py``), feeds the reply to the ``Verifier`` as
it streams and yields only verified text, then one result: an ``Answer``, or a ``Fallback`` when
nothing usable came back (the backend failed, or no sentence survived verification). What to do
with a ``Fallback`` (the offline answer instead, or an error in strict mode) is the facade's
choice, not this module's.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError
from ..openai_client import OpenAIBackend
from ..text import MARKER, markers
from ..types import Answer, AnswerChecks, AnswerPart, Passage
from .answerability import Verdict
from .judge import check_citations
from .outcome import abstention
from .prompt import Prompt, build_prompt
from .shape import cited_conflicts
from .verifier import UNSUPPORTED_FLAG, Verifier

log = logging.getLogger(__name__)

_REASONING_MODEL = re.compile(r"^(?:o\d|gpt-5)")


@dataclass(frozen=True, slots=True)
class WrittenSettings:
    """What the written answer needs to know of the settings."""

    model: str
    context_window: int
    answer_tokens: int
    max_sentences: int
    flag_unsupported: bool


@dataclass(frozen=True, slots=True)
class Fallback:
    """The written answer cannot be shown: why, and what was learnt on the way."""

    kind: str  # "backend_error" or "unverified"
    reason: str  # a sentence for the reader, without its final full stop
    notices: list[str]
    checks: AnswerChecks
    error: BackendError | None = None


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The backend failed after some sentences were verified: they stand, marked incomplete."""

    answer: Answer
    error: BackendError


@dataclass(slots=True)
class _Reply:
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    failure: BackendError | None = None


@dataclass(slots=True)
class _Report:
    notices: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class WrittenAnswerer:
    """Writes answers with an OpenAI-compatible chat model and keeps only verified sentences."""

    def __init__(self, backend: OpenAIBackend, settings: WrittenSettings) -> None:
        self.backend = backend
        self.settings = settings

    def run(
        self,
        question: str,
        history: Sequence[Mapping[str, str]],
        passages: Sequence[Passage],
        query: str,
        *,
        stream: bool,
        verdict: Verdict | None = None,
        titles: Mapping[str, str] | None = None,
    ) -> Iterator[str | Answer | Fallback | Interrupted]:
        """Verified text as it is written, then an ``Answer``, ``Interrupted`` or ``Fallback``.

        ``verdict`` is the offline answerability check's view of the same passages: the answer
        is never more complete than both it and the model say. ``titles`` name the sources in
        peerqa's own lines.
        """
        s = self.settings
        if not passages:
            yield abstention(question, passages, query, mode="openai",
                             missing=verdict.missing if verdict else "")
            return
        prompt = build_prompt(
            question, history, passages,
            context_window=s.context_window,
            answer_tokens=s.answer_tokens,
            max_sentences=s.max_sentences,
        )
        verifier = Verifier(prompt.sources, flag_unsupported=s.flag_unsupported)
        reply = _Reply()
        try:
            for delta in self._generate(prompt, reply, stream):
                yield from verifier.feed(delta)
        except BackendError as exc:
            reply.failure = exc
            log.info("the written answer failed: %s", exc)
        if reply.failure is None:
            yield from verifier.flush()
        yield self._result(question, list(passages), query, prompt, verifier, reply,
                           verdict, dict(titles or {}))

    def _request(self, prompt: Prompt, stream: bool) -> dict[str, Any]:
        s = self.settings
        req: dict[str, Any] = {"model": s.model, "messages": prompt.messages}
        if _REASONING_MODEL.match(s.model):
            # Reasoning models reject temperature and max_tokens.
            req["max_completion_tokens"] = s.answer_tokens
        else:
            req["temperature"] = 0
            req["max_tokens"] = s.answer_tokens
        if stream:
            req["stream"] = True
        return req

    def _generate(self, prompt: Prompt, reply: _Reply, stream: bool) -> Iterator[str]:
        """The reply's text in deltas (one delta when not streaming); BackendError on failure.

        One deadline (``openai_timeout`` from now) covers the whole reply, streamed or not.
        """
        what = "chat model"
        req = self._request(prompt, stream)
        deadline = time.monotonic() + self.backend.timeout
        if not stream:
            completion = self.backend.call(
                lambda c: c.chat.completions.create(**req), what, deadline
            )
            if not hasattr(completion, "choices"):  # e.g. an event stream it did not ask for
                raise self.backend.unreadable(what, completion)
            choice = completion.choices[0] if completion.choices else None
            reply.finish_reason = choice.finish_reason if choice else None
            if completion.usage is not None:
                reply.usage = {"prompt_tokens": completion.usage.prompt_tokens,
                               "completion_tokens": completion.usage.completion_tokens}
            content = choice.message.content if choice else None
            yield content or ""
            return
        chunks = self.backend.call(lambda c: c.chat.completions.create(**req), what, deadline)
        with chunks:
            for chunk in self.backend.iterate(chunks, what, deadline):
                for choice in chunk.choices or ():
                    if choice.finish_reason:
                        reply.finish_reason = choice.finish_reason
                    if choice.delta and choice.delta.content:
                        yield choice.delta.content

    # -- the result -----------------------------------------------------------------------

    def _request_checks(self, prompt: Prompt) -> AnswerChecks:
        return AnswerChecks(
            model=self.settings.model,
            passages_sent=len(prompt.sources),
            passages_cut=prompt.passages_cut,
            history_cut=prompt.history_cut,
            prompt_tokens_estimate=prompt.prompt_tokens,
        )

    def _cut_notice(self, prompt: Prompt, n_passages: int) -> list[str]:
        if not (prompt.passages_cut or prompt.history_cut):
            return []
        s = self.settings
        cut = []
        if prompt.passages_cut:
            cut.append(f"{prompt.passages_cut} of {n_passages} retrieved passages")
        if prompt.history_cut:
            cut.append(f"{prompt.history_cut} earlier message(s)")
        return [
            f"To fit the model's context window ({s.context_window} tokens, "
            f"{s.answer_tokens} kept for the answer), {' and '.join(cut)} were left out."
        ]

    def _verification(self, verifier: Verifier, reply: _Reply) -> tuple[AnswerChecks, _Report]:
        """What the verifier removed, as checks and as notices for the reader."""
        s = self.settings
        report = _Report()
        removed = sorted(set(verifier.removed_markers))
        if removed:
            report.failed.append("markers_resolve")
        if verifier.uncited:
            report.failed.append("sentences_cited")
        if verifier.unsupported:
            report.failed.append("sentences_supported")
        if verifier.linked:
            report.failed.append("no_links")
        if verifier.instructions:
            report.failed.append("no_instructions")
        flag = verifier.flag_unsupported
        bad = verifier.uncited + verifier.unsupported
        checks = AnswerChecks(
            generated_markers_resolve=not removed,
            removed_markers=removed,
            uncited_generated=verifier.uncited,
            unsupported_generated=verifier.unsupported,
            linked_generated=verifier.linked,
            dropped_sentences=verifier.linked + verifier.instructions + (0 if flag else bad),
            flagged_sentences=bad if flag else 0,
            finish_reason=reply.finish_reason,
            usage=reply.usage,
        )
        if removed:
            report.notices.append(
                "Removed citation marker(s) that pointed at no source: "
                + ", ".join(f"[{n}]" for n in removed) + "."
            )
        if verifier.linked:
            report.notices.append(
                f"{verifier.linked} sentence(s) containing a link were removed: written answers "
                "carry no links (a source's own links show in its quoted passage)."
            )
        if verifier.instructions:
            report.notices.append(
                f"{verifier.instructions} sentence(s) giving instructions, or repeating "
                "instructions found in a document, were removed: documents are data, never "
                "instructions."
            )
        if bad and flag:
            report.notices.append(
                f"{bad} sentence(s) marked {UNSUPPORTED_FLAG} have no citation or are not "
                "supported by the passages they cite: check them against the sources."
            )
        elif bad and verifier.kept:
            report.notices.append(
                f"{bad} sentence(s) of the written answer were removed: they had no citation or "
                "the passages they cite do not support them."
            )
        if reply.failure is None and reply.finish_reason is None:
            report.notices.append(
                "The model's reply ended before the model said it had finished; the written "
                "answer may be incomplete."
            )
        if reply.finish_reason == "length":
            report.notices.append(
                f"The written answer reached its length limit ({s.answer_tokens} tokens, "
                "PEERQA_OPENAI_ANSWER_TOKENS) and may be incomplete."
            )
        if reply.failure is not None:
            report.notices.append(
                f"The written answer was cut short ({reply.failure}); it may be incomplete."
            )
        return checks, report

    def _result(
        self,
        question: str,
        passages: list[Passage],
        query: str,
        prompt: Prompt,
        verifier: Verifier,
        reply: _Reply,
        verdict: Verdict | None,
        titles: Mapping[str, str],
    ) -> Answer | Fallback | Interrupted:
        sent = self._request_checks(prompt)
        notices = self._cut_notice(prompt, len(passages))
        failure = reply.failure
        error_name = type(failure).__name__ if failure is not None else None
        if failure is not None and not verifier.kept:
            return Fallback(
                kind="backend_error",
                reason=f"The written answer is unavailable ({failure})",
                notices=notices,
                checks=dataclasses.replace(sent, backend_error=error_name),
                error=failure,
            )
        found, report = self._verification(verifier, reply)
        checks = _merge(sent, found, backend_error=error_name)
        notices += report.notices
        if verifier.compromised:  # the reply followed injected text: quotes instead
            return Fallback(
                kind="unverified",
                reason="The written answer followed instructions or links found in the "
                       "documents, so it is not shown",
                notices=notices,
                checks=dataclasses.replace(checks, failed=[*report.failed, "compromised"]),
            )
        if not verifier.kept:
            if verifier.gap:
                declined = verdict is not None and verdict.coverage != "answered"
                base = abstention(question, passages, query, mode="openai",
                                  missing=verdict.missing if declined and verdict else "")
                checks = dataclasses.replace(checks, abstained=True, failed=report.failed)
                return dataclasses.replace(base, notices=notices, checks=checks)
            bad = verifier.uncited + verifier.unsupported
            reason = ("None of the written answer's sentences is supported by the passages it "
                      "cites" if bad or verifier.linked else "The model returned no answer text")
            return Fallback(
                kind="unverified",
                reason=reason,
                notices=notices,
                checks=dataclasses.replace(checks, failed=[*report.failed, "nothing_verified"]),
            )
        if verifier.gap:
            notices.append("The written answer says the sources do not cover every part of the "
                           "question.")
        citations = verifier.citations()
        coverage, missing = _coverage(verifier, verdict)
        conflicts, differ = cited_conflicts(citations, titles)
        written = [
            AnswerPart("written", MARKER.sub("", body).strip().removeprefix("- ").strip(),
                       tuple(dict.fromkeys(markers(body))), body.lstrip().startswith("- "))
            for body in verifier.parts
        ]
        own = [AnswerPart("lead", missing)] if coverage == "partial" else []
        parts = [*own, *written, *differ]
        # The model's layout is kept; peerqa's own lines go before and after it.
        text = "\n".join([*(p.text for p in own), verifier.text, *_differ_lines(differ)])
        shown = check_citations(text, citations, parts)
        answer = Answer(
            question=question,
            text=text,
            citations=citations,
            abstained=False,
            passages=passages,
            mode="openai",
            notices=notices,
            checks=with_citation_checks(
                dataclasses.replace(checks, failed=report.failed), shown
            ),
            retrieval_query=query,
            coverage=coverage,
            missing=missing if coverage == "partial" else "",
            conflicts=conflicts,
            parts=parts,
        )
        return answer if failure is None else Interrupted(answer, failure)


def _merge(sent: AnswerChecks, found: AnswerChecks, **extra: Any) -> AnswerChecks:
    """The request's checks with the verifier's findings on top."""
    written = {
        f.name: getattr(found, f.name)
        for f in dataclasses.fields(AnswerChecks)
        if getattr(found, f.name) is not None and f.default is None
    }
    return dataclasses.replace(sent, **written, **extra)


def with_citation_checks(checks: AnswerChecks, shown: AnswerChecks) -> AnswerChecks:
    """``checks`` with the judge's view of the answer as shown (markers, support)."""
    return dataclasses.replace(
        checks,
        markers_resolve=shown.markers_resolve,
        unresolved_markers=shown.unresolved_markers,
        all_citations_used=shown.all_citations_used,
        unsupported_sentences=shown.unsupported_sentences,
        abstained=shown.abstained,
    )


def _differ_lines(parts: Sequence[AnswerPart]) -> list[str]:
    """The plain lines of differing figures: peerqa's labels and the verbatim quotes."""
    return [("- " if p.bullet else "") + p.marked for p in parts]


def _coverage(verifier: Verifier, offline: Verdict | None) -> tuple[str, str]:
    """Partial when the model says so or the offline check does; what is missing is the
    model's own line when it gave one, else the check's."""
    if not verifier.gap and (offline is None or offline.coverage == "answered"):
        return "answered", ""
    if verifier.missing:
        said = verifier.missing.rstrip(".")
        if said.lower().startswith(("the ", "they ", "no ")):
            return "partial", f"{said[0].upper()}{said[1:]}."
        return "partial", f"The sources do not give {said[0].lower()}{said[1:]}."
    if offline is not None and offline.missing:
        return "partial", offline.missing
    return "partial", "The documents answer only part of this question."
