"""The candidate workflows' plan guard: a plan must produce candidates and verify what it
produces; the run may not finish before some candidate is verified."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from perfsmith.executor.records import TaskRecord


def _ids(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


class CandidateGuard:
    """``producers`` are the tools whose results are candidate ids; ``verified`` says
    which candidate ids have a verdict; ``default_plan`` builds the fallback plan."""

    def __init__(
        self,
        *,
        producers: Collection[str],
        verify_tool: str,
        verified: Callable[[], Collection[int]],
        default_plan: Callable[[], str],
    ) -> None:
        self.producers = producers
        self.verify_tool = verify_tool
        self._verified = verified
        self._default = default_plan
        self.reasons: list[str] = []  # why plans fell short, for the report
        self.default_ran = False

    async def review(self, records: Sequence[TaskRecord]) -> str | None:
        reason = self._review(records)
        if reason is not None:
            self.reasons.append(reason)
        return reason

    def _review(self, records: Sequence[TaskRecord]) -> str | None:
        producing = [r for r in records if r.tool in self.producers]
        made = [cid for r in producing if r.ok for cid in _ids(r.value)]
        if not made:
            names = ", ".join(f"{p}()" for p in sorted(self.producers))
            # failed sources and lines that did not parse (a strategy out of its set...)
            failed = [r for r in records if r.error and (r.tool in self.producers or not r.tool)]
            errors = "; ".join(f"{r.line.strip()[:80]}: {r.error}" for r in failed)
            return (
                f"the plan produced no candidate: call one of {names} and then "
                f"{self.verify_tool}() each result"
                + (f". Errors: {errors[:800]}" if errors else "")
            )
        unverified = sorted(set(made) - set(self._verified()))
        if unverified:
            return (
                f"candidates {unverified} were produced but never verified: call "
                f"{self.verify_tool}(candidate=N) for each"
            )
        return None

    def default_plan(self) -> str:
        self.default_ran = True
        return self._default()

    def finish_blocker(self) -> str | None:
        if not self._verified():
            return "no candidate has been verified yet"
        return None
