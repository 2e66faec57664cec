"""The optimize report: Markdown and HTML, with each candidate's verdict and speedup (its
95% interval drawn as a bar), the winning diff, and the plan's tasks with their timings."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perfsmith.storage.runs import RunStore
from perfsmith.tools.profiling import hot_lines
from perfsmith.workflows.optimize import (
    CandidateResult,
    OptimizeResult,
    OptimizeSession,
    describe_source,
    source_text,
)

Timing = tuple[str, str, float | None, float | None]


def _speed(r: CandidateResult) -> str:
    if r.speedup is None:
        return "-"
    return f"{r.speedup:.2f}x" + (f" [{r.ci[0]:.2f}, {r.ci[1]:.2f}]" if r.ci else "")


def _profile_text(profile: dict[str, Any] | None) -> tuple[list[str], str]:
    """(hot lines, call tree) of the workload's profile, or empty ones."""
    if not profile:
        return [], ""
    tree = profile.get("tree") or profile.get("tree_error", "")
    hot = hot_lines(profile, limit=6) or (
        [profile["lines_error"]] if "lines_error" in profile else []
    )
    return hot, str(tree).rstrip()


def markdown(
    result: OptimizeResult,
    tasks: list[tuple[str, str, float | None, float | None]],
    profile: dict[str, Any] | None = None,
    shortfalls: Sequence[str] = (),
    default_ran: bool = False,
) -> str:
    lines = [f"# perfsmith optimize: {result.target}", "", f"run `{result.run_id}`", ""]
    if result.best is not None:
        lines += [
            f"**Best: candidate {result.best.id} ({result.best.origin}), "
            f"{_speed(result.best)} faster.**",
            "",
        ]
    else:
        # what was tried and why it failed, or why nothing could be tried
        lines += [f"**{result.answer.splitlines()[0] if result.answer else 'No candidate.'}**", ""]
    lines += ["| id | source | verdict | speedup [95% CI] | failure |", "|---|---|---|---|---|"]
    for r in result.candidates:
        failure = (r.failure or "").replace("\n", " ").replace("|", "\\|")[:160]
        source = source_text(r.source or describe_source(r.origin))
        lines.append(f"| {r.id} | {source} | {r.verdict} | {_speed(r)} | {failure} |")
    if result.diff:
        lines += ["", "## Diff", "", "```diff", result.diff.rstrip("\n"), "```"]
    if shortfalls:
        lines += ["", "## Plans that fell short", ""]
        lines += [f"- {reason}" for reason in shortfalls]
        if default_ran:
            lines += ["- after two such plans the default plan ran (every candidate source)"]
    hot, tree = _profile_text(profile)
    if hot or tree:
        lines += ["", "## Profile of the workload", ""]
        if hot:
            lines += ["Hottest lines (line_profiler):", "", "```", *hot, "```", ""]
        if tree:
            lines += ["Call tree (pyinstrument):", "", "```", tree, "```"]
    if tasks:
        lines += ["", "## Plan", "", "| task | status | start s | run s |", "|---|---|---|---|"]
        for name, status, start, run_s in tasks:
            lines.append(
                f"| {name} | {status} | {'-' if start is None else f'{start:.2f}'} | "
                f"{'-' if run_s is None else f'{run_s:.2f}'} |"
            )
    return "\n".join(lines) + "\n"


_CSS = """
body{font:14px system-ui;margin:2em} table{border-collapse:collapse}
td,th{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:middle}
.axis{position:relative;width:320px;height:14px;background:#f4f4f4}
.ci{position:absolute;top:3px;height:8px;background:#7aa7d8}
.pt{position:absolute;top:0;width:2px;height:14px;background:#123}
.one{position:absolute;top:0;width:1px;height:14px;background:#c00}
.task{position:absolute;top:2px;height:10px;background:#8c8}
.faster td:nth-child(3){color:#080} .incorrect td:nth-child(3){color:#b00}
pre{background:#f8f8f8;padding:1em;overflow:auto}
"""


def _bar(left: float, width: float, cls: str, extra: str = "") -> str:
    return (
        f'<div class="axis"><div class="{cls}" style="left:{left:.1f}%;'
        f'width:{max(width, 0.5):.1f}%"></div>{extra}</div>'
    )


