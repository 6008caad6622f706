"""The HTML report of an evaluation: one self-contained page, inline SVG charts, no script.

Every piece of text from the gold set, the answers or the documents goes through
``html.escape`` before it reaches the page.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from .baselines import SystemScores
from .runner import EvalRun
from .scoring import TARGETS, ItemResult, metric_names
from .tables import (
    GUARANTEED,
    GUARANTEED_EXTRACTIVE,
    LOWER,
    LOWER_IS_BETTER,
    comparison_columns,
    fmt,
    label,
    legend,
    marks,
    meets,
    target_text,
)

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 3px 9px; border-bottom: 1px solid #e3e3e3; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.miss { color: #b00020; font-weight: 600; } td.ok { color: #1b6e20; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; }
.chart h3 { margin: .3em 0; font-size: 1em; }
.item { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; margin: 1em 0; }
.item h3 { margin: .2em 0; font-size: 1em; }
.why { color: #b00020; margin: .3em 0; }
.quote { background: #f6f6f2; border-left: 3px solid #bbb; padding: 2px 8px; margin: 3px 0;
         white-space: pre-wrap; }
.yes { color: #1b6e20; } .no { color: #b00020; }
.small { color: #666; font-size: .9em; } td.small { text-align: left; vertical-align: top; }
table.sbs td { max-width: 28em; } b.ok { color: #1b6e20; } b.miss { color: #b00020; }
"""

_BAR = "#3b6ea8"
_LOWER_BAR = "#b8741a"
_TARGET = "#b00020"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _rates(k: int) -> list[str]:
    """The metrics in [0, 1] drawn in the per-type charts."""
    return [n for n in metric_names(k)
            if "words" not in n and not n.startswith("latency") and n != "flawed_quotes"]


def bar_chart(
    title: str,
    values: Sequence[tuple[str, float | None, float | None]],
    lower_is_better: frozenset[str] = frozenset(),
) -> str:
    """A horizontal bar chart of rates in [0, 1]: (label, value, target or None) per bar; the
    labels in ``lower_is_better`` are drawn in another colour, marked ↓ ("lower is better")."""
    left, width, row = 170, 280, 20
    height = row * len(values) + 28
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 60}" height="{height}" '
        f'role="img" aria-label="{_e(title)}">'
    ]
    for x in (0.0, 0.5, 1.0):
        px = left + x * width
        parts.append(f'<line x1="{px:.1f}" y1="4" x2="{px:.1f}" y2="{height - 18}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{px:.1f}" y="{height - 4}" font-size="11" '
                     f'text-anchor="middle" fill="#666">{x:g}</text>')
    for i, (name, value, target) in enumerate(values):
        y = 6 + i * row
        lower = name in lower_is_better
        shown = f"{name} {LOWER}" if lower else name
        parts.append(f'<text x="{left - 6}" y="{y + 12}" font-size="12" text-anchor="end">'
                     f"{_e(shown)}</text>")
        if value is None:
            parts.append(f'<text x="{left + 4}" y="{y + 12}" font-size="12" fill="#999">'
                         "n/a</text>")
            continue
        w = max(0.0, min(1.0, value)) * width
        note = " (lower is better)" if lower else ""
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" '
                     f'fill="{_LOWER_BAR if lower else _BAR}"><title>{_e(name)}: {value:.3f}'
                     f"{note}</title></rect>")
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 12}" font-size="11">'
                     f"{value:.2f}</text>")
        if target is not None:
            tx = left + max(0.0, min(1.0, target)) * width
            parts.append(f'<line x1="{tx:.1f}" y1="{y}" x2="{tx:.1f}" y2="{y + row - 2}" '
                         f'stroke="{_TARGET}" stroke-width="2" stroke-dasharray="3,2">'
                         f"<title>target {target:g}</title></line>")
    parts.append("</svg>")
    return "".join(parts)


def _chart_for(title: str, figures: dict[str, float | None], k: int) -> str:
    values = []
    for name in _rates(k):
        target = TARGETS[name][1] if name in TARGETS else None
        values.append((label(name), figures.get(name), target))
    lower = frozenset(label(n) for n in _rates(k) if n in LOWER_IS_BETTER)
    return (f'<div class="chart"><h3>{_e(title)}</h3>'
            f"{bar_chart(title, values, lower)}</div>")


def _legend(names: Sequence[str], mode: str) -> str:
    """What each figure means, one row per metric, with the marks the table uses."""
    rows = "".join(
        f"<tr><td>{_e(label(n))}</td><td>{_e(marks(n, mode))}</td>"
        f'<td class="small">{_e(legend(n))}</td></tr>'
        for n in names
    )
    notes = [f"{LOWER} lower is better (charted in orange)."]
    if mode == "extractive":
        guaranteed = ", ".join(label(n) for n in sorted(GUARANTEED_EXTRACTIVE))
        notes.append(f"{GUARANTEED} 1.0 by construction in extractive mode ({guaranteed}): "
                     "every sentence is a verbatim quote of the passage it cites, so these check "
                     "the machinery rather than measure the answers.")
    return (f"<table><tr><th>metric</th><th></th><th>what it means</th></tr>{rows}</table>"
            + "".join(f'<p class="small">{_e(n)}</p>' for n in notes))


