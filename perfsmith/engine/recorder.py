"""The engine's recorder: one run's plans, tasks and events written as they happen.

It implements the executor's `TaskObserver` over the database (storage is reached through
it, never the other way): task rows and their results, the reuse of finished tasks on a
resume (`lookup`), and every event, each numbered in order and announced to the
database's `event_hooks` once committed (the API wakes its event streams with them)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from perfsmith.events import (
    EventListener,
    EventPayload,
    InvalidPlanLine,
    TaskFinished,
    TaskParsed,
    TaskStarted,
)
from perfsmith.executor.observer import Cached
from perfsmith.executor.records import TaskRecord, TaskStatus
from perfsmith.planner.plan import TaskSpec, as_text, render_args
from perfsmith.storage.db import Database
from perfsmith.storage.models import Event, Plan, Task

log = logging.getLogger(__name__)


def fingerprint(spec: TaskSpec) -> str:
    """Identity of a task's work: its tool and its (unresolved) arguments."""
    return hashlib.sha256(f"{spec.tool}\0{render_args(spec.args)}".encode()).hexdigest()


def _to_json(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        return None


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
        if self.db.event_hooks:
            fut.add_done_callback(lambda _f: _committed(self.db, event))

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


def _committed(db: Database, event: dict[str, Any]) -> None:
    for hook in list(db.event_hooks):
        try:
            hook(event)
        except Exception:
            log.exception("event hook failed")


def _log_failure(fut: Future[Any]) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("background database write failed: %s", exc)
