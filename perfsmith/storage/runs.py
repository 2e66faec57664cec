"""Reading and writing runs, plans, tasks and events."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session, defer, selectinload

from perfsmith.errors import RunNotFoundError
from perfsmith.events import (
    EventPayload,
    InvalidPlanLine,
    TaskFinished,
    TaskParsed,
    TaskStarted,
)
from perfsmith.executor.observer import Cached
from perfsmith.executor.records import TaskRecord, TaskStatus
from perfsmith.planner.plan import TaskSpec, as_text, render_args
from perfsmith.storage import owners
from perfsmith.storage.db import Database
from perfsmith.storage.models import Artifact, Candidate, Event, Plan, Run, Task

log = logging.getLogger(__name__)
EventListener = Callable[[dict[str, Any]], None]
T = TypeVar("T")
# Called (on the database's writer thread) with each event once its row is committed, for
# every run of this process: the API wakes its event streams with it.
COMMITTED: list[EventListener] = []


def fingerprint(spec: TaskSpec) -> str:
    """Identity of a task's work: its tool and its (unresolved) arguments."""
    return hashlib.sha256(f"{spec.tool}\0{render_args(spec.args)}".encode()).hexdigest()


def _to_json(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        return None


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


class RunStore:
    """Queries over runs; every method opens its own short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

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


class RunRecorder:
    """Writes one run's events and task rows as they happen; implements TaskObserver.

    Writes go to the database's single writer thread in order. Starts and parses are
    fire-and-forget; a finished task is awaited so a reported result is durable before
    anything builds on it.
    """

    def __init__(self, db: Database, run_id: str) -> None:
        self.db = db
        self.run_id = run_id
        self.round = 0
        self.listeners: list[EventListener] = []
        self._done: dict[tuple[int, int], tuple[str, str]] = {}
        with db.session() as s:
            self._seq = s.scalar(select(func.max(Event.seq)).where(Event.run_id == run_id)) or 0

    # -- events --------------------------------------------------------------------

    def emit(self, payload: EventPayload) -> None:
        self._seq += 1
        seq = self._seq
        row = {"run_id": self.run_id, "seq": seq, "type": payload.type, "payload": payload.fields()}
        event = {**row, "time": time.time()}
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken progress display must not break the run
                log.exception("event listener failed")
        fut: Future[Any] = self.db.submit(lambda s: s.add(Event(**row)))
        fut.add_done_callback(_log_failure)
        if COMMITTED:
            fut.add_done_callback(lambda _f: _committed(event))

    def _background(self, fn: Callable[[Session], Any]) -> None:
        fut: Future[Any] = self.db.submit(fn)
        fut.add_done_callback(_log_failure)

    # -- plans -----------------------------------------------------------------------

    def save_plan(self, round_: int, text: str, *, complete: bool) -> None:
        def write(s: Session) -> None:
            plan = s.scalar(select(Plan).where(Plan.run_id == self.run_id, Plan.round == round_))
            if plan is None:
                s.add(Plan(run_id=self.run_id, round=round_, text=text, complete=complete))
            else:
                plan.text, plan.complete = text, complete

        self._background(write)

    def save_decision(self, round_: int, decision: str, thought: str | None) -> None:
        def write(s: Session) -> None:
            s.execute(
                update(Plan)
                .where(Plan.run_id == self.run_id, Plan.round == round_)
                .values(decision=decision, thought=thought)
            )

        self._background(write)

    # -- TaskObserver --------------------------------------------------------------

    async def load_round(self, round_: int) -> None:
        """Remember which tasks of this round finished in an earlier attempt."""
        self.round = round_

        def read(s: Session) -> list[tuple[int, str, str | None]]:
            rows = s.execute(
                select(Task.idx, Task.fingerprint, Task.result_json).where(
                    Task.run_id == self.run_id,
                    Task.round == round_,
                    Task.status == TaskStatus.DONE.value,
                )
            )
            return [(r[0], r[1], r[2]) for r in rows]

        for idx, fp, result in await self.db.write(read):
            if result is not None:
                self._done[(round_, idx)] = (fp, result)

    async def lookup(self, spec: TaskSpec) -> Cached | None:
        hit = self._done.get((self.round, spec.idx))
        if hit is None or hit[0] != fingerprint(spec):
            return None
        return Cached(json.loads(hit[1]))

    def task_parsed(self, record: TaskRecord) -> None:
        if record.status is TaskStatus.INVALID:
            self.emit(
                InvalidPlanLine(
                    round=self.round, idx=record.idx, line=record.line, error=record.error
                )
            )
        else:
            self.emit(
                TaskParsed(
                    round=self.round,
                    idx=record.idx,
                    tool=record.tool,
                    deps=list(record.deps),
                    line=record.line,
                    duplicate_of=record.duplicate_of,
                )
            )
        if record.idx is None:
            return
        round_, idx = self.round, record.idx
        spec = record.spec
        values = {
            "tool": record.tool or "(invalid)",
            "line": record.line,
            "args": render_args(spec.args) if spec else "",
            "deps": list(record.deps),
            "fingerprint": fingerprint(spec) if spec else "",
            "status": record.status.value,
            "error": record.error,
        }

        def write(s: Session) -> None:
            task = s.scalar(
                select(Task).where(
                    Task.run_id == self.run_id, Task.round == round_, Task.idx == idx
                )
            )
            if task is None:
                s.add(Task(run_id=self.run_id, round=round_, idx=idx, **values))
            elif task.status != TaskStatus.DONE.value or task.fingerprint != values["fingerprint"]:
                for k, v in values.items():
                    setattr(task, k, v)

        self._background(write)

    def task_started(self, record: TaskRecord) -> None:
        self.emit(TaskStarted(round=self.round, idx=record.idx, tool=record.tool))
        round_, idx = self.round, record.idx
        started = time.time()

        def write(s: Session) -> None:
            s.execute(
                update(Task)
                .where(Task.run_id == self.run_id, Task.round == round_, Task.idx == idx)
                .values(
                    status=TaskStatus.RUNNING.value, started_at=started, attempts=Task.attempts + 1
                )
            )

        self._background(write)

    def _end_values(self, record: TaskRecord) -> dict[str, Any]:
        ok = record.status is TaskStatus.DONE
        return {
            "status": record.status.value,
            "error": record.error,
            "result_json": _to_json(record.value) if ok else None,
            "result_text": as_text(record.value)[:20_000] if ok else None,
            "ended_at": time.time(),
            "run_s": record.run_s,
            "wait_s": record.wait_s,
            "reused": record.reused,
        }

    def _end_event(self, record: TaskRecord) -> None:
        text = as_text(record.value) if record.ok else ""
        self.emit(
            TaskFinished(
                round=self.round,
                idx=record.idx,
                tool=record.tool,
                status=record.status.value,
                error=record.error,
                result=text[:500],
                run_s=round(record.run_s, 6),
                wait_s=round(record.wait_s, 6),
                reused=record.reused,
            )
        )

    def task_settled(self, record: TaskRecord) -> None:
        self._end_event(record)
        if record.idx is None:
            return
        round_, idx, values = self.round, record.idx, self._end_values(record)

        def write(s: Session) -> None:
            s.execute(
                update(Task)
                .where(Task.run_id == self.run_id, Task.round == round_, Task.idx == idx)
                .values(**values)
            )

        self._background(write)

    async def task_finished(self, record: TaskRecord) -> None:
        self._end_event(record)
        round_, idx, values = self.round, record.idx, self._end_values(record)
        if record.reused and record.duplicate_of is None:  # stored when it first ran
            values.pop("result_json")
            values.pop("result_text")

        def write(s: Session) -> None:
            s.execute(
                update(Task)
                .where(Task.run_id == self.run_id, Task.round == round_, Task.idx == idx)
                .values(**values)
            )

        await self.db.write(write)


def _committed(event: dict[str, Any]) -> None:
    for hook in list(COMMITTED):
        try:
            hook(event)
        except Exception:
            log.exception("event hook failed")


def _log_failure(fut: Future[Any]) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("background database write failed: %s", exc)
