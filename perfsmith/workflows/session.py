"""What the tools of every candidate workflow share, and the workflow they run in.

A `CandidateSession` holds one run's candidate pool (ids, deduplication, verification once,
rows in the database) and the tools common to every kind: ``propose`` through the LLM and
``verify`` by id. A `CandidateWorkflow` is the run's life around it: the planner's rounds
(fresh, resumed or a follow-up), then every candidate verified (the user's and the plan's
leftovers), the best picked and the workflow's own report written. The Python and kernel
workflows specialise both by supplying their candidates, their verify and their report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy.orm import Session

from perfsmith.engine.guard import PlanGuard
from perfsmith.errors import CandidateError, PerfsmithError
from perfsmith.llm.base import ChatModel
from perfsmith.sandbox.base import Sandbox
from perfsmith.storage.db import Database
from perfsmith.storage.models import Artifact, Measurement
from perfsmith.storage.models import Candidate as CandidateRow
from perfsmith.tools.proposals import HasId
from perfsmith.tools.registry import Tool
from perfsmith.workflows.base import Finished, Job, drive_job
from perfsmith.workflows.candidates import ask_for_code
from perfsmith.workflows.guard import CandidateGuard
from perfsmith.workflows.pool import CandidatePool

C = TypeVar("C", bound=HasId)
R = TypeVar("R")


def record_verdict(
    s: Session,
    row_id: int,
    *,
    verdict: str,
    speedup: float | None,
    ci: tuple[float, float] | None,
    failure: str | None,
    kind: str,
    meta: dict[str, Any],
) -> None:
    """Store a candidate's verdict on its row, with the speedup as a measurement."""
    row = s.get(CandidateRow, row_id)
    if row is None:
        return
    row.verdict = verdict
    row.speedup = speedup
    row.failure = failure
    if ci is not None:
        row.ci_low, row.ci_high = ci
    if speedup is not None:
        s.add(
            Measurement(
                candidate_id=row_id,
                kind=kind,
                subject="ratio",
                value=speedup,
                unit="x",
                meta={"ci": ci, **meta},
            )
        )


def best_json(
    source: str, speedup: float | None, ci: tuple[float, float] | None, origin: str
) -> dict[str, Any]:
    """The best candidate as a run's JSON result shows it (every candidate workflow)."""
    return {"source": source, "speedup": speedup, "ci": list(ci) if ci else None, "origin": origin}


@dataclass(kw_only=True)
class CandidateSession(Generic[C, R]):
    """The state the tools of one candidate run share: its sandbox, its LLM and its pool.
    Subclasses supply `add_candidate` (check and store one candidate), `_verify` (verify
    one, store and return its result); the tools the planner calls work on it."""

    db: Database
    sandbox: Sandbox
    llm: ChatModel | None = None
    pool: CandidatePool[C, R] = field(init=False)
    _guard: CandidateGuard | None = field(default=None, init=False)
    producers: ClassVar[frozenset[str]] = frozenset()  # the tools that make candidates

    def __post_init__(self) -> None:
        self.pool = CandidatePool(self.db, self._verify)

    @property
    def run_id(self) -> str | None:
        return self.pool.run_id

    @run_id.setter
    def run_id(self, value: str | None) -> None:
        self.pool.run_id = value

    @property
    def candidates(self) -> dict[int, C]:
        return self.pool.items

    @property
    def results(self) -> dict[int, R]:
        return self.pool.results

    def on_event(self, event: dict[str, Any]) -> None:
        if self.run_id is None:
            self.run_id = str(event["run_id"])

    async def add_candidate(self, code: str, origin: str) -> C:
        raise NotImplementedError

    async def _verify(self, cid: int) -> R:
        raise NotImplementedError

    def default_plan(self, k: int) -> str:
        """The plan that runs when the planner's cannot do the work (``k`` proposals)."""
        raise NotImplementedError

    def guard(self, k: int) -> CandidateGuard:
        """What a plan of this run must do: produce candidates and verify them."""
        if self._guard is None:
            self._guard = CandidateGuard(
                producers=self.producers,
                verify_tool="verify",
                verified=lambda: self.results.keys(),
                default_plan=lambda: self.default_plan(k),
            )
        return self._guard

    @property
    def default_plan_ran(self) -> bool:
        return self._guard is not None and self._guard.default_ran

    @property
    def shortfalls(self) -> list[str]:
        """Why the run's plans fell short, in order."""
        return self._guard.reasons if self._guard is not None else []

    async def verify_candidate(self, cid: int) -> R:
        """The candidate's result, verified once however many ask."""
        return await self.pool.verified(cid)

    async def verify_named(self, cid: int) -> R:
        """Verify a candidate a plan names by id: a proposal still running may deliver
        it, so wait for those first."""
        await self.pool.wait_for(cid)
        return await self.verify_candidate(cid)

    async def ask_model(self, strategy: str, system: str, prompt: str, max_tokens: int) -> int:
        """One candidate from the LLM, following ``strategy``; returns its id."""
        if self.llm is None:
            raise PerfsmithError("no LLM configured: propose needs one")
        async with self.pool.proposing():
            try:
                code = await ask_for_code(self.llm, system, prompt, max_tokens=max_tokens)
                candidate = await self.add_candidate(code, f"llm:{strategy}"[:64])
            except CandidateError as exc:
                raise PerfsmithError(f"proposal ({strategy}) unusable: {exc}") from exc
            return candidate.id

    async def verify_all(self, given: Sequence[tuple[str, str]] = ()) -> list[R]:
        """Every candidate's result, by id: the user's ``given`` (origin, code) added and
        verified, and those the plan produced but never verified."""
        for origin, code in given:
            candidate = await self.add_candidate(code, origin)
            await self.verify_candidate(candidate.id)
        for cid in sorted(self.candidates):
            await self.verify_candidate(cid)
        return [self.results[cid] for cid in sorted(self.results)]

    async def candidate_artifact(
        self, cid: int, *, kind: str, name: str, content: bytes, media_type: str = "text/plain"
    ) -> Artifact:
        """An artifact of the run tied to candidate ``cid`` (the best kernel, its diff)."""
        return Artifact(
            run_id=self.run_id,
            candidate_id=await self.pool.row_id(cid),
            kind=kind,
            name=name,
            media_type=media_type,
            content=content,
        )

    async def keep(self, artifacts: Iterable[Artifact]) -> None:
        """Store the run's artifacts (a diff, a kernel file, the report)."""
        rows = list(artifacts)
        if rows:
            await self.db.write(lambda s: s.add_all(rows))


