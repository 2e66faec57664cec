"""`RunService`: the one place that starts, resumes, cancels and settles runs.

Every status a run has is written here: `pending` when it is stored, `running` while a
process works on it, then `done` (with its answer), `failed` (with the reason), `cancelled`
or `interrupted`. Each end is written after the run's last event (`run_finished`), so whoever
sees an ended run has seen all its events. The work itself is the workflow's, looked up by
the run's kind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from perfsmith.config import Settings
from perfsmith.engine.recorder import RunRecorder
from perfsmith.errors import PerfsmithError, StorageError
from perfsmith.events import TERMINAL, EventListener, RunFinished
from perfsmith.storage.db import Database
from perfsmith.storage.runs import RunStore
from perfsmith.workflows.base import Finished, Job, RunResources, Workflow

INTERRUPTED = "interrupted: the process working on it stopped; resume it to finish"


class UnknownKindError(PerfsmithError):
    """A run kind no workflow is registered for."""


@dataclass
class Outcome:
    """How a run this process worked on ended (it is `done`: failures raise)."""

    run_id: str
    answer: str
    result: Any


def error_text(exc: BaseException) -> str:
    """An error as a run stores it: perfsmith's own messages as they are, others with
    their type."""
    if isinstance(exc, PerfsmithError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


class RunService:
    def __init__(
        self, db: Database, settings: Settings, workflows: Mapping[str, Workflow] | None = None
    ) -> None:
        if workflows is None:
            from perfsmith.service.registry import WORKFLOWS

            workflows = WORKFLOWS
        self.db = db
        self.settings = settings
        self.store = RunStore(db)
        self.workflows = workflows

    def workflow(self, kind: str) -> Workflow:
        try:
            return self.workflows[kind]
        except KeyError:
            raise UnknownKindError(
                f"no workflow for {kind!r} runs (known: {', '.join(sorted(self.workflows))})"
            ) from None

    # -- starting --------------------------------------------------------------------

    async def create(
        self,
        kind: str,
        config: dict[str, Any],
        *,
        request: str | None = None,
        tenant: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Check a request and store it as a `pending` run; returns its id. ``extra`` is
        stored beside the workflow's config (what the API was sent, say)."""
        workflow = self.workflow(kind)
        checked = await asyncio.to_thread(workflow.check, dict(config))
        text = request if request is not None else workflow.request_text(checked)
        return await asyncio.to_thread(
            self.store.create_run,
            text,
            kind=kind,
            config={**(extra or {}), **checked},
            tenant=tenant,
        )

    async def start(
        self,
        kind: str,
        config: dict[str, Any],
        *,
        resources: RunResources,
        request: str | None = None,
        run_id: str | None = None,
        listeners: Iterable[EventListener] = (),
        extras: dict[str, Any] | None = None,
    ) -> Outcome:
        """Run a request of ``kind`` to its end: stored (unless ``run_id`` names a run
        `create` stored), worked on, settled."""
        if run_id is None:
            run_id = await self.create(kind, config, request=request)
        row = await asyncio.to_thread(self.store.get_run, run_id)
        workflow = self.workflow(row.kind)
        job = self._job(row.id, row.request, row.config, row.status, resources, listeners, extras)
        return await self._work(job, lambda: workflow.start(job))

    # -- resuming --------------------------------------------------------------------

    async def resume(
        self,
        run_id: str,
        *,
        resources: RunResources,
        follow_up: str | None = None,
        listeners: Iterable[EventListener] = (),
        extras: dict[str, Any] | None = None,
    ) -> Outcome:
        """Finish an interrupted run (finished tasks and verdicts are reused) or, with
        ``follow_up``, continue an ended one with the user's new instruction."""
        row = await asyncio.to_thread(self.store.get_run, run_id)
        if follow_up is None and row.status == "done":
            raise StorageError(
                f"run {run_id} already finished; nothing to resume (a follow-up continues it)"
            )
        if follow_up is not None and row.status not in TERMINAL:
            raise StorageError(f"run {run_id} is {row.status}; a follow-up waits for it to end")
        workflow = self.workflow(row.kind)
        job = self._job(row.id, row.request, row.config, row.status, resources, listeners, extras)
        return await self._work(job, lambda: workflow.resume(job, follow_up))

    # -- ending ----------------------------------------------------------------------

    async def cancel(self, run_id: str) -> None:
        """End a run no process works on any more (its process was killed): `cancelled`.
        A run in progress in this process is cancelled by cancelling its task."""
        row = await asyncio.to_thread(self.store.get_run, run_id)
        if row.status in TERMINAL:
            raise StorageError(f"run {run_id} has already ended ({row.status})")
        await self.settle(run_id, "cancelled", error="cancelled")

    async def interrupt_orphans(self) -> list[str]:
        """Runs left pending or running by a process of this machine that is gone become
        `interrupted` (their event streams end); `resume` finishes them."""
        orphans = await asyncio.to_thread(self.store.orphaned_runs)
        for run_id in orphans:
            await self.settle(run_id, "interrupted", error=INTERRUPTED)
        return orphans

    async def settle(
        self,
        run_id: str,
        status: str,
        *,
        answer: str | None = None,
        error: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:
        """Write a run's end: its `run_finished` event, then its status. A run that has
        ended already keeps its end (unless this one is `done`, its work finished here)."""
        if status not in TERMINAL:
            raise ValueError(f"{status!r} is not an end")
        if status != "done":
            row = await asyncio.to_thread(self.store.get_run, run_id)
            if row.status in TERMINAL:
                return
        # the work's own events first: the recorder numbers its event after the last stored
        await asyncio.to_thread(self.db.flush)
        recorder = await asyncio.to_thread(RunRecorder, self.db, run_id)
        recorder.emit(
            RunFinished.model_validate(
                {"status": status, "answer": answer, "error": error, **(summary or {})}
            )
        )
        await asyncio.to_thread(self.db.flush)
        await asyncio.to_thread(self.store.set_status, run_id, status, answer=answer, error=error)

    # -- the work --------------------------------------------------------------------

    def _job(
        self,
        run_id: str,
        request: str,
        config: dict[str, Any],
        status: str,
        resources: RunResources,
        listeners: Iterable[EventListener],
        extras: dict[str, Any] | None,
    ) -> Job:
        return Job(
            run_id=run_id,
            request=request,
            config=dict(config),
            status=status,
            db=self.db,
            settings=self.settings,
            resources=resources,
            listeners=list(listeners),
            extras=dict(extras or {}),
            runs=self,
        )

    async def _work(self, job: Job, work: Callable[[], Awaitable[Finished]]) -> Outcome:
        await asyncio.to_thread(self.store.set_status, job.run_id, "running")
        try:
            finished = await work()
        except asyncio.CancelledError:
            await asyncio.shield(self.settle(job.run_id, "cancelled", error="cancelled"))
            raise
        except BaseException as exc:
            status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
            await asyncio.shield(self.settle(job.run_id, status, error=error_text(exc)))
            raise
        await self.settle(job.run_id, "done", answer=finished.answer, summary=finished.summary)
        return Outcome(run_id=job.run_id, answer=finished.answer, result=finished.result)
