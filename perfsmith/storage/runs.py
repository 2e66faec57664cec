"""Reading runs, plans, tasks, events, candidates and artifacts (and creating runs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import defer, selectinload

from perfsmith.errors import RunNotFoundError
from perfsmith.storage import owners
from perfsmith.storage.db import Database
from perfsmith.storage.models import Artifact, Candidate, Event, Plan, Run, Task

T = TypeVar("T")


def _filtered(
    q: Select[T], *, status: str | None, kind: str | None, tenant: str | None
) -> Select[T]:
    if status:
        q = q.where(Run.status == status)
    if kind:
        q = q.where(Run.kind == kind)
    if tenant is not None:
        q = q.where(Run.tenant == tenant)
    return q


@dataclass(frozen=True)
class RunStore:
    """Queries over runs; every method opens its own short transaction."""

    db: Database

    def create_run(
        self,
        request: str,
        *,
        kind: str = "orchestrate",
        config: dict[str, Any] | None = None,
        tenant: str | None = None,
    ) -> str:
        with self.db.session() as s:
            run = Run(
                request=request,
                kind=kind,
                config=config or {},
                tenant=tenant,
                owner=owners.this_process(),
            )
            s.add(run)
            s.flush()
            return run.id

    def claim_run(
        self, run_id: str, request: str, *, kind: str, config: dict[str, Any] | None = None
    ) -> None:
        """Fill in a run created ahead of its work (the API returns the id at once)."""
        with self.db.session() as s:
            run = s.get(Run, run_id)
            if run is None:
                raise RunNotFoundError(run_id)
            run.request, run.kind = request, kind
            run.config = {**run.config, **(config or {})}

    def orphaned_runs(self) -> list[str]:
        """Runs left pending or running by a process of this machine that is gone."""
        with self.db.session(readonly=True) as s:
            rows = s.execute(
                select(Run.id, Run.owner).where(
                    Run.status.in_(("pending", "running")), Run.owner.is_not(None)
                )
            ).all()
        return [run_id for run_id, owner in rows if owners.is_gone(str(owner))]

    def get_run(self, run_id: str) -> Run:
        with self.db.session(readonly=True) as s:
            run = s.get(Run, run_id)
            if run is None:
                raise RunNotFoundError(run_id)
            s.expunge(run)
            return run

    def list_runs(
        self,
        *,
        limit: int = 20,
        offset: int = 0,
        status: str | None = None,
        kind: str | None = None,
        tenant: str | None = None,
    ) -> list[Run]:
        """Newest first; `tenant` limits the list to one tenant's runs (the API's view)."""
        with self.db.session(readonly=True) as s:
            q = _filtered(select(Run), status=status, kind=kind, tenant=tenant)
            q = q.order_by(Run.created_at.desc(), Run.id)
            runs = list(s.scalars(q.limit(limit).offset(offset)))
            s.expunge_all()
            return runs

    def count_runs(
        self, *, status: str | None = None, kind: str | None = None, tenant: str | None = None
    ) -> int:
        with self.db.session(readonly=True) as s:
            q = _filtered(select(func.count(Run.id)), status=status, kind=kind, tenant=tenant)
            return int(s.scalar(q) or 0)

    def candidates(self, run_id: str) -> list[Candidate]:
        """A run's candidates in the order they were proposed, with their measurements."""
        with self.db.session(readonly=True) as s:
            rows = list(
                s.scalars(
                    select(Candidate)
                    .where(Candidate.run_id == run_id)
                    .options(selectinload(Candidate.measurements))
                    .order_by(Candidate.id)
                )
            )
            s.expunge_all()
            return rows

    def verdicts_by_run(
        self, *, kind: str, last: int
    ) -> list[list[tuple[str | None, float | None]]]:
        """The (verdict, speedup) of every candidate of the `last` most recent runs of
        `kind`, run by run (newest first): the samples of a suite's eff@k."""
        recent = select(Run.id).where(Run.kind == kind).order_by(Run.created_at.desc()).limit(last)
        with self.db.session(readonly=True) as s:
            run_ids = s.scalars(recent).all()
            rows = s.execute(
                select(Candidate.run_id, Candidate.verdict, Candidate.speedup)
                .where(Candidate.run_id.in_(recent.subquery().select()))
                .order_by(Candidate.id)
            ).all()
        by_run: dict[str, list[tuple[str | None, float | None]]] = {r: [] for r in run_ids}
        for run_id, verdict, speedup in rows:
            by_run.setdefault(run_id, []).append((verdict, speedup))
        return [by_run[r] for r in run_ids]

    def artifacts(self, run_id: str) -> list[tuple[Artifact, int]]:
        """A run's artifacts (without loading their content) and each one's size in bytes."""
        with self.db.session(readonly=True) as s:
            rows = s.execute(
                select(Artifact, func.length(Artifact.content))
                .where(Artifact.run_id == run_id)
                .options(defer(Artifact.content))
                .order_by(Artifact.id)
            ).all()
            s.expunge_all()
            return [(a, int(size or 0)) for a, size in rows]

    def artifact(self, run_id: str, artifact_id: int) -> Artifact | None:
        with self.db.session(readonly=True) as s:
            row = s.scalar(
                select(Artifact).where(Artifact.run_id == run_id, Artifact.id == artifact_id)
            )
            if row is not None:
                s.expunge(row)
            return row

    def set_status(
        self, run_id: str, status: str, *, answer: str | None = None, error: str | None = None
    ) -> None:
        with self.db.session() as s:
            values: dict[str, Any] = {"status": status}
            if status == "running":  # whoever works on it now
                values["owner"] = owners.this_process()
            if answer is not None:
                values["answer"] = answer
            if error is not None:
                values["error"] = error
            s.execute(update(Run).where(Run.id == run_id).values(**values))

    def plans(self, run_id: str) -> list[Plan]:
        with self.db.session(readonly=True) as s:
            plans = list(s.scalars(select(Plan).where(Plan.run_id == run_id).order_by(Plan.round)))
            s.expunge_all()
            return plans

    def plan(self, run_id: str, round_: int) -> Plan | None:
        with self.db.session(readonly=True) as s:
            plan = s.scalar(select(Plan).where(Plan.run_id == run_id, Plan.round == round_))
            if plan is not None:
                s.expunge(plan)
            return plan

    def tasks(self, run_id: str) -> list[Task]:
        with self.db.session(readonly=True) as s:
            tasks = list(
                s.scalars(select(Task).where(Task.run_id == run_id).order_by(Task.round, Task.idx))
            )
            s.expunge_all()
            return tasks

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[Event]:
        with self.db.session(readonly=True) as s:
            q = select(Event).where(Event.run_id == run_id, Event.seq > after).order_by(Event.seq)
            if limit is not None:
                q = q.limit(limit)
            events = list(s.scalars(q))
            s.expunge_all()
            return events