S = TypeVar("S", bound=CandidateSession[Any, Any])


class CandidateWorkflow(Generic[S]):
    """The life of a candidate run, for every kind that has candidates. Subclasses supply
    `session` (the run's state, built from its config), `tools`, `planner` (the LLM that plans, or
    None), `guard`, `given` (the user's candidates) and `conclude` (best, report)."""

    kind: str

    def session(self, job: Job, sandbox: Sandbox, llm: ChatModel | None) -> S:
        raise NotImplementedError

    def tools(self, session: S) -> list[Tool]:
        """The tools the planner calls, bound to ``session`` (from `perfsmith.tools`)."""
        raise NotImplementedError

    def planner(self, job: Job, llm: ChatModel | None, *, resuming: bool) -> ChatModel | None:
        """The LLM that plans this run: ``llm`` (the run's model) unless the kind plans
        without one; None: no planning, only the given candidates are verified."""
        return llm

    def guard(self, job: Job, session: S) -> PlanGuard | None:
        return None

    def max_replans(self, job: Job, session: S) -> int:
        return max(0, int(job.config.get("rounds", 2)) - 1)

    async def prepare(self, job: Job, session: S, *, resuming: bool) -> None:
        """What runs before the first plan (profiling, recording inputs)."""

    async def restore(self, job: Job, session: S) -> None:
        """Load the run's stored candidates and verdicts into ``session``."""
        raise NotImplementedError

    async def given(self, job: Job, session: S) -> list[tuple[str, str]]:
        """The user's candidates: (origin, code) for each."""
        return []

    async def conclude(self, job: Job, session: S, results: list[Any], answer: str) -> Finished:
        raise NotImplementedError

    async def start(self, job: Job) -> Finished:
        model = job.resources.model(job.config.get("llm"))
        llm = self.planner(job, model, resuming=False)
        session = self.session(job, await job.resources.sandbox(), model)
        given = await self.given(job, session)
        await self.prepare(job, session, resuming=False)
        answer = ""
        if llm is not None:
            answer = (await self._drive(job, session, llm)).answer
        return await self._finish(job, session, answer, given)

    async def resume(self, job: Job, follow_up: str | None) -> Finished:
        model = job.resources.model(job.config.get("llm"))
        if follow_up is not None and model is None:
            raise PerfsmithError("a follow-up needs an LLM to plan with")
        llm = model if follow_up is not None else self.planner(job, model, resuming=True)
        session = self.session(job, await job.resources.sandbox(), model)
        await self.prepare(job, session, resuming=True)
        await self.restore(job, session)
        answer = ""
        # a follow-up plans anew with the message; a resume finishes the stored plan (or
        # plans, when the run stopped before its plan was stored)
        if llm is not None and (follow_up is not None or job.status != "done"):
            answer = (
                await self._drive(
                    job, session, llm, resuming=follow_up is None, follow_up=follow_up
                )
            ).answer
        return await self._finish(job, session, answer, await self.given(job, session))

    async def _drive(
        self,
        job: Job,
        session: S,
        llm: ChatModel,
        *,
        resuming: bool = False,
        follow_up: str | None = None,
    ) -> Any:
        return await drive_job(
            job,
            tools=self.tools(session),
            llm=llm,
            max_replans=self.max_replans(job, session),
            resuming=resuming,
            follow_up=follow_up,
            guard=self.guard(job, session),
        )

    async def _finish(
        self, job: Job, session: S, answer: str, given: list[tuple[str, str]]
    ) -> Finished:
        results = await session.verify_all(given)
        return await self.conclude(job, session, results, answer)
