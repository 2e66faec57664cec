"""The morning report of a batch, in Markdown and in HTML (with two plots as inline SVG:
each job's best verified speedup with its interval, and where the night's time went).

One row per job: the best verified speedup with its 95% interval, the branch and commits a
repository job kept, time and tokens spent, and why a job failed. Kernel suites get their
fast_1: the share of the suite's problems with a kernel verified faster than PyTorch (its
whole interval above 1, stricter than KernelBench's point estimate), fast_0 (a correct
kernel at all) and fast_1 against torch.compile of the reference (the share of the
problems whose best kernel, timed against it, was faster as a point estimate).
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from perfsmith.storage.models import Batch, BatchJob, utc

STATUS_COLOURS = {
    "done": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#757575",
    "skipped": "#9e9e9e",
    "running": "#1565c0",
    "queued": "#bdbdbd",
}


@dataclass(frozen=True)
class SuiteScore:
    suite: str
    problems: int
    fast_1: float
    fast_0: float
    # the share of problems whose best kernel was also faster than torch.compile of the
    # reference (point estimate above 1); None when no best was timed against it
    fast_1_compile: float | None = None


def suite_scores(jobs: list[BatchJob]) -> list[SuiteScore]:
    by_suite: dict[str, list[BatchJob]] = defaultdict(list)
    for job in jobs:
        if job.kind == "kernel" and job.group:
            by_suite[job.group].append(job)
    scores = []
    for suite, members in sorted(by_suite.items()):
        n = len(members)
        faster = sum(1 for j in members if (j.summary or {}).get("speedup") is not None)
        correct = sum(1 for j in members if (j.summary or {}).get("correct"))
        versus = [(j.summary or {}).get("versus_compile") for j in members]
        timed = [v for v in versus if v]
        over_compile = sum(1 for v in timed if (v.get("speedup") or 0) > 1.0) / n if timed else None
        scores.append(SuiteScore(suite, n, faster / n, correct / n, over_compile))
    return scores


def compile_text(score: SuiteScore) -> str:
    return "-" if score.fast_1_compile is None else f"{score.fast_1_compile:.2f}"


def versus_text(summary: dict[str, Any]) -> str:
    """A kernel's best against torch.compile, for its row (empty for other jobs)."""
    v = summary.get("versus_compile")
    if not v or v.get("speedup") is None:
        return ""
    ci = v.get("ci") or [None, None]
    bounds = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] is not None and ci[1] is not None else ""
    return f"; {v['speedup']:.2f}x{bounds} vs torch.compile"


def speed_text(summary: dict[str, Any]) -> str:
    speedup = summary.get("speedup")
    if speedup is None:
        return "none verified"
    ci = summary.get("ci") or [None, None]
    if ci[0] is None or ci[1] is None:
        return f"{speedup:.2f}x"
    return f"{speedup:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}]"


def _kept(job: BatchJob) -> str:
    summary = job.summary or {}
    if job.kind != "repo":
        return ""
    commits = summary.get("commits") or []
    if not summary.get("branch"):
        return ""
    shas = ", ".join(str(c.get("commit") or "")[:10] for c in commits)
    return f"{summary['branch']}: {len(commits)} commit(s)" + (f" ({shas})" if shas else "")


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _when(moment: datetime | None) -> str:
    return utc(moment).astimezone().strftime("%Y-%m-%d %H:%M %Z") if moment else "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def totals(batch: Batch) -> dict[str, Any]:
    counts: dict[str, int] = defaultdict(int)
    for job in batch.jobs:
        counts[job.status] += 1
    return {
        "jobs": len(batch.jobs),
        "by_status": dict(sorted(counts.items())),
        "faster": sum(1 for j in batch.jobs if (j.summary or {}).get("speedup") is not None),
        "elapsed_s": round(sum(j.elapsed_s for j in batch.jobs), 1),
        "tokens": sum(j.tokens for j in batch.jobs),
        "commits": sum(len((j.summary or {}).get("commits") or []) for j in batch.jobs),
    }


