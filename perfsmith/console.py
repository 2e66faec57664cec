"""Terminal rendering shared by the CLI commands: the DAG table and live progress."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from perfsmith.executor.trace import critical_path

STATUS_STYLE = {
    "done": "green",
    "running": "yellow",
    "waiting": "dim",
    "error": "red",
    "timeout": "red",
    "invalid": "red",
    "skipped": "magenta",
    "cancelled": "magenta",
    "interrupted": "magenta",
}


@dataclass
class DagRow:
    round: int
    idx: int
    tool: str
    deps: list[int]
    status: str
    start_s: float | None
    run_s: float
    wait_s: float
    reused: bool
    note: str


class TaskView(Protocol):
    """A task as storage or the API describes it: enough to draw its row."""

    round: int
    idx: int
    tool: str
    deps: list[Any]
    status: str
    started_at: float | None
    run_s: float
    wait_s: float
    reused: bool
    error: str | None


def dag_rows(tasks: Sequence[TaskView], results: Sequence[str | None]) -> list[DagRow]:
    """Rows of the task table, times from the first start; `results` in task order."""
    origin = min((t.started_at for t in tasks if t.started_at), default=0.0)
    return [
        DagRow(
            t.round,
            t.idx,
            t.tool,
            [int(d) for d in t.deps],
            t.status,
            (t.started_at - origin) if t.started_at else None,
            t.run_s,
            t.wait_s,
            t.reused,
            t.error or result or "",
        )
        for t, result in zip(tasks, results, strict=True)
    ]


def dag_table(rows: Sequence[DagRow], title: str = "plan") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("round", justify="right", no_wrap=True, min_width=5)
    table.add_column("id", justify="right", no_wrap=True, min_width=3)
    table.add_column("tool", no_wrap=True, min_width=12)
    table.add_column("deps", no_wrap=True, max_width=12, overflow="ellipsis")
    table.add_column("status", no_wrap=True, min_width=9)
    for col in ("start s", "run s", "wait ms"):
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    table.add_column("result / error", no_wrap=True, overflow="ellipsis", max_width=48)
    crit = critical_path_ids(rows)
    for r in rows:
        style = STATUS_STYLE.get(r.status, "")
        status = f"[{style}]{r.status}[/]" + (" (reused)" if r.reused else "")
        idx = f"[bold]{r.idx}*[/]" if (r.round, r.idx) in crit else str(r.idx)
        table.add_row(
            str(r.round),
            idx,
            escape(r.tool),
            ",".join(f"${d}" for d in r.deps) or "-",
            status,
            "-" if r.start_s is None else f"{r.start_s:.3f}",
            f"{r.run_s:.3f}",
            f"{r.wait_s * 1000:.2f}",
            escape(r.note[:70].replace("\n", " ")),
        )
    table.caption = "* on the critical path of its round"
    return table


def critical_path_ids(rows: Sequence[DagRow]) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for round_ in {r.round for r in rows}:
        mine = [r for r in rows if r.round == round_]
        path, _ = critical_path(
            {r.idx: r.run_s for r in mine}, {r.idx: tuple(r.deps) for r in mine}
        )
        out.update((round_, i) for i in path)
    return out


class LiveProgress:
    """An event listener that keeps a live table of the run's tasks in the terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[tuple[int, int], DagRow] = {}
        self.live = Live(dag_table([]), console=console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def __call__(self, event: dict[str, Any]) -> None:
        p = event["payload"]
        kind = event["type"]
        if kind == "run_started":  # a run of several (a repository's functions): afresh
            self.rows.clear()
        elif kind == "task_parsed":
            self.rows[(p["round"], p["idx"])] = DagRow(
                p["round"], p["idx"], p["tool"], p["deps"], "waiting", None, 0.0, 0.0, False, ""
            )
        elif kind == "plan_line_error" and p.get("idx") is not None:
            self.rows[(p["round"], p["idx"])] = DagRow(
                p["round"],
                p["idx"],
                "(invalid)",
                [],
                "invalid",
                None,
                0.0,
                0.0,
                False,
                p.get("error") or "",
            )
        elif kind == "task_started" and (p["round"], p["idx"]) in self.rows:
            self.rows[(p["round"], p["idx"])].status = "running"
        elif kind == "task_finished" and (p["round"], p["idx"]) in self.rows:
            row = self.rows[(p["round"], p["idx"])]
            row.status, row.run_s, row.wait_s = p["status"], p["run_s"], p["wait_s"]
            row.reused = p["reused"]
            row.note = p["error"] or p["result"] or ""
        else:
            return
        self.live.update(dag_table(sorted(self.rows.values(), key=lambda r: (r.round, r.idx))))


class PlainProgress:
    """An event listener that writes one plain line per step, for logs and pipes (no
    live table, no wrapping): plans, each finished task, the guard's and the joiner's
    decisions, the end of the run."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self.write = write
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        self.write(f"[{time.monotonic() - self.started:7.1f}s] {text}")

    def __call__(self, event: dict[str, Any]) -> None:
        p = event["payload"]
        kind = event["type"]
        where = f"round {p.get('round')}"
        if kind == "run_started":
            self.line(f"run {event.get('run_id', '')} started")
        elif kind == "plan_started":
            self.line(f"{where}: planning" + (" (stored plan)" if p.get("reused") else ""))
        elif kind == "plan_finished":
            self.line(f"{where}: plan has {p.get('tasks')} task(s)")
        elif kind == "plan_line_error":
            self.line(f"{where}: invalid plan line {_one_line(p.get('line'))}: {p.get('error')}")
        elif kind == "task_finished":
            result = p.get("error") or p.get("result") or ""
            self.line(
                f"{where} ${p.get('idx')} {p.get('tool')} {p.get('status')} "
                f"({p.get('run_s', 0):.2f} s){' reused' if p.get('reused') else ''}: "
                f"{_one_line(result, 160)}"
            )
        elif kind == "plan_short":
            self.line(f"{where}: the plan fell short: {_one_line(p.get('reason'), 300)}")
        elif kind == "plan_default":
            self.line(f"{where}: {p.get('reason')}")
        elif kind == "join":
            self.line(f"{where}: joiner: {p.get('action')}: {_one_line(p.get('text'), 200)}")
        elif kind == "run_finished":
            self.line(f"run {p.get('status')}" + (f": {p['error']}" if p.get("error") else ""))


def _one_line(value: Any, limit: int = 120) -> str:
    text = " ".join(str(value or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
