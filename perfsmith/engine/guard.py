"""The plan guard port: what a workflow knows about the plans it needs. The graph asks it
after each round whether the plan fell short (then the round is replanned with the
reason, without the joiner and without spending a replan; after two such rounds in a row
the guard's default plan runs instead), and before finishing whether the run may end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from perfsmith.executor.records import TaskRecord

# plans that fell short in a row before the default plan runs
MAX_SHORT_PLANS = 2


class PlanGuard(Protocol):
    async def review(self, records: Sequence[TaskRecord]) -> str | None:
        """Why the round's plan (its executed tasks) fell short, or None."""
        ...

    def default_plan(self) -> str:
        """A plan that always does the workflow's job (LLMCompiler's numbered form)."""
        ...

    def finish_blocker(self) -> str | None:
        """Why the run may not finish yet while replans remain, or None."""
        ...
