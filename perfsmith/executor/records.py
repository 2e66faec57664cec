"""What the executor knows about each task: status, value or error, and its timings."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from perfsmith.planner.plan import TaskSpec, as_text

_CALL_PREFIX = re.compile(r"^\s*(?:[-*]\s*)?\d+\s*[.:)]\s*")


class TaskStatus(enum.StrEnum):
    WAITING = "waiting"  # parsed, some dependency not finished
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"  # the tool raised, or its arguments were invalid
    TIMEOUT = "timeout"
    SKIPPED = "skipped"  # a dependency did not succeed
    CANCELLED = "cancelled"
    INVALID = "invalid"  # the plan line itself could not be parsed

    @property
    def finished(self) -> bool:
        return self not in (TaskStatus.WAITING, TaskStatus.RUNNING)


@dataclass(slots=True)
class TaskRecord:
    idx: int | None
    tool: str
    spec: TaskSpec | None
    line: str
    status: TaskStatus = TaskStatus.WAITING
    value: Any = None
    error: str | None = None
    reused: bool = False
    parsed_at: float = 0.0
    ready_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    deps: tuple[int, ...] = ()
    # the same call (tool and arguments) earlier in the plan: this task takes its result
    duplicate_of: int | None = None
    waiting_on: int = 0
    dependents: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is TaskStatus.DONE

    @property
    def run_s(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return self.ended_at - self.started_at

    @property
    def wait_s(self) -> float:
        """Time between being ready (line parsed, inputs done) and starting."""
        if self.ready_at is None or self.started_at is None:
            return 0.0
        return self.started_at - self.ready_at

    def observation(self, limit: int = 2000) -> dict[str, Any]:
        """A prompt-sized, JSON-ready view for the joiner and the graph state."""
        text = as_text(self.value) if self.ok else (self.error or "")
        if len(text) > limit:
            text = text[:limit] + f"... [{len(text) - limit} more characters]"
        return {
            "idx": self.idx,
            "tool": self.tool,
            # The call as the planner wrote it (cheaper than re-rendering its arguments).
            "call": _CALL_PREFIX.sub("", self.line, count=1) if self.spec else "",
            "status": self.status.value,
            "result": text,
            "run_s": round(self.run_s, 4),
        }