def _candidate_row(r: CandidateResult, scale: float) -> str:
    bar = ""
    if r.ci is not None and r.speedup is not None:
        marks = (
            f'<div class="pt" style="left:{100 * r.speedup / scale:.1f}%"></div>'
            f'<div class="one" style="left:{100 / scale:.1f}%"></div>'
        )
        bar = _bar(100 * r.ci[0] / scale, 100 * (r.ci[1] - r.ci[0]) / scale, "ci", marks)
    cells = [
        str(r.id),
        html.escape(source_text(r.source or describe_source(r.origin))),
        html.escape(r.verdict),
        html.escape(_speed(r)),
        bar,
        html.escape((r.failure or "")[:300]),
    ]
    return (
        f"<tr class='{html.escape(r.verdict)}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
    )


def html_page(
    result: OptimizeResult, tasks: list[Timing], profile: dict[str, Any] | None = None
) -> str:
    """A self-contained page: candidates with their intervals, the diff, the timeline."""
    scale = max([r.ci[1] for r in result.candidates if r.ci] + [2.0])
    rows = "".join(_candidate_row(r, scale) for r in result.candidates)
    end = max([(s or 0) + (d or 0) for _, _, s, d in tasks] + [1e-9])
    timeline = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{html.escape(st)}</td>"
        f"<td>{_bar(100 * (s or 0) / end, 100 * (d or 0) / end, 'task')}</td>"
        f"<td>{'' if d is None else f'{d:.2f} s'}</td></tr>"
        for n, st, s, d in tasks
    )
    if result.best is not None:
        best = (
            f"Best: candidate {result.best.id} ({html.escape(result.best.origin)}), "
            f"{html.escape(_speed(result.best))} faster."
        )
    else:
        best = "No candidate was verified faster."
    title = html.escape(result.target)
    header = "".join(
        f"<th>{h}</th>"
        for h in ("id", "origin", "verdict", "speedup [95% CI]", "interval (red: 1x)", "failure")
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>perfsmith: {title}</title>'
        f"<style>{_CSS}</style></head><body>"
        f"<h1>perfsmith optimize: {title}</h1>"
        f"<p>run <code>{html.escape(result.run_id)}</code></p><p><b>{best}</b></p>"
        f"<h2>Candidates</h2><table><tr>{header}</tr>{rows}</table>"
        f"<h2>Diff</h2><pre>{html.escape(result.diff) or '(none)'}</pre>"
        + _profile_html(profile)
        + f"<h2>Plan timeline</h2><table>{timeline}</table></body></html>\n"
    )


def _profile_html(profile: dict[str, Any] | None) -> str:
    hot, tree = _profile_text(profile)
    if not hot and not tree:
        return ""
    out = "<h2>Profile of the workload</h2>"
    if hot:
        out += "<h3>Hottest lines (line_profiler)</h3><pre>" + html.escape("\n".join(hot))
        out += "</pre>"
    if tree:
        out += "<h3>Call tree (pyinstrument)</h3><pre>" + html.escape(tree) + "</pre>"
    return out


def write_report(result: OptimizeResult, session: OptimizeSession, folder: Path) -> Path:
    """Write report.md, report.html and best.diff into ``folder``; returns report.md."""
    folder.mkdir(parents=True, exist_ok=True)
    tasks: list[Timing] = []
    rows = RunStore(session.db).tasks(result.run_id)
    starts = [t.started_at for t in rows if t.started_at is not None]
    origin = min(starts) if starts else None
    for t in rows:
        start = t.started_at - origin if t.started_at is not None and origin is not None else None
        run_s = t.run_s if t.ended_at is not None else None
        tasks.append((f"{t.round}.{t.idx} {t.tool}", t.status, start, run_s))
    (folder / "report.md").write_text(
        markdown(
            result, tasks, session.profile_report, session.shortfalls, session.default_plan_ran
        ),
        encoding="utf-8",
    )
    (folder / "report.html").write_text(
        html_page(result, tasks, session.profile_report), encoding="utf-8"
    )
    if result.diff:
        (folder / "best.diff").write_text(result.diff, encoding="utf-8")
    return folder / "report.md"