def _figures_table(run: EvalRun) -> str:
    types = list(run.by_type)
    head = "".join(f"<th>{_e(t)}</th>" for t in ["metric", "overall", *types, "target", "gap"])
    rows = [f"<tr>{head}</tr>"]
    for name in ["items", "answerable", "failed", *metric_names(run.k)]:
        value = run.overall.get(name)
        ok = meets(name, value)
        cls = {True: ' class="ok"', False: ' class="miss"', None: ""}[ok]
        gap = ""
        if ok is False and value is not None:
            gap = f"{value - TARGETS[name][1]:+.3f}"
        mark = marks(name, run.mode)
        cells = [f"<td>{_e(label(name) + (' ' + mark if mark else ''))}</td>",
                 f"<td{cls}>{_e(fmt(value, name))}</td>"]
        cells += [f"<td>{_e(fmt(run.by_type[t].get(name), name))}</td>" for t in types]
        cells += [f"<td>{_e(target_text(name))}</td>", f'<td class="miss">{_e(gap)}</td>']
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table>{''.join(rows)}</table>"


def _comparison(systems: Sequence[SystemScores]) -> str:
    cols = comparison_columns(systems)
    heads = ["system", "passages", *cols, "MRR@passages", "evidence recall", "avg words",
             "max words", "what it is"]
    rows = ["<tr>" + "".join(f"<th>{_e(h)}</th>" for h in heads) + "</tr>"]
    for s in systems:
        cells = [s.name, str(s.returned), *[fmt(s.hits.get(c)) for c in cols], fmt(s.mrr),
                 fmt(s.evidence_recall), fmt(s.avg_passage_words, "words"),
                 fmt(s.max_passage_words, "words")]
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells)
                    + f'<td class="small">{_e(s.description)}</td></tr>')
    charts = []
    for c in cols:
        values = [(s.name, s.hits.get(c), TARGETS["hit@5"][1] if c == "hit@5" else None)
                  for s in systems]
        charts.append(f'<div class="chart"><h3>{_e(c)}</h3>{bar_chart(c, values)}</div>')
    n = systems[0].items if systems else 0
    return (
        f"<p>On the {n} answerable items; every system is given the same query string, the one "
        "the peerqa answer searched with (a follow-up includes its previous question). A passage "
        "counts when it holds a gold quote (same rule as above).</p>"
        f"<table>{''.join(rows)}</table><div class=\"charts\">{''.join(charts)}</div>"
    )


def _item(r: ItemResult) -> str:
    out = [f'<div class="item" id="{_e(r.id)}">',
           f"<h3>{_e(r.id)} <span class=\"small\">({_e(r.type)})</span></h3>",
           f"<p><b>Question:</b> {_e(r.question)}</p>"]
    if r.history:
        turns = "".join(f"<li><b>{_e(t.get('role', ''))}:</b> {_e(t.get('content', ''))}</li>"
                        for t in r.history)
        out.append(f"<p><b>Earlier turns:</b></p><ul>{turns}</ul>")
    if r.retrieval_query and r.retrieval_query != r.question:
        out.append(f'<p class="small">Retrieval query: {_e(r.retrieval_query)}</p>')
    out.append("<ul class=\"why\">" + "".join(f"<li>{_e(f)}</li>" for f in r.failures) + "</ul>")
    if r.expected:
        out.append("<p><b>Expected evidence:</b></p>")
        for ev in r.expected:
            rank = f"retrieved at rank {ev['rank']}" if ev["rank"] else "not in the top 10"
            if not ev["found_in_document"]:
                rank = "quote not found in the document"
            out.append(f'<div class="small">{_e(ev["doc_id"])} — {_e(rank)}</div>'
                       f'<div class="quote">{_e(ev["quote"])}</div>')
    elif r.gold_answer:
        out.append(f"<p><b>Gold:</b> {_e(r.gold_answer)}</p>")
    if r.missing_facts:
        out.append("<p><b>Key facts not covered:</b></p><ul>"
                   + "".join(f"<li>{_e(f)}</li>" for f in r.missing_facts) + "</ul>")
    verdict = r.coverage.replace("_", " ") or ("abstained" if r.abstained else "answered")
    expected = r.expected_coverage.replace("_", " ")
    out.append(f"<p><b>Answer</b> ({_e(verdict)}; expected {_e(expected)}):</p>"
               f"<div class=\"quote\">{_e(r.answer)}</div>")
    if r.expected_missing:
        out.append(f'<p class="small">Gold says is missing: {_e(r.expected_missing)}</p>')
    for f in r.flawed:
        out.append(f'<p class="why">Flawed quote ({_e(", ".join(f["problems"]))}): '
                   f'{_e(f["text"])}</p>')
    for s in r.unsupported:
        out.append(f'<p class="why">Not supported by its citations: {_e(s)}</p>')
    for u in r.unneeded:
        out.append(f'<p class="why">Citation [{_e(u["number"])}] not needed for: '
                   f'{_e(u["sentence"])}</p>')
    if r.cited:
        out.append("<p><b>Cited:</b></p>")
        for c in r.cited:
            mark = '<span class="yes">holds a gold quote</span>' if c["holds_gold_quote"] \
                else '<span class="no">holds no gold quote</span>'
            out.append(
                f"<details><summary>[{_e(c['number'])}] {_e(c['doc_id'])} — "
                f"{_e(c['section'] or 'untitled section')}, characters {_e(c['start'])}–"
                f"{_e(c['end'])}: {mark}</summary><div class=\"quote\">{_e(c['text'])}</div>"
                "</details>"
            )
    if r.retrieved:
        rows = "".join(
            f"<tr><td>{_e(p['rank'])}</td><td>{_e(p['doc_id'])}</td>"
            f"<td>{_e(p['section'])}</td><td>{_e(p['start'])}–{_e(p['end'])}</td>"
            f"<td>{_e(p['words'])}</td>"
            f"<td class=\"{'ok' if p['holds_gold_quote'] else ''}\">"
            f"{'yes' if p['holds_gold_quote'] else ''}</td></tr>"
            for p in r.retrieved
        )
        out.append("<details><summary>Retrieved passages</summary><table><tr><th>rank</th>"
                   "<th>document</th><th>section</th><th>characters</th><th>words</th>"
                   f"<th>holds gold</th></tr>{rows}</table></details>")
    out.append("</div>")
    return "".join(out)


