from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from perfsmith.executor.fetching_unit import TaskFetchingUnit
from perfsmith.executor.records import TaskStatus
from perfsmith.executor.trace import build_trace, critical_path
from perfsmith.planner.parser import parse_plan
from perfsmith.planner.plan import Join, TaskSpec
from perfsmith.tools.registry import ToolRegistry, tool

LOG: list[tuple[str, str, float]] = []


@tool
async def sleep(name: str, seconds: float = 0.1) -> str:
    """Sleep, then return the name."""
    LOG.append(("start", name, time.perf_counter()))
    await asyncio.sleep(seconds)
    LOG.append(("end", name, time.perf_counter()))
    return name


@tool
async def concat(parts: list[Any]) -> str:
    """Concatenate."""
    return "+".join(map(str, parts))


@tool
def boom(message: str) -> str:
    """Always fails."""
    raise RuntimeError(message)


@tool(max_concurrency=1)
async def exclusive(name: str) -> str:
    """At most one at a time."""
    LOG.append(("start", name, time.perf_counter()))
    await asyncio.sleep(0.05)
    LOG.append(("end", name, time.perf_counter()))
    return name


@tool(timeout_s=0.1)
async def hang(x: int) -> int:
    """Never returns in time."""
    await asyncio.sleep(30)
    return x


@tool
def blocking(seconds: float) -> float:
    """A sync tool: runs in a worker thread, so the loop keeps going."""
    time.sleep(seconds)
    return seconds


REG = ToolRegistry([sleep, concat, boom, exclusive, hang, blocking])


async def execute(plan: str, **kwargs: Any) -> TaskFetchingUnit:
    LOG.clear()
    unit = TaskFetchingUnit(REG, **kwargs)
    for item in parse_plan(plan, REG):
        if not isinstance(item, Join):
            unit.add(item)
    unit.close()
    await asyncio.wait_for(unit.wait(), 10)
    return unit


def interval(name: str) -> tuple[float, float]:
    start = next(t for k, n, t in LOG if k == "start" and n == name)
    end = next(t for k, n, t in LOG if k == "end" and n == name)
    return start, end


async def test_independent_tasks_overlap_and_dependents_wait() -> None:
    plan = (
        "1. sleep('a', 0.2)\n2. sleep('b', 0.2)\n3. sleep('c', 0.2)\n"
        "4. concat([$1, $2, $3])\n5. sleep('$4', 0.01)\njoin()"
    )
    t0 = time.perf_counter()
    unit = await execute(plan)
    elapsed = time.perf_counter() - t0
    recs = unit.results()
    assert [r.status for r in recs] == [TaskStatus.DONE] * 5
    assert recs[3].value == "a+b+c" and recs[4].value == "a+b+c"
    (a0, a1), (b0, b1), (c0, c1) = interval("a"), interval("b"), interval("c")
    assert max(a0, b0, c0) < min(a1, b1, c1)  # all three ran at the same time
    assert recs[3].started_at is not None and recs[3].started_at >= max(a1, b1, c1)
    assert elapsed < 0.55  # sequential would be 0.61 s plus overhead


async def test_global_and_per_tool_concurrency_limits() -> None:
    await execute(
        "\n".join(f"{i}. sleep('s{i}', 0.05)" for i in range(1, 7)) + "\njoin()", max_concurrency=2
    )
    events = sorted((t, 1 if k == "start" else -1) for k, _, t in LOG)
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2
    await execute("1. exclusive('x')\n2. exclusive('y')\n3. exclusive('z')\njoin()")
    spans = sorted(interval(n) for n in "xyz")
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2))


async def test_failure_skips_dependents_transitively_and_others_finish() -> None:
    plan = (
        "1. boom('kaput')\n2. concat([$1])\n3. concat([$2, 'x'])\n4. sleep('ok', 0.01)\n"
        "5. concat([$4, $1])\njoin()"
    )
    recs = (await execute(plan)).results()
    status = {r.idx: r.status for r in recs}
    assert status == {
        1: TaskStatus.ERROR,
        2: TaskStatus.SKIPPED,
        3: TaskStatus.SKIPPED,
        4: TaskStatus.DONE,
        5: TaskStatus.SKIPPED,
    }
    assert recs[0].error is not None and "RuntimeError: kaput" in recs[0].error
    assert recs[1].error is not None and "$1 error" in recs[1].error


async def test_invalid_line_becomes_observation_and_dependents_skip() -> None:
    recs = (await execute("1. nope()\n2. concat([$1])\n3. sleep('fine', 0.01)\njoin()")).results()
    assert [r.status for r in recs] == [TaskStatus.INVALID, TaskStatus.SKIPPED, TaskStatus.DONE]
    assert recs[0].error is not None and "unknown tool" in recs[0].error