def markdown_report(batch: Batch) -> str:
    t = totals(batch)
    status = ", ".join(f"{n} {s}" for s, n in t["by_status"].items())
    lines = [
        f"# Batch {batch.name} ({batch.id})",
        "",
        f"- submitted {_when(batch.created_at)}, ended {_when(batch.ended_at)}, "
        f"deadline {_when(batch.deadline)}",
        f"- {t['jobs']} jobs: {status}",
        f"- {t['faster']} with a verified speedup; {t['commits']} commit(s) kept",
        f"- {_duration(t['elapsed_s'])} of job time, {t['tokens']:,} LLM tokens",
        "",
        "| job | kind | status | best verified speedup [95% CI] | kept | time | tokens "
        "| attempts | failure |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for job in batch.jobs:
        lines.append(
            f"| {_cell(job.name)} | {job.kind} | {job.status} "
            f"| {speed_text(job.summary or {})}{versus_text(job.summary or {})} "
            f"| {_cell(_kept(job))} | {_duration(job.elapsed_s)} | {job.tokens:,} "
            f"| {job.attempts} | {_cell((job.error or '')[:300])} |"
        )
    scores = suite_scores(batch.jobs)
    if scores:
        lines += [
            "",
            "| kernel suite | problems | fast_1 | fast_0 | fast_1 vs torch.compile |",
            "|---|---|---|---|---|",
        ]
        for s in scores:
            lines.append(
                f"| {s.suite} | {s.problems} | {s.fast_1:.2f} | {s.fast_0:.2f} "
                f"| {compile_text(s)} |"
            )
    lines += [
        "",
        "Speedups are verified: correct on fresh inputs, timed interleaved against the "
        "original, the interval a 95% bootstrap; `none verified` means no candidate was "
        "proven faster.",
    ]
    return "\n".join(lines) + "\n"


def _speedup_svg(jobs: list[BatchJob]) -> str:
    """Each job's best verified speedup as a dot with its interval, on a log axis."""
    import math

    rows = [(j.name, j.summary or {}) for j in jobs]
    width, left, row_h = 720, 260, 22
    height = 40 + row_h * max(1, len(rows))
    values = [(s.get("ci") or [None, None])[1] or s.get("speedup") or 1.0 for _, s in rows]
    top = max([2.0, *[float(v) for v in values]])
    span = math.log(top) - math.log(0.5)

    def x(v: float) -> float:
        v = min(max(v, 0.5), top)
        return left + (width - left - 20) * (math.log(v) - math.log(0.5)) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="best verified speedup per job">',
        f'<line x1="{x(1):.1f}" y1="10" x2="{x(1):.1f}" y2="{height - 20}" stroke="#999" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{x(1):.1f}" y="{height - 5}" font-size="11" text-anchor="middle">1x</text>',
        f'<text x="{x(top):.1f}" y="{height - 5}" font-size="11" text-anchor="end">'
        f"{top:.1f}x</text>",
    ]
    for i, (name, s) in enumerate(rows):
        y = 25 + i * row_h
        parts.append(
            f'<text x="{left - 8}" y="{y + 4}" font-size="12" text-anchor="end">'
            f"{html.escape(name[:40])}</text>"
        )
        speedup = s.get("speedup")
        if speedup is None:
            parts.append(
                f'<text x="{left + 4}" y="{y + 4}" font-size="11" fill="#777">none verified</text>'
            )
            continue
        low, high = (s.get("ci") or [speedup, speedup])[:2]
        parts.append(
            f'<line x1="{x(low or speedup):.1f}" y1="{y}" x2="{x(high or speedup):.1f}" '
            f'y2="{y}" stroke="#2e7d32" stroke-width="2"/>'
        )
        parts.append(f'<circle cx="{x(speedup):.1f}" cy="{y}" r="4" fill="#2e7d32"/>')
    parts.append("</svg>")
    return "".join(parts)


def _time_svg(jobs: list[BatchJob]) -> str:
    """Where the night's time went: each job's share of the job time, by its status."""
    width, left, row_h = 720, 260, 22
    height = 30 + row_h * max(1, len(jobs))
    longest = max([1.0, *[j.elapsed_s for j in jobs]])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="time per job">'
    ]
    for i, job in enumerate(jobs):
        y = 10 + i * row_h
        bar = (width - left - 90) * job.elapsed_s / longest
        colour = STATUS_COLOURS.get(job.status, "#555")
        parts.append(
            f'<text x="{left - 8}" y="{y + 13}" font-size="12" text-anchor="end">'
            f"{html.escape(job.name[:40])}</text>"
            f'<rect x="{left}" y="{y + 2}" width="{bar:.1f}" height="14" fill="{colour}"/>'
            f'<text x="{left + bar + 6:.1f}" y="{y + 13}" font-size="11">'
            f"{_duration(job.elapsed_s)} {job.status}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def html_report(batch: Batch) -> str:
    t = totals(batch)
    esc = html.escape
    rows = "".join(
        "<tr>"
        f"<td>{esc(j.name)}</td><td>{j.kind}</td>"
        f'<td style="color:{STATUS_COLOURS.get(j.status, "#000")}">{j.status}</td>'
        f"<td>{esc(speed_text(j.summary or {}) + versus_text(j.summary or {}))}</td>"
        f"<td>{esc(_kept(j))}</td>"
        f"<td>{_duration(j.elapsed_s)}</td><td>{j.tokens:,}</td><td>{j.attempts}</td>"
        f"<td>{esc((j.error or '')[:300])}</td>"
        "</tr>"
        for j in batch.jobs
    )
    scores = suite_scores(batch.jobs)
    suites = ""
    if scores:
        suites = (
            "<h2>Kernel suites</h2><table><tr><th>suite</th><th>problems</th>"
            "<th>fast_1</th><th>fast_0</th><th>fast_1 vs torch.compile</th></tr>"
            + "".join(
                f"<tr><td>{esc(s.suite)}</td><td>{s.problems}</td><td>{s.fast_1:.2f}</td>"
                f"<td>{s.fast_0:.2f}</td><td>{compile_text(s)}</td></tr>"
                for s in scores
            )
            + "</table>"
        )
    status = ", ".join(f"{n} {s}" for s, n in t["by_status"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>perfsmith batch {esc(batch.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; font-size: 14px; }}
th {{ background: #f5f5f5; }}
</style></head><body>
<h1>Batch {esc(batch.name)} <small>({batch.id})</small></h1>
<p>Submitted {_when(batch.created_at)}, ended {_when(batch.ended_at)},
deadline {_when(batch.deadline)}.</p>
<p>{t["jobs"]} jobs: {esc(status)}. {t["faster"]} with a verified speedup;
{t["commits"]} commit(s) kept. {_duration(t["elapsed_s"])} of job time,
{t["tokens"]:,} LLM tokens.</p>
<table id="jobs"><tr><th>job</th><th>kind</th><th>status</th>
<th>best verified speedup [95% CI]</th><th>kept</th><th>time</th><th>tokens</th>
<th>attempts</th><th>failure</th></tr>{rows}</table>
{suites}
<h2>Best verified speedup per job</h2>
{_speedup_svg(batch.jobs)}
<h2>Where the time went</h2>
{_time_svg(batch.jobs)}
</body></html>
"""
