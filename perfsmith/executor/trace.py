"""A run's trace: each task's timings and the critical path through the DAG."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from perfsmith.executor.records import TaskRecord


@dataclass(frozen=True, slots=True)
class TraceRow:
    idx: int | None
    tool: str
    status: str
    deps: tuple[int, ...]
    start_s: float | None  # relative to the trace's origin
    end_s: float | None
    wait_s: float
    run_s: float
    reused: bool
    error: str | None


@dataclass(frozen=True, slots=True)
class Trace:
    rows: list[TraceRow]
    critical_path: list[int]
    critical_path_s: float
    makespan_s: float


def critical_path(
    durations: dict[int, float], deps: dict[int, tuple[int, ...]]
) -> tuple[list[int], float]:
    """Longest chain of dependent tasks by summed duration (ids are topologically ordered)."""
    best: dict[int, float] = {}
    via: dict[int, int | None] = {}
    for idx in sorted(durations):
        prev = max((d for d in deps.get(idx, ()) if d in best), key=best.__getitem__, default=None)
        best[idx] = durations[idx] + (best[prev] if prev is not None else 0.0)
        via[idx] = prev
    if not best:
        return [], 0.0
    last = max(best, key=best.__getitem__)
    total = best[last]
    end: int | None = last
    path: list[int] = []
    while end is not None:
        path.append(end)
        end = via[end]
    return path[::-1], total


def build_trace(records: Iterable[TaskRecord], origin: float) -> Trace:
    rows: list[TraceRow] = []
    durations: dict[int, float] = {}
    deps: dict[int, tuple[int, ...]] = {}
    last_end = origin
    for r in records:
        rows.append(
            TraceRow(
                idx=r.idx,
                tool=r.tool,
                status=r.status.value,
                deps=r.deps,
                start_s=None if r.started_at is None else r.started_at - origin,
                end_s=None if r.ended_at is None else r.ended_at - origin,
                wait_s=r.wait_s,
                run_s=r.run_s,
                reused=r.reused,
                error=r.error,
            )
        )
        if r.idx is not None and r.spec is not None:
            durations[r.idx] = r.run_s
            deps[r.idx] = r.deps
        if r.ended_at is not None:
            last_end = max(last_end, r.ended_at)
    path, total = critical_path(durations, deps)
    return Trace(rows=rows, critical_path=path, critical_path_s=total, makespan_s=last_end - origin)
