"""The task fetching unit: starts each task the moment its inputs are ready.

Event-driven, no polling: every task counts its unfinished dependencies; when a task
finishes it decrements its dependents' counts and starts those that reach zero. Tasks can
be added while the plan is still streaming in. A task whose dependency failed is skipped
with the reason, so nothing ever waits forever.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from perfsmith.errors import ToolError
from perfsmith.executor.observer import NullObserver, TaskObserver
from perfsmith.executor.records import TaskRecord, TaskStatus
from perfsmith.planner.plan import PlanLineError, TaskSpec, render_args, substitute
from perfsmith.tools.registry import ToolRegistry


class TaskFetchingUnit:
    def __init__(
        self,
        registry: ToolRegistry,
        *,
        max_concurrency: int = 16,
        task_timeout_s: float | None = 600.0,
        observer: TaskObserver | None = None,
    ) -> None:
        self.registry = registry
        self.task_timeout_s = task_timeout_s
        self.observer: TaskObserver = observer or NullObserver()
        self.records: dict[int, TaskRecord] = {}
        self.invalid: list[TaskRecord] = []
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tool_slots = {
            t.name: asyncio.Semaphore(t.max_concurrency)
            for t in registry
            if t.max_concurrency is not None
        }
        self._running: dict[int, asyncio.Task[None]] = {}
        self._calls: dict[tuple[str, str], int] = {}  # (tool, arguments) -> first task id
        self._unfinished = 0
        self._closed = False
        self._cancelled = False
        self._all_done = asyncio.Event()
        self.started_at = time.perf_counter()

    # -- feeding -----------------------------------------------------------------

    def add(self, item: TaskSpec | PlanLineError) -> TaskRecord:
        """Register a parsed line; a task whose inputs are ready starts at once."""
        if self._closed:
            raise RuntimeError("task fetching unit is closed")
        now = time.perf_counter()
        if isinstance(item, PlanLineError):
            rec = TaskRecord(
                idx=item.idx,
                tool="",
                spec=None,
                line=item.line,
                status=TaskStatus.INVALID,
                error=item.message,
                parsed_at=now,
                ended_at=now,
            )
            if item.idx is not None:
                self.records[item.idx] = rec
            self.invalid.append(rec)
            self.observer.task_parsed(rec)
            return rec
        # an identical call runs once: a repeat waits for the first and takes its result
        call = (item.tool, render_args(item.args))
        first = self._calls.setdefault(call, item.idx)
        duplicate_of = first if first != item.idx else None
        deps = item.deps if duplicate_of is None else (duplicate_of,)
        rec = TaskRecord(
            idx=item.idx,
            tool=item.tool,
            spec=item,
            line=item.line,
            parsed_at=now,
            deps=deps,
            duplicate_of=duplicate_of,
        )
        self.records[item.idx] = rec
        self._unfinished += 1
        self.observer.task_parsed(rec)
        failed: TaskRecord | None = None
        for d in deps:
            dep = self.records[d]  # the parser guarantees earlier ids exist
            if not dep.status.finished:
                rec.waiting_on += 1
                dep.dependents.append(item.idx)
            elif not dep.ok and failed is None:
                failed = dep
        if failed is not None:
            self._skip(rec, failed)
        elif self._cancelled:
            self._settle(rec, TaskStatus.CANCELLED, "the run was cancelled")
        elif rec.waiting_on == 0:
            self._start(rec, now)
        return rec

    def close(self) -> None:
        """No more tasks will be added."""
        self._closed = True
        if self._unfinished == 0:
            self._all_done.set()

    async def wait(self) -> list[TaskRecord]:
        """Wait for every task (the unit must be closed); returns all records in id order."""
        await self._all_done.wait()
        return self.results()

    def results(self) -> list[TaskRecord]:
        numbered = sorted(self.records.values(), key=lambda r: r.idx or 0)
        return numbered + [r for r in self.invalid if r.idx is None]

    def cancel(self) -> None:
        """Cancel running tasks; waiting and later-added tasks are marked cancelled."""
        self._cancelled = True
        for task in list(self._running.values()):
            task.cancel()
        for rec in list(self.records.values()):
            if rec.status is TaskStatus.WAITING and rec.waiting_on > 0:
                self._settle(rec, TaskStatus.CANCELLED, "the run was cancelled")

    # -- running -----------------------------------------------------------------

    def _start(self, rec: TaskRecord, now: float) -> None:
        rec.ready_at = now
        assert rec.idx is not None
        self._running[rec.idx] = asyncio.get_running_loop().create_task(self._run(rec))

    async def _run(self, rec: TaskRecord) -> None:
        spec = rec.spec
        assert spec is not None and rec.idx is not None
        tool = self.registry.get(spec.tool)
        assert tool is not None
        status, value, error = TaskStatus.DONE, None, None
        try:
            if rec.duplicate_of is not None:  # the first of the same calls has finished
                rec.status, rec.started_at = TaskStatus.RUNNING, time.perf_counter()
                rec.reused = True
                value = self.records[rec.duplicate_of].value
            else:
                value = await self._execute(rec, spec)
        except asyncio.CancelledError:
            status, error = TaskStatus.CANCELLED, "the run was cancelled"
        except TimeoutError:
            limit = tool.timeout_s or self.task_timeout_s
            status, error = TaskStatus.TIMEOUT, f"{spec.tool} timed out after {limit:g} s"
        except ToolError as exc:
            status, error = TaskStatus.ERROR, str(exc)
        except Exception as exc:
            status, error = TaskStatus.ERROR, f"{spec.tool} raised {type(exc).__name__}: {exc}"
        rec.ended_at = time.perf_counter()
        rec.status, rec.value, rec.error = status, value, error
        try:
            await self.observer.task_finished(rec)
        finally:
            self._running.pop(rec.idx, None)
            self._finished(rec)

    async def _execute(self, rec: TaskRecord, spec: TaskSpec) -> Any:
        """The task's value: its stored result (a resumed run) or its tool's answer,
        within the run's and the tool's concurrency limits."""
        tool_slot = self._tool_slots.get(spec.tool)
        async with self._slots:
            if tool_slot is not None:
                await tool_slot.acquire()
            try:
                rec.status = TaskStatus.RUNNING
                rec.started_at = time.perf_counter()
                cached = await self.observer.lookup(spec)
                if cached is not None:
                    rec.reused = True
                    return cached.value
                self.observer.task_started(rec)
                return await self._invoke(rec, spec)
            finally:
                if tool_slot is not None:
                    tool_slot.release()

    async def _invoke(self, rec: TaskRecord, spec: TaskSpec) -> Any:
        tool = self.registry.get(spec.tool)
        assert tool is not None
        results = {d: self.records[d].value for d in spec.deps}
        resolved = (
            {k: substitute(v, results) for k, v in spec.args.items()} if results else spec.args
        )
        arguments = tool.validate(resolved)
        timeout = tool.timeout_s or self.task_timeout_s
        if timeout is None:
            return await tool.invoke(arguments)
        async with asyncio.timeout(timeout):
            return await tool.invoke(arguments)

    # -- bookkeeping ---------------------------------------------------------------

    def _settle(self, rec: TaskRecord, status: TaskStatus, error: str) -> None:
        """End a task that never ran (skipped or cancelled while waiting)."""
        now = time.perf_counter()
        rec.status, rec.error, rec.ended_at = status, error, now
        self.observer.task_settled(rec)
        self._finished(rec)

    def _skip(self, rec: TaskRecord, because: TaskRecord) -> None:
        reason = f"skipped: input ${because.idx} {because.status.value}"
        if because.error:
            reason += f" ({because.error})"
        self._settle(rec, TaskStatus.SKIPPED, reason)

    def _finished(self, rec: TaskRecord) -> None:
        """A task reached a final state: release or skip its dependents."""
        self._unfinished -= 1
        now = time.perf_counter()
        for d in rec.dependents:
            dep = self.records[d]
            if dep.status.finished:
                continue
            if not rec.ok:
                dep.waiting_on = 0
                self._skip(dep, rec)
                continue
            dep.waiting_on -= 1
            if dep.waiting_on == 0:
                if self._cancelled:
                    self._settle(dep, TaskStatus.CANCELLED, "the run was cancelled")
                else:
                    self._start(dep, now)
        if self._closed and self._unfinished == 0:
            self._all_done.set()
