"""How the executor reports to the outside (storage, progress bars) and finds results it
already has (resume). The storage layer implements this; the executor only knows the
interface."""

from __future__ import annotations

from typing import Any, Protocol

from perfsmith.executor.records import TaskRecord
from perfsmith.planner.plan import TaskSpec


class Cached:
    """A result a previous attempt of the same run already produced."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class TaskObserver(Protocol):
    def task_parsed(self, record: TaskRecord) -> None:
        """A line became a task (or an invalid line); must not block."""

    def task_started(self, record: TaskRecord) -> None:
        """A task started running; must not block."""

    def task_settled(self, record: TaskRecord) -> None:
        """A task ended without running (skipped, cancelled); must not block."""

    async def task_finished(self, record: TaskRecord) -> None:
        """A task that ran finished; awaited before its dependents start, so a result that was
        reported is durable before anything builds on it."""

    async def lookup(self, spec: TaskSpec) -> Cached | None:
        """The stored result of this exact task from an earlier attempt, if any."""


class NullObserver:
    def task_parsed(self, record: TaskRecord) -> None:
        pass

    def task_started(self, record: TaskRecord) -> None:
        pass

    def task_settled(self, record: TaskRecord) -> None:
        pass

    async def task_finished(self, record: TaskRecord) -> None:
        pass

    async def lookup(self, spec: TaskSpec) -> Cached | None:
        return None


class FanoutObserver:
    """Reports to several observers; the first that has a cached result wins."""

    def __init__(self, *observers: TaskObserver) -> None:
        self.observers = observers

    def task_parsed(self, record: TaskRecord) -> None:
        for o in self.observers:
            o.task_parsed(record)

    def task_started(self, record: TaskRecord) -> None:
        for o in self.observers:
            o.task_started(record)

    def task_settled(self, record: TaskRecord) -> None:
        for o in self.observers:
            o.task_settled(record)

    async def task_finished(self, record: TaskRecord) -> None:
        for o in self.observers:
            await o.task_finished(record)

    async def lookup(self, spec: TaskSpec) -> Cached | None:
        for o in self.observers:
            hit = await o.lookup(spec)
            if hit is not None:
                return hit
        return None