def _side_by_side(items: Sequence[ItemResult]) -> str:
    """Every answer beside its gold answer, so a reader can judge it."""
    rows = ["<tr><th>item</th><th>question</th><th>gold answer</th><th>peerqa's answer</th>"
            "</tr>"]
    for r in items:
        verdict = r.coverage.replace("_", " ")
        expected = r.expected_coverage.replace("_", " ")
        mark = "ok" if r.coverage == r.expected_coverage else "miss"
        gold = r.gold_answer + (f" (missing: {r.expected_missing})" if r.expected_missing
                                else "")
        rows.append(
            f'<tr><td class="small"><a href="#{_e(r.id)}">{_e(r.id)}</a></td>'
            f'<td class="small">{_e(r.question)}</td>'
            f'<td class="small"><b>{_e(expected)}</b><br>{_e(gold)}</td>'
            f'<td class="small"><b class="{mark}">{_e(verdict)}</b>'
            f'<div class="quote">{_e(r.answer)}</div></td></tr>'
        )
    return f'<table class="sbs">{"".join(rows)}</table>'


def render(run: EvalRun) -> str:
    """The whole report as one HTML page."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    failing = [r for r in run.items if r.failed]
    charts = [_chart_for("all items", run.overall, run.k)]
    charts += [_chart_for(t, figures, run.k) for t, figures in run.by_type.items()]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>peerqa evaluation</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>peerqa evaluation</h1>",
        f'<p class="small">{_e(len(run.items))} gold items from {_e(run.gold)}; k = '
        f"{_e(run.k)}; {_e(run.mode or 'unknown')} answers; {_e(f'{run.seconds:.1f}')} s "
        f"(opening the index and a warm-up question took {_e(f'{run.open_seconds:.1f}')} s, "
        f"not counted in latency); {_e(when)}.</p>",
    ]
    if run.notes:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in run.notes) + "</ul>")
    parts += [
        "<h2>Figures</h2>",
        "<p>Overall and per gold type. The targets are peerqa's own, for the offline default "
        "(<code>TARGETS</code> in <code>peerqa/evaluation/scoring.py</code>); a red figure "
        "falls short and its gap is shown. Rules: a passage holds a gold quote "
        "when it contains the quote's span (or, across a passage boundary, at least half of "
        "it); citation recall and precision follow ALCE with peerqa's own support judge; a key "
        "fact is covered when 0.6 of its stemmed content words appear in the answer.</p>",
        _figures_table(run),
        "<h2>What the figures mean</h2>",
        _legend(["items", "answerable", "failed", *metric_names(run.k)], run.mode),
        "<h2>Charts per type</h2>",
        '<p class="small">Bars are rates from 0 to 1; a dashed red line marks one of '
        f"peerqa's targets; orange bars marked {LOWER} are better when shorter.</p>",
        f'<div class="charts">{"".join(charts)}</div>',
    ]
    if run.comparison:
        parts += ["<h2>Compared with plain baselines</h2>", _comparison(run.comparison)]
    parts += [
        "<h2>Every answer beside its gold answer</h2>",
        '<p class="small">The coverage peerqa gave (answered, partial, not covered) against '
        "the one expected; partial and not-covered answers name what is missing.</p>",
        _side_by_side(run.items),
    ]
    parts.append(f"<h2>Failing items ({_e(len(failing))} of {_e(len(run.items))})</h2>")
    if failing:
        index = "".join(f'<a href="#{_e(r.id)}">{_e(r.id)}</a> ' for r in failing)
        parts.append(f'<p class="small">{index}</p>')
        parts += [_item(r) for r in failing]
    else:
        parts.append("<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run: EvalRun, path: str | Path) -> Path:
    """Write the report to ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(run), encoding="utf-8")
    return path
