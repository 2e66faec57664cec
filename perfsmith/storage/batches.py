"""The durable queue of overnight batches: batches and their jobs, claimed under leases.

A worker claims a job by a compare-and-set on the job's row (its status and attempt number
as read), so two workers (threads, processes, machines sharing the database) never hold one
job. A claim is a lease: the worker renews it while the job runs. A job whose lease ran out,
or whose worker on this machine is gone (killed with -9), is claimed again, and its run is
resumed rather than redone. Every method is one short transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from perfsmith.errors import BatchNotFoundError, StorageError
from perfsmith.storage import owners
from perfsmith.storage.db import Database
from perfsmith.storage.models import Batch, BatchJob, utc, utcnow

ENDED = ("done", "failed", "cancelled", "skipped")
LeaseState = Literal["held", "lost", "cancelled"]


@dataclass(frozen=True)
class NewJob:
    """A job as a batch file describes it: the run to start and what the report calls it."""

    name: str
    kind: str
    config: dict[str, Any]
    llm: str | None
    group: str | None = None


@dataclass(frozen=True)
class Claim:
    """A job this worker holds: renew the lease with ``attempt`` (the claim's number)."""

    job_id: int
    batch_id: str
    attempt: int
    owner: str
    name: str
    kind: str
    config: dict[str, Any]
    llm: str | None
    run_id: str | None
    elapsed_s: float  # spent on the job by earlier attempts
    budgets: dict[str, Any]
    deadline: datetime | None
    tenant: str | None = None  # the batch's: its runs are that tenant's


def _expired(job: BatchJob, now: datetime) -> bool:
    """A running job nobody works on any more: its lease ran out, or its worker was a
    process of this machine that is gone."""
    if job.lease_expires is not None and utc(job.lease_expires) < now:
        return True
    return job.lease_owner is not None and owners.is_gone(job.lease_owner)


@dataclass(frozen=True)
class BatchStore:
    db: Database

    # -- batches ---------------------------------------------------------------------

    def create_batch(
        self,
        *,
        name: str,
        source: str,
        budgets: dict[str, Any],
        deadline: datetime | None,
        jobs: Sequence[NewJob],
        tenant: str | None = None,
    ) -> str:
        with self.db.session() as s:
            batch = Batch(
                name=name, source=source, budgets=budgets, deadline=deadline, tenant=tenant
            )
            s.add(batch)
            s.flush()
            for position, job in enumerate(jobs):
                s.add(
                    BatchJob(
                        batch_id=batch.id,
                        position=position,
                        name=job.name[:200],
                        kind=job.kind,
                        group=job.group,
                        config=job.config,
                        llm=job.llm,
                    )
                )
            return batch.id

    def get_batch(self, batch_id: str, *, tenant: str | None = None) -> Batch:
        """The batch with its jobs (in the file's order)."""
        with self.db.session(readonly=True) as s:
            batch = s.scalar(
                select(Batch).where(Batch.id == batch_id).options(selectinload(Batch.jobs))
            )
            if batch is None or (tenant is not None and batch.tenant != tenant):
                raise BatchNotFoundError(batch_id)
            s.expunge_all()
            return batch

    def list_batches(self, *, limit: int = 20, tenant: str | None = None) -> list[Batch]:
        """Newest first, with their jobs."""
        with self.db.session(readonly=True) as s:
            q = select(Batch).options(selectinload(Batch.jobs))
            if tenant is not None:
                q = q.where(Batch.tenant == tenant)
            rows = list(s.scalars(q.order_by(Batch.created_at.desc(), Batch.id).limit(limit)))
            s.expunge_all()
            return rows

    def cancel_batch(self, batch_id: str) -> int:
        """Stop a batch: its queued jobs end `cancelled` at once; running ones see it when
        they renew their lease and cancel their run. Returns how many were queued."""
        with self.db.session() as s:
            batch = self._batch(s, batch_id)
            if batch.status == "ended":
                raise StorageError(f"batch {batch_id} has already ended")
            batch.status = "cancelled"
            result = s.execute(
                update(BatchJob)
                .where(BatchJob.batch_id == batch_id, BatchJob.status == "queued")
                .values(status="cancelled", error="cancelled", ended_at=utcnow())
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def resume_batch(self, batch_id: str, *, deadline: datetime | None = None) -> int:
        """Make a stopped batch work again: jobs that were cancelled, skipped or failed
        are queued afresh (their runs resume: finished tasks and verdicts are reused);
        jobs left running by a worker that is gone are claimed again as they are.
        ``deadline`` replaces the batch's. Returns how many jobs were queued."""
        with self.db.session() as s:
            batch = self._batch(s, batch_id)
            batch.status, batch.ended_at = "active", None
            if deadline is not None:
                batch.deadline = deadline
            result = s.execute(
                update(BatchJob)
                .where(
                    BatchJob.batch_id == batch_id,
                    BatchJob.status.in_(("cancelled", "skipped", "failed")),
                )
                .values(status="queued", attempts=0, lease_owner=None, lease_expires=None)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def _batch(self, s: Session, batch_id: str) -> Batch:
        batch = s.get(Batch, batch_id)
        if batch is None:
            raise BatchNotFoundError(batch_id)
        return batch

    @staticmethod
    def _left(s: Session, batch_id: str) -> bool:
        """Whether any of the batch's jobs is queued or running."""
        left = s.scalar(
            select(BatchJob.id)
            .where(BatchJob.batch_id == batch_id, BatchJob.status.in_(("queued", "running")))
            .limit(1)
        )
        return left is not None

    def unfinished(self, batch_id: str) -> bool:
        """Whether any of the batch's jobs is queued or running."""
        with self.db.session(readonly=True) as s:
            return self._left(s, batch_id)

    def end(self, batch_id: str, *, ended_at: datetime, report_md: str, report_html: str) -> bool:
        """Mark the batch `ended` with its report, unless it ended already or a job was
        queued again meanwhile; True when this call ended it."""
        with self.db.session() as s:
            batch = self._batch(s, batch_id)
            if batch.status == "ended" or self._left(s, batch_id):
                return False
            batch.status, batch.ended_at = "ended", ended_at
            batch.report_md, batch.report_html = report_md, report_html
            return True

    def active_budgets(self, batch_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The budgets of the active batches (of ``batch_ids``), without their jobs."""
        with self.db.session(readonly=True) as s:
            q = select(Batch.budgets).where(Batch.status == "active")
            if batch_ids is not None:
                q = q.where(Batch.id.in_(list(batch_ids)))
            return [dict(b) for b in s.scalars(q)]

    # -- the queue -------------------------------------------------------------------

    def claim(
        self, *, lease_s: float, batch_ids: Sequence[str] | None = None, now: datetime | None = None
    ) -> Claim | None:
        """The next job to work on (queued, or abandoned by its worker), held by this
        process under a lease of ``lease_s``; None when no job is left to start. Jobs of
        batches past their deadline are skipped, not started; a job abandoned more often
        than its batch allows ends `failed`."""
        now = now or utcnow()
        owner = owners.this_process()
        while True:
            rows = self._claimable(now, batch_ids)
            if not rows:
                return None
            for job, batch in rows:
                claim = self._claim_one(job, batch, owner, now, lease_s)
                if claim is not None:
                    return claim
            # every one was taken (or ended) by others meanwhile: look again

    def _claimable(
        self, now: datetime, batch_ids: Sequence[str] | None
    ) -> list[tuple[BatchJob, Batch]]:
        """Jobs abandoned by their workers, then the next queued ones (a few: a queue of
        thousands is not read whole for every claim)."""
        with self.db.session(readonly=True) as s:
            q = (
                select(BatchJob, Batch)
                .join(Batch, Batch.id == BatchJob.batch_id)
                .where(Batch.status == "active")
            )
            if batch_ids is not None:
                q = q.where(BatchJob.batch_id.in_(list(batch_ids)))
            running = s.execute(q.where(BatchJob.status == "running")).all()
            queued = s.execute(
                q.where(BatchJob.status == "queued")
                .order_by(Batch.created_at, BatchJob.batch_id, BatchJob.position)
                .limit(32)
            ).all()
            s.expunge_all()
        abandoned = [(j, b) for j, b in running if _expired(j, now)]
        return abandoned + [(j, b) for j, b in queued]

    def _claim_one(
        self, job: BatchJob, batch: Batch, owner: str, now: datetime, lease_s: float
    ) -> Claim | None:
        late = batch.deadline is not None and utc(batch.deadline) <= now
        attempts_allowed = 1 + int(batch.budgets.get("retries", 2))
        if late:
            why = "the deadline came before it started"
            if job.status == "running":
                why = "its worker stopped and the deadline had passed"
            self._end_unless_taken(job, "skipped", why)
            return None
        if job.attempts >= attempts_allowed:
            last = job.error or "its worker stopped"
            self._end_unless_taken(job, "failed", f"gave up after {job.attempts} attempts: {last}")
            return None
        if not self._take(job, owner, now + timedelta(seconds=lease_s)):
            return None
        return Claim(
            job_id=job.id,
            batch_id=job.batch_id,
            attempt=job.attempts + 1,
            owner=owner,
            name=job.name,
            kind=job.kind,
            config=dict(job.config),
            llm=job.llm,
            run_id=job.run_id,
            elapsed_s=job.elapsed_s,
            budgets=dict(batch.budgets),
            deadline=utc(batch.deadline) if batch.deadline is not None else None,
            tenant=batch.tenant,
        )

    def _as_read(self, job: BatchJob) -> Any:
        """The compare part of compare-and-set: the row is as this worker read it."""
        return (
            (BatchJob.id == job.id)
            & (BatchJob.status == job.status)
            & (BatchJob.attempts == job.attempts)
        )

    def _take(self, job: BatchJob, owner: str, expires: datetime) -> bool:
        with self.db.session() as s:
            result = s.execute(
                update(BatchJob)
                .where(self._as_read(job))
                .values(
                    status="running",
                    attempts=job.attempts + 1,
                    lease_owner=owner,
                    lease_expires=expires,
                    started_at=job.started_at or utcnow(),
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _end_unless_taken(self, job: BatchJob, status: str, error: str) -> None:
        with self.db.session() as s:
            s.execute(
                update(BatchJob)
                .where(self._as_read(job))
                .values(
                    status=status,
                    error=error,
                    lease_owner=None,
                    lease_expires=None,
                    ended_at=utcnow(),
                )
            )

    def _held(self, claim: Claim) -> Any:
        return (
            (BatchJob.id == claim.job_id)
            & (BatchJob.status == "running")
            & (BatchJob.attempts == claim.attempt)
            & (BatchJob.lease_owner == claim.owner)
        )

    def renew(self, claim: Claim, *, lease_s: float) -> LeaseState:
        """Extend the lease: `held`, `lost` (another worker took the job: stop working on
        it) or `cancelled` (its batch was cancelled: cancel the run)."""
        with self.db.session() as s:
            result = s.execute(
                update(BatchJob)
                .where(self._held(claim))
                .values(lease_expires=utcnow() + timedelta(seconds=lease_s))
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return "lost"
            status = s.scalar(select(Batch.status).where(Batch.id == claim.batch_id))
            return "cancelled" if status == "cancelled" else "held"

    def set_run(self, claim: Claim, run_id: str) -> None:
        """The run this job works through (kept, so that a retry resumes it)."""
        with self.db.session() as s:
            s.execute(update(BatchJob).where(self._held(claim)).values(run_id=run_id))

    def release(self, claim: Claim, *, tokens: int = 0, elapsed_s: float = 0.0) -> None:
        """Give the job back to the queue untried (this worker is stopping, not the job
        failing): the next worker resumes its run, and the attempt does not count."""
        with self.db.session() as s:
            s.execute(
                update(BatchJob)
                .where(self._held(claim))
                .values(
                    status="queued",
                    attempts=BatchJob.attempts - 1,
                    lease_owner=None,
                    lease_expires=None,
                    tokens=BatchJob.tokens + tokens,
                    elapsed_s=BatchJob.elapsed_s + elapsed_s,
                )
            )

    def settle(
        self,
        claim: Claim,
        status: str,
        *,
        error: str | None = None,
        summary: dict[str, Any] | None = None,
        tokens: int = 0,
        elapsed_s: float = 0.0,
        retry: bool = False,
    ) -> str:
        """The end of this worker's attempt: the job ends ``status``, or with ``retry``
        goes back to the queue while attempts are left. Returns the status written (an
        attempt whose lease was lost writes nothing and returns `lost`)."""
        with self.db.session() as s:
            job = s.scalar(select(BatchJob).where(self._held(claim)))
            if job is None:
                return "lost"
            batch = self._batch(s, claim.batch_id)
            job.tokens += tokens
            job.elapsed_s += elapsed_s
            job.error = error
            if summary is not None:
                job.summary = summary
            allowed = 1 + int(batch.budgets.get("retries", 2))
            if retry and batch.status != "active":
                status = "cancelled"
            elif retry and job.attempts < allowed:
                status = "queued"
            elif retry:
                status = "failed"
                job.error = f"gave up after {job.attempts} attempts: {error}"
            job.status = status
            job.lease_owner, job.lease_expires = None, None
            if status in ENDED:
                job.ended_at = utcnow()
            return status