async def test_timeout_is_enforced_per_tool_and_per_task() -> None:
    t0 = time.perf_counter()
    recs = (
        await execute(
            "1. hang(1)\n2. sleep('slow', 5)\n3. concat([$1])\njoin()", task_timeout_s=0.2
        )
    ).results()
    assert time.perf_counter() - t0 < 2
    assert recs[0].status is TaskStatus.TIMEOUT and "0.1 s" in (recs[0].error or "")
    assert recs[1].status is TaskStatus.TIMEOUT and "0.2 s" in (recs[1].error or "")
    assert recs[2].status is TaskStatus.SKIPPED


async def test_arguments_are_validated_after_substitution() -> None:
    # $1 is a str; `seconds` wants a float: the bad value is caught when it is known.
    recs = (await execute("1. concat(['x'])\n2. sleep('n', $1)\njoin()")).results()
    assert recs[1].status is TaskStatus.ERROR
    assert "seconds" in (recs[1].error or "")


async def test_cancel_stops_running_and_waiting_tasks() -> None:
    LOG.clear()
    unit = TaskFetchingUnit(REG)
    for item in parse_plan("1. sleep('long', 30)\n2. concat([$1])\njoin()", REG):
        if isinstance(item, TaskSpec):
            unit.add(item)
    unit.close()
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    unit.cancel()
    recs = await asyncio.wait_for(unit.wait(), 2)
    assert time.perf_counter() - t0 < 1
    assert [r.status for r in recs] == [TaskStatus.CANCELLED, TaskStatus.CANCELLED]


async def test_tasks_start_while_the_plan_is_still_arriving() -> None:
    LOG.clear()
    unit = TaskFetchingUnit(REG)
    items = [
        i
        for i in parse_plan("1. sleep('first', 0.05)\n2. sleep('second', 0.05)\njoin()", REG)
        if isinstance(i, TaskSpec)
    ]
    unit.add(items[0])
    await asyncio.sleep(0.2)  # the planner is slow to write line 2
    assert unit.records[1].status is TaskStatus.DONE
    unit.add(items[1])
    unit.close()
    await unit.wait()
    assert unit.records[2].started_at is not None
    assert unit.records[2].started_at - unit.records[2].parsed_at < 0.005


async def test_sync_tools_do_not_block_the_event_loop() -> None:
    t0 = time.perf_counter()
    await execute("1. blocking(0.3)\n2. blocking(0.3)\njoin()")
    assert time.perf_counter() - t0 < 0.55


async def test_trace_has_timings_and_critical_path() -> None:
    unit = await execute(
        "1. sleep('a', 0.05)\n2. sleep('b', 0.2)\n3. concat([$1])\n4. concat([$2, $3])\njoin()"
    )
    trace = build_trace(unit.results(), unit.started_at)
    assert trace.critical_path == [2, 4]
    assert trace.critical_path_s == pytest.approx(0.2, abs=0.05)
    assert all(r.start_s is not None and r.end_s is not None for r in trace.rows)
    assert trace.makespan_s >= trace.critical_path_s


def test_critical_path_picks_the_longest_chain() -> None:
    path, total = critical_path({1: 1.0, 2: 3.0, 3: 1.0, 4: 0.5}, {3: (1, 2), 4: (1,)})
    assert path == [2, 3] and total == 4.0
    assert critical_path({}, {}) == ([], 0.0)


async def test_identical_calls_run_once_and_repeats_take_the_first_result() -> None:
    """Six `profile()` lines in a plan: one call of the tool, six results."""
    from perfsmith.executor.fetching_unit import TaskFetchingUnit
    from perfsmith.planner.parser import parse_plan
    from perfsmith.planner.plan import TaskSpec
    from perfsmith.tools.registry import ToolRegistry, tool

    calls: list[str] = []

    @tool
    async def profile(target: str = "f") -> str:
        """Profile."""
        calls.append(target)
        return f"profile of {target}"

    registry = ToolRegistry([profile])
    plan = "".join(f"{i}. profile()\n" for i in range(1, 7)) + '7. profile(target="g")\njoin()\n'
    unit = TaskFetchingUnit(registry)
    for item in parse_plan(plan, registry):
        if isinstance(item, TaskSpec):
            unit.add(item)
    unit.close()
    records = await unit.wait()
    assert calls == ["f", "g"]
    assert [r.value for r in records[:6]] == ["profile of f"] * 6
    assert [r.duplicate_of for r in records] == [None, 1, 1, 1, 1, 1, None]
    assert all(r.ok for r in records)
